"""DORA numbers of one pipeline for a page or an API answer (the dashboard's, docs/dora.md).

``pipeline_dora(pool, config, name)`` reads the facts (``shared/dora_store.py``) and returns
``PipelineDora.to_json()`` for the last ``days`` (30 by default), or None for a pipeline the
config does not name.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from waveline.shared import dora_store
from waveline.shared.config import WavelineConfig
from waveline.shared.dora import compute
from waveline.shared.models.base import utcnow


async def pipeline_dora(
    pool: asyncpg.Pool,
    config: WavelineConfig,
    name: str,
    *,
    days: float = 30,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """The pipeline's deployment frequency, lead time (median, p90), change failure rate and
    time to restore, overall and per wave, as JSON-ready values (durations in seconds)."""
    pipeline = config.pipelines.get(name)
    if pipeline is None:
        return None
    until = now or utcnow()
    facts = await dora_store.load_facts(pool, [name], until)
    [numbers] = compute(
        facts, {name: [w.name for w in pipeline.waves]}, until - timedelta(days=days), until
    )
    return numbers.to_json()

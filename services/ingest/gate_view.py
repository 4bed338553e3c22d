"""Why each wave's gate is closed, for the pipeline view: the facts the promoter's gates need,
read the way the promoter reads them, then asked of its rules (``rules.closed_gates``,
``freeze.wave_freeze``) — never re-derived here.

Per wave: the hold and the freeze (windows and manual freezes) whether or not a set waits
at the gate, so a frozen or held wave says so at a glance; then, for each promotion
waiting at it, every other closed gate (verification of the set in the source wave, bake,
approval, quarantine). Reads the promoter's ``freezes``, ``verification_runs`` and
``quarantined_sets`` through their stores;
never writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from waveline.services.ingest.view_rules import gate_verdicts
from waveline.services.promoter import freeze, freeze_store, rules, verify_store
from waveline.shared import quarantine_store
from waveline.shared.config import PipelineConfig


async def wave_gates(
    pool: asyncpg.Pool,
    name: str,
    pipeline: PipelineConfig,
    waiting: Sequence[Mapping[str, Any]],
    *,
    held_by: Mapping[str, str | None],
    now: datetime,
) -> dict[str, list[dict[str, Any]]]:
    """``{wave: [verdict JSON, ...]}`` (empty list: open). ``waiting``: the promotions
    waiting at a gate (``promotion_id``, ``wave``, ``from_wave``, ``app_sha``, ``since``,
    ``approved``, ``created_at``); ``held_by``: the held waves and who held them."""
    manual = await freeze_store.manual_freezes(pool, name)
    quarantined = await quarantine_store.in_force(pool, name, [p["app_sha"] for p in waiting])
    out: dict[str, list[dict[str, Any]]] = {}
    for index, wave in enumerate(pipeline.waves):
        # The first wave's gate is the one introductions pass (freeze.introductions).
        frozen = freeze.wave_freeze(name, pipeline, wave.name, manual, now, introduction=index == 0)
        facts = [
            await _facts(pool, name, pipeline, p, quarantined.get(p["app_sha"]))
            for p in waiting
            if p["wave"] == wave.name and p["since"] is not None
        ]
        out[wave.name] = gate_verdicts(
            wave,
            held=wave.name in held_by,
            held_by=held_by.get(wave.name),
            frozen=frozen,
            waiting=facts,
            now=now,
        )
    return out


async def _facts(
    pool: asyncpg.Pool,
    name: str,
    pipeline: PipelineConfig,
    p: Mapping[str, Any],
    quarantine: quarantine_store.Quarantine | None,
) -> rules.GateFacts:
    """A waiting promotion's gate facts; the freeze is asked once per wave instead."""
    source = pipeline.wave(p["from_wave"])
    verifications = source.verifications if source is not None else ()
    runs = (
        await verify_store.runs_of(pool, name, p["from_wave"], p["app_sha"])
        if verifications
        else {}
    )
    return rules.GateFacts(
        app_sha=p["app_sha"],
        from_wave=p["from_wave"],
        since=p["since"],
        approved=bool(p["approved"]),
        pipeline=name,
        created_at=p["created_at"],
        verifications=verifications,
        verification_runs=runs,
        quarantined=None if quarantine is None else quarantine_store.describe(quarantine),
    )

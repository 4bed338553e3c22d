"""``waveline trace <app-sha>``: one image set's journey through Waveline, hop by hop.

The topics are the record; each hop's time is the Kafka record timestamp. ``collect`` reads
them from ``--since`` (``offsets_for_times``) up to the end offsets seen at start; the
matching is ``waveline.cli.timeline``'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from waveline.cli.ops import CliError
from waveline.cli.timeline import (
    Observed,
    build_timeline,
    render,
    resolve_app_sha,
    to_json,
    waves_of_targets,
)
from waveline.cli.trace_gates import gates_now, render_gates
from waveline.shared import kafka_clients
from waveline.shared.config import Settings, WavelineConfig, load_config
from waveline.shared.errors import ConfigError
from waveline.shared.kafka import partitions_of
from waveline.shared.models.checks import CheckReported
from waveline.shared.models.deploys import DeployReported
from waveline.shared.models.git import (
    GIT_COMMAND,
    GitEvent,
)
from waveline.shared.models.images import ImageSetAnnounced
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.models.promotions import PromotionEvent
from waveline.shared.models.waves import WaveStatus
from waveline.shared.names import check_app_sha
from waveline.shared.topics import Topics

logger = logging.getLogger(__name__)

PARSERS: dict[str, Callable[[bytes], BaseModel]] = {
    "waveline.images": ImageSetAnnounced.model_validate_json,
    "waveline.git.commands": GIT_COMMAND.validate_json,
    "waveline.git.events": GitEvent.model_validate_json,
    "waveline.checks": CheckReported.model_validate_json,
    "waveline.deploys": DeployReported.model_validate_json,
    "waveline.waves": WaveStatus.model_validate_json,
    "waveline.promotions": PromotionEvent.model_validate_json,
    "waveline.operator": OperatorCommand.model_validate_json,
}


async def collect(
    settings: Settings, since: datetime, *, timeout_s: float = 60.0
) -> list[Observed]:
    """Every parseable message of the traced topics from ``since`` to the end offsets now."""
    topics = Topics(settings.topic_prefix)
    base_of = {topics.name(base): base for base in PARSERS}
    ids = await asyncio.gather(*(partitions_of(settings, n) for n in base_of))
    partitions = [TopicPartition(n, p) for n, ps in zip(base_of, ids, strict=True) for p in ps]
    consumer = kafka_clients.consumer(settings, group_id=None, enable_auto_commit=False)
    observed: list[Observed] = []
    skipped = 0
    await kafka_clients.start(consumer, settings)
    try:
        async with asyncio.timeout(timeout_s):
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            found = await consumer.offsets_for_times(
                {tp: int(since.timestamp() * 1000) for tp in partitions}
            )
            todo: dict[TopicPartition, int] = {}
            for tp in partitions:
                start = found[tp].offset if found.get(tp) else ends[tp]
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    todo[tp] = ends[tp]
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        if record.offset >= todo[tp]:
                            break
                        try:
                            model = PARSERS[base_of[tp.topic]](record.value)
                        except ValidationError:
                            skipped += 1
                            continue
                        observed.append((record.timestamp, base_of[tp.topic], model))
                for tp in list(todo):
                    if await consumer.position(tp) >= todo[tp]:
                        del todo[tp]
    finally:
        await consumer.stop()
    if skipped:
        logger.warning("trace: skipped %d message(s) that are not valid models", skipped)
    return observed


def run(
    settings: Settings, app_sha: str, *, since: datetime | None, pipeline: str | None, as_json: bool
) -> int:
    """Print the journey of ``app_sha`` (text, or JSON); ``CliError`` when nothing names it."""
    try:
        check_app_sha(app_sha)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    since = since or datetime.now(UTC) - timedelta(hours=24)
    target_waves, config = None, None
    if settings.config.exists():  # optional: without it, deploys match on the set's commits
        try:
            config = load_config(settings.config)
            target_waves = waves_of_targets(config)
        except ConfigError as exc:
            logger.warning("trace: ignoring the config: %s", exc)
    try:
        observed = asyncio.run(collect(settings, since))
    except (TimeoutError, KafkaError) as exc:
        raise CliError(f"cannot read the topics on {settings.kafka_bootstrap}: {exc!r}") from exc
    full = resolve_app_sha(app_sha, observed)
    timeline = build_timeline(full, observed, pipeline=pipeline, target_waves=target_waves)
    if timeline is None:
        scope = f" in pipeline {pipeline}" if pipeline else ""
        raise CliError(
            f"image set {app_sha} not found{scope} on the topics of {settings.kafka_bootstrap}"
            f" since {since.isoformat(timespec='seconds')} (an earlier --since may find it)"
        )
    waiting = _gates_now(settings, config, full, pipeline)
    if as_json:
        print(json.dumps({**to_json(timeline), "waiting_now": waiting}, indent=2))
    else:
        print("\n".join(filter(None, [render(timeline), render_gates(waiting)])))
    return 0


def _gates_now(
    settings: Settings, config: WavelineConfig | None, app_sha: str, pipeline: str | None
) -> list[dict[str, Any]]:
    """Why the set's promotions wait now (trace_gates.py); nothing without the config or
    the database (the journey from the topics is still printed)."""
    if config is None:
        return []
    try:
        return asyncio.run(asyncio.wait_for(gates_now(settings, config, app_sha, pipeline), 10))
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        logger.warning("trace: the gates now were not read: %s", type(exc).__name__)
        return []

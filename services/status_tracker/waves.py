"""What each wave runs, judged from its targets' last counted deploy reports
(``decide.wave_verdict``), published on ``waveline.waves`` when it changes."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable

from waveline.services.status_tracker import store
from waveline.services.status_tracker.decide import TargetReport, WaveVerdict, wave_verdict
from waveline.shared.models.base import utcnow
from waveline.shared.models.waves import WaveStatus
from waveline.shared.quorum import required_healthy
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

_NS = uuid.UUID("3c8b3d1a-0f0e-4b8e-a5a7-1b9f0e2d7c64")


async def evaluate_waves(runtime: Runtime, waves: Iterable[tuple[str, str]]) -> None:
    """Judge each (pipeline, wave) once, in sorted order, from one read of all their
    targets' reports and one of their last published states. A new verdict (state, set,
    revision) → a ``WaveStatus`` (its event id derived from the wave and the verdict, so a
    repeat is a no-op downstream) then the ``wave_status`` row; the same verdict with other
    lagging targets → only ``lagging`` updated; ``deploying`` → nothing. A wave judged once
    for several reports publishes the state the last of them leaves it in."""
    config = runtime.config
    pool = runtime.pool
    wanted = sorted(set(waves))
    if not wanted:
        return
    asked: list[tuple[str, str, str]] = []
    for pipeline_name, wave_name in wanted:
        pipeline = config.pipelines[pipeline_name]
        wave = pipeline.wave(wave_name)
        assert wave is not None
        key = f"{pipeline_name}/{wave_name}"
        asked.extend((target, pipeline.repo, key) for target in wave.targets)
    reports: dict[str, dict[str, TargetReport]] = {}
    for r in await store.wave_reports(pool, asked):
        reports.setdefault(r["key"], {})[r["target"]] = TargetReport(
            r["target"],
            r["revision"],
            r["phase"],
            r["health"],
            r["sync"],
            r["app_sha"],
            r["reported_at"].timestamp(),
            r["position"],
        )
    verdicts: dict[tuple[str, str], WaveVerdict] = {}
    for pipeline_name, wave_name in wanted:
        wave = config.pipelines[pipeline_name].wave(wave_name)
        assert wave is not None
        result = wave_verdict(
            wave.targets,
            reports.get(f"{pipeline_name}/{wave_name}", {}),
            required_healthy(len(wave.targets), wave.min_healthy),
            wave.tolerate_degraded,
        )
        if result.state != "deploying":
            verdicts[(pipeline_name, wave_name)] = result
    if not verdicts:
        return
    previous = await store.wave_statuses(pool, verdicts)
    lagging_only: list[tuple[str, str, list[str]]] = []
    changed: list[WaveStatus] = []
    now = utcnow()
    for (pipeline_name, wave_name), result in verdicts.items():
        before = previous.get((pipeline_name, wave_name))
        current = (result.state, result.app_sha, result.cfg_sha)
        lagging = list(result.lagging)
        if before is not None and (before["state"], before["app_sha"], before["cfg_sha"]) == (
            current
        ):
            if list(before["lagging"]) != lagging:
                # Who a quorum wave still waits on changes without the wave changing.
                lagging_only.append((pipeline_name, wave_name, lagging))
            continue
        changed.append(
            WaveStatus(
                event_id=uuid.uuid5(
                    _NS, f"wave/{pipeline_name}/{wave_name}/{'/'.join(map(str, current))}"
                ),
                pipeline=pipeline_name,
                wave=wave_name,
                state=result.state,
                app_sha=result.app_sha,
                cfg_sha=result.cfg_sha,
                reason=result.reason,
                at=now,
                cfg_position=result.cfg_position,
                lagging=lagging,
            )
        )
    if lagging_only:
        await store.set_lagging(pool, lagging_only)
    # Sent together, each wave's once: one after the other, the acknowledgements were
    # most of a poll's time when a fleet's reports moved many waves at once.
    sent = await asyncio.gather(
        *(runtime.publish(s, runtime.topics.waves, key=s.pipeline) for s in changed),
        return_exceptions=True,
    )
    for outcome in sent:
        if isinstance(outcome, BaseException):
            raise outcome
    if changed:
        await store.save_statuses(
            pool,
            [
                (s.pipeline, s.wave, s.state, s.app_sha, s.cfg_sha, now, list(s.lagging))
                for s in changed
            ],
        )
    for s in changed:
        logger.info("pipeline %s wave %s: %s %s", s.pipeline, s.wave, s.state, s.app_sha)

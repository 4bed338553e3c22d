"""The facts the later gates need (docs/gates.md), read for the promotions waiting at a
gate and added to their ``GateFacts`` (``rules.py`` evaluates them): the freeze windows over
the target wave (config), the manual freezes in force and the break-glass records of the set
(``freeze_store``), the source wave's verification runs of the set (``verify_store``), and
whether the set is quarantined (``shared/quarantine_store``).
Each read is skipped when no gate could use it, and done once per tick where it can."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from waveline.services.promoter import freeze, freeze_store, verify_store
from waveline.services.promoter.dispatch import Promotion
from waveline.services.promoter.rules import GateFacts
from waveline.services.promoter.store import Waiting
from waveline.shared import quarantine_store
from waveline.shared.config import WaveConfig, WavelineConfig


def _source(config: WavelineConfig, w: Waiting) -> WaveConfig | None:
    pipeline = config.pipelines.get(w.promotion.pipeline)
    from_wave = w.promotion.from_wave
    return pipeline.wave(from_wave) if pipeline is not None and from_wave else None


async def introduction_facts(
    pool: asyncpg.Pool, config: WavelineConfig, promotions: Sequence[Promotion], now: datetime
) -> list[GateFacts]:
    """The gate facts of introductions about to be recorded (at ``now``): the freeze
    windows over each first wave and the manual freezes in force (one query)."""
    if not promotions:
        return []
    manual = tuple(s.freeze for s in await freeze_store.in_force(pool))
    quarantined = await _quarantines(pool, [(p.pipeline, p.app_sha) for p in promotions])
    found = []
    for p in promotions:
        pipeline = config.pipelines[p.pipeline]
        found.append(
            GateFacts(
                app_sha=p.app_sha,
                from_wave="",
                since=now,
                pipeline=p.pipeline,
                created_at=now,
                quarantined=quarantined.get((p.pipeline, p.app_sha)),
                introduction=True,
                introductions_allowed=pipeline.freeze.introductions == "allowed",
                freeze_windows=freeze.windows_for(pipeline, p.to_wave),
                manual_freezes=manual,
            )
        )
    return found


async def with_gate_facts(
    pool: asyncpg.Pool, config: WavelineConfig, waiting: Sequence[Waiting]
) -> list[Waiting]:
    """``waiting`` with the facts of the later gates filled in."""
    if not waiting:
        return []
    manual = tuple(s.freeze for s in await freeze_store.in_force(pool))
    keys = [
        (w.promotion.pipeline, source.name, w.promotion.app_sha)
        for w in waiting
        if (source := _source(config, w)) is not None and source.verifications
    ]
    runs = await verify_store.runs_for(pool, keys) if keys else {}
    quarantined = await _quarantines(
        pool, [(w.promotion.pipeline, w.promotion.app_sha) for w in waiting]
    )
    out: list[Waiting] = []
    for w in waiting:
        p = w.promotion
        pipeline = config.pipelines.get(p.pipeline)
        windows = freeze.windows_for(pipeline, p.to_wave) if pipeline else ()
        frozen = any(m.applies_to(p.pipeline, p.to_wave) for m in manual) or any(
            g.windows or g.ranges for g in windows
        )
        glasses = (
            tuple(await freeze_store.break_glasses(pool, p.pipeline, p.to_wave, p.app_sha))
            if frozen
            else ()
        )
        source = _source(config, w)
        facts = dataclasses.replace(
            w.facts,
            pipeline=p.pipeline,
            freeze_windows=windows,
            manual_freezes=manual,
            break_glasses=glasses,
            introductions_allowed=bool(pipeline and pipeline.freeze.introductions == "allowed"),
            verifications=source.verifications if source else (),
            verification_runs=runs.get((p.pipeline, source.name, p.app_sha), {}) if source else {},
            quarantined=quarantined.get((p.pipeline, p.app_sha)),
        )
        out.append(Waiting(p, facts))
    return out


async def _quarantines(
    pool: asyncpg.Pool, sets: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Why each of ``sets`` (pipeline, app sha) is quarantined, for those that are (one
    query per pipeline)."""
    by_pipeline: dict[str, list[str]] = {}
    for pipeline, app_sha in sets:
        by_pipeline.setdefault(pipeline, []).append(app_sha)
    found: dict[tuple[str, str], str] = {}
    for pipeline, shas in by_pipeline.items():
        for app_sha, q in (await quarantine_store.in_force(pool, pipeline, shas)).items():
            found[pipeline, app_sha] = quarantine_store.describe(q)
    return found

"""The freeze gate as pure functions (docs/gates.md, Freeze windows): no database, no clock.

``freeze_gate`` answers whether a promotion into a wave may start at ``now``: open, or
frozen with the reasons and when the freeze ends (the end of the last of the windows that
overlap or touch the one in force; None while a manual freeze is in force, as those end
when someone lifts them). ``break_glass_for`` answers whether a promotion has a recorded
break-glass that lets it through anyway. The promoter's gate function (``rules.py``) calls
them with the facts its store read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from croniter import croniter

from waveline.services.promoter import rules
from waveline.services.promoter.rules import OPEN, GateVerdict, closed
from waveline.shared.config import PipelineConfig
from waveline.shared.freeze_config import FreezeRange, FreezeWindows, RecurringWindow

FreezeScope = Literal["all", "pipeline", "wave"]
# Windows that keep chaining (a cron every hour lasting two) are followed this many times
# before the end is called unknown.
_MAX_CHAIN = 100


@dataclass(frozen=True)
class ManualFreeze:
    """A freeze an operator made (``waveline freeze``) and nobody lifted yet."""

    scope: FreezeScope
    pipeline: str | None
    wave: str | None
    reason: str
    actor: str
    created_at: datetime

    def applies_to(self, pipeline: str, wave: str) -> bool:
        if self.scope == "all":
            return True
        if self.scope == "pipeline":
            return self.pipeline == pipeline
        return self.pipeline == pipeline and self.wave == wave


@dataclass(frozen=True)
class BreakGlass:
    """A promotion an operator let through a freeze: who, why, when (``approve`` with
    ``break_glass``)."""

    pipeline: str
    wave: str
    app_sha: str
    reason: str
    actor: str
    created_at: datetime


def windows_for(pipeline: PipelineConfig, wave: str) -> tuple[FreezeWindows, ...]:
    """The windows that apply to ``wave``: the pipeline's and the wave's own."""
    found = pipeline.wave(wave)
    return (pipeline.freeze, found.freeze) if found is not None else (pipeline.freeze,)


def _latest_start(window: RecurringWindow, at: datetime) -> datetime:
    """The last time ``window``'s cron names at or before ``at``, read in its time zone."""
    # croniter steps back strictly before its base and works in whole seconds: start one
    # second later and step again if that gave a time after ``at``.
    # Add in UTC: arithmetic on a zoned time drops ``fold`` (the repeated hour of a fall-back).
    steps = croniter(window.cron, (at + timedelta(seconds=1)).astimezone(window.zone()))
    start: datetime = steps.get_prev(datetime)
    while start > at:
        start = steps.get_prev(datetime)
    return start


def _describe_window(window: RecurringWindow) -> str:
    return window.reason or f"freeze window '{window.cron}' ({window.timezone})"


def _describe_range(span: FreezeRange) -> str:
    start, end = (t.isoformat(timespec="seconds") for t in (span.start, span.end))
    return span.reason or f"freeze {start} to {end}"


def active_windows(windows: Sequence[FreezeWindows], at: datetime) -> list[tuple[datetime, str]]:
    """``(end, reason)`` of every window and range in force at ``at`` (start included,
    end excluded). A window's end is its start plus its duration of elapsed time."""
    found: list[tuple[datetime, str]] = []
    for group in windows:
        for window in group.windows:
            # Elapsed time: add in UTC (adding to a zoned time adds wall-clock time).
            end = _latest_start(window, at).astimezone(UTC) + window.duration
            if at < end:
                found.append((end, _describe_window(window)))
        for span in group.ranges:
            if span.start <= at < span.end:
                found.append((span.end.astimezone(UTC), _describe_range(span)))
    return found


def freeze_end(windows: Sequence[FreezeWindows], at: datetime) -> datetime | None:
    """When the freeze in force at ``at`` ends: the end of the windows in force, carried on
    through every window that overlaps or starts right at it. None when not frozen at
    ``at``, or when the windows chain on further than can be followed."""
    active = active_windows(windows, at)
    if not active:
        return None
    end = max(e for e, _ in active)
    for _ in range(_MAX_CHAIN):
        following = active_windows(windows, end)
        if not following:
            return end
        end = max(e for e, _ in following)
    return None


def freeze_gate(
    windows: Sequence[FreezeWindows],
    manual: Sequence[ManualFreeze],
    now: datetime,
    *,
    pipeline: str,
    wave: str,
) -> GateVerdict:
    """Open, or ``freeze`` with the reasons in force and ``until`` when it opens by
    itself (None: a manual freeze, or windows chaining on without a foreseeable end)."""
    reasons = [f"frozen by {m.actor}: {m.reason}" for m in manual if m.applies_to(pipeline, wave)]
    active = active_windows(windows, now)
    reasons.extend(reason for _, reason in active)
    if not reasons:
        return OPEN
    until = None if len(reasons) > len(active) else freeze_end(windows, now)
    return closed("freeze", "; ".join(reasons), until)


def wave_freeze(
    name: str,
    pipeline: PipelineConfig,
    wave: str,
    manual: Sequence[ManualFreeze],
    now: datetime,
    *,
    introduction: bool = False,
) -> GateVerdict:
    """The freeze gate of ``wave`` of pipeline ``name`` at ``now``, from the config and
    the manual freezes only (no break-glass): the promoter's own rule
    (``rules.freeze_gate``), for callers without a promotion's facts. ``introduction``: a
    new image set into the first wave; with the pipeline's ``freeze.introductions:
    allowed`` only a manual freeze naming that wave stops it."""
    found = pipeline.wave(wave)
    if found is None:
        raise ValueError(f"pipeline {name!r} has no wave {wave!r}")
    facts = rules.GateFacts(
        app_sha="",
        from_wave="",
        since=now,
        pipeline=name,
        freeze_windows=windows_for(pipeline, wave),
        manual_freezes=tuple(manual),
        introduction=introduction,
        introductions_allowed=pipeline.freeze.introductions == "allowed",
    )
    return rules.freeze_gate(facts, found, now) or OPEN


def break_glass_for(
    records: Sequence[BreakGlass],
    *,
    pipeline: str,
    wave: str,
    app_sha: str,
    not_before: datetime | None = None,
) -> BreakGlass | None:
    """The break-glass that lets this promotion (``app_sha`` into ``wave``) through a
    freeze, if one was recorded: the latest for that very set and wave, made at or after
    ``not_before`` (the promotion's creation: one made for an earlier promotion of the same
    set, before a rollback say, does not count)."""
    matching = [
        r
        for r in records
        if r.pipeline == pipeline
        and r.wave == wave
        and r.app_sha == app_sha
        and (not_before is None or r.created_at >= not_before)
    ]
    return max(matching, key=lambda r: r.created_at, default=None)

"""DORA metrics from a list of typed facts: pure, no I/O (docs/dora.md).

The facts come from PostgreSQL (``shared/dora_store.py``) or are rebuilt from the config
repository's trailers and the topics (``shared/dora_git.py``); the same facts give the same
numbers whichever source they came from.

Definitions, per pipeline and per wave, over the window ``[since, until]``:

- **deployment**: a wave starts running a set other than the one it ran before (a wave
  recovering from failing on the same set is no new deployment; a rollback is one).
- **deployment frequency**: deployments per day of the window; the pipeline's figure counts
  its last wave only (what reached production), each wave's its own.
- **lead time for changes**: for each set its pipeline's last wave starts running in the
  window, from the app commit's time (``committed_at``, when CI sent it) or else the
  announcement, to that moment; median and p90 (nearest rank).
- **change failure rate**: failed changes over deployments. A failed change is a (wave, set)
  with at least one failure fact in the window (the wave failing, a failed verification, an
  eviction of the set's commit, a rollback away from it): a set failing several ways in one
  wave counts once. The pipeline's rate sums every wave's failed changes and deployments.
- **time to restore**: from the first failure of a wave (failing, failed verification or
  rollback) while it was not already failing, to the wave next running a set (the same one
  recovered or another); failures starting in the window are counted, those not restored by
  ``until`` are ``open``. Evictions never reach a wave's targets and open no such episode.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

FailureKind = Literal["failed", "verification", "evicted", "rollback"]


@dataclass(frozen=True)
class Announced:
    """CI announced ``app_sha``; ``committed_at`` is the app commit's time when CI sent it."""

    pipeline: str
    app_sha: str
    at: datetime
    committed_at: datetime | None = None


@dataclass(frozen=True)
class WaveRan:
    """The wave reported running ``app_sha`` (every target healthy on it) at ``at``."""

    pipeline: str
    wave: str
    app_sha: str
    at: datetime


@dataclass(frozen=True)
class Failure:
    """Something went wrong with ``app_sha`` in ``wave`` at ``at``.

    ``failed``: the wave reported failing; ``verification``: a verification of the wave
    failed; ``evicted``: the set's commit into the wave was evicted from ``auto`` (a red
    check); ``rollback``: an operator rolled the wave back (``app_sha`` is the set rolled
    back from when known). ``app_sha`` None: the set the wave last ran.
    """

    pipeline: str
    wave: str
    kind: FailureKind
    at: datetime
    app_sha: str | None = None


Fact = Announced | WaveRan | Failure


@dataclass(frozen=True)
class Durations:
    """Seconds: how many, median and p90 (nearest rank); None when there are none."""

    count: int
    median_s: float | None
    p90_s: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Durations:
        if not seconds:
            return cls(0, None, None)
        ordered = sorted(seconds)
        return cls(
            len(ordered),
            float(statistics.median(ordered)),
            float(ordered[math.ceil(0.9 * len(ordered)) - 1]),
        )


@dataclass(frozen=True)
class WaveDora:
    wave: str
    deployments: int
    deployments_per_day: float
    failed_changes: int
    change_failure_rate: float | None
    time_to_restore: Durations
    open_failures: int


@dataclass(frozen=True)
class PipelineDora:
    pipeline: str
    since: datetime
    until: datetime
    deployments: int  # into the last wave
    deployments_per_day: float
    lead_time: Durations
    failed_changes: int
    all_deployments: int  # every wave's
    change_failure_rate: float | None
    time_to_restore: Durations
    open_failures: int
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    waves: tuple[WaveDora, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["since"] = self.since.isoformat()
        doc["until"] = self.until.isoformat()
        return doc


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class _WaveTally:
    deployments: int = 0
    failed: set[str] = field(default_factory=set)
    restores: list[float] = field(default_factory=list)
    open_failures: int = 0


def _replay_wave(
    events: list[WaveRan | Failure], since: datetime, until: datetime
) -> tuple[_WaveTally, dict[str, datetime]]:
    """Walk one wave's facts in time order; also returns when each set first ran in it, for
    the sets whose first run is in the window."""
    tally = _WaveTally()
    first_run: dict[str, datetime] = {}
    ran: set[str] = set()
    current: str | None = None
    failing_since: datetime | None = None
    counted_episode = False
    # Failures come after a run at the same instant: a wave fails on what it runs.
    for event in sorted(events, key=lambda e: (e.at, isinstance(e, Failure))):
        in_window = since <= event.at <= until
        if isinstance(event, WaveRan):
            if failing_since is not None:
                if counted_episode:
                    tally.restores.append((event.at - failing_since).total_seconds())
                failing_since = None
            if event.app_sha != current and in_window:
                tally.deployments += 1
                if event.app_sha not in ran:
                    first_run[event.app_sha] = event.at
            ran.add(event.app_sha)
            current = event.app_sha
            continue
        if in_window:
            tally.failed.add(event.app_sha or current or f"?{event.kind}@{event.at.isoformat()}")
        if event.kind != "evicted" and failing_since is None:
            failing_since = event.at
            counted_episode = in_window
    if failing_since is not None and counted_episode:
        tally.open_failures += 1
    return tally, first_run


def compute(
    facts: Iterable[Fact],
    pipelines: Mapping[str, Sequence[str]],
    since: datetime,
    until: datetime,
) -> list[PipelineDora]:
    """DORA numbers of each pipeline in ``pipelines`` (name → its waves in order) from
    ``facts`` (any order; facts before ``since`` give the state the window starts from,
    facts after ``until`` are ignored)."""
    if until <= since:
        raise ValueError("until must be after since")
    days = (until - since).total_seconds() / 86400
    announced: dict[tuple[str, str], Announced] = {}
    by_wave: dict[tuple[str, str], list[WaveRan | Failure]] = {}
    kinds: dict[str, dict[str, int]] = {}
    for fact in facts:
        if fact.at > until:
            continue
        if isinstance(fact, Announced):
            key = (fact.pipeline, fact.app_sha)
            known = announced.get(key)
            # The first announcement counts; a later one (a retry) keeps CI's commit time.
            if known is None or fact.at < known.at:
                announced[key] = Announced(
                    fact.pipeline,
                    fact.app_sha,
                    fact.at,
                    fact.committed_at or (known.committed_at if known else None),
                )
            elif known.committed_at is None and fact.committed_at is not None:
                announced[key] = Announced(
                    known.pipeline, known.app_sha, known.at, fact.committed_at
                )
            continue
        by_wave.setdefault((fact.pipeline, fact.wave), []).append(fact)
        if isinstance(fact, Failure) and fact.at >= since:
            counts = kinds.setdefault(fact.pipeline, {})
            counts[fact.kind] = counts.get(fact.kind, 0) + 1
    out: list[PipelineDora] = []
    for name, waves in pipelines.items():
        per_wave: list[WaveDora] = []
        restores: list[float] = []
        failed = deployments = open_failures = 0
        last_runs: dict[str, datetime] = {}
        for index, wave in enumerate(waves):
            tally, first_run = _replay_wave(by_wave.get((name, wave), []), since, until)
            if index == len(waves) - 1:
                last_runs = first_run
            per_wave.append(
                WaveDora(
                    wave=wave,
                    deployments=tally.deployments,
                    deployments_per_day=tally.deployments / days,
                    failed_changes=len(tally.failed),
                    change_failure_rate=_rate(len(tally.failed), tally.deployments),
                    time_to_restore=Durations.of(tally.restores),
                    open_failures=tally.open_failures,
                )
            )
            restores += tally.restores
            failed += len(tally.failed)
            deployments += tally.deployments
            open_failures += tally.open_failures
        leads = []
        for app_sha, ran_at in last_runs.items():
            origin = announced.get((name, app_sha))
            if origin is not None:
                start = origin.committed_at or origin.at
                leads.append((ran_at - start).total_seconds())
        production = per_wave[-1].deployments if per_wave else 0
        out.append(
            PipelineDora(
                pipeline=name,
                since=since,
                until=until,
                deployments=production,
                deployments_per_day=production / days,
                lead_time=Durations.of(leads),
                failed_changes=failed,
                all_deployments=deployments,
                change_failure_rate=_rate(failed, deployments),
                time_to_restore=Durations.of(restores),
                open_failures=open_failures,
                failures_by_kind=dict(sorted(kinds.get(name, {}).items())),
                waves=tuple(per_wave),
            )
        )
    return out

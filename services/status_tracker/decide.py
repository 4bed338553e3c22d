"""Pure decisions of the status-tracker: is a commit green or red, what does a wave run,
which checks and deploy reports count.

Kept free of I/O so the rules (README.md, docs/security.md) are tested directly: all
required checks green → fast-forward; any red → evict; pending ignored; a required check
naming its reporter counts only from that app or user; a deploy report counts only for a
revision known on the watched branch, and never takes a target back to an earlier one; a
wave runs X when every target (or a quorum of them, shared/quorum.py) is Synced+Healthy on a
revision whose wave files are X.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from waveline.shared.config import RequiredCheck
from waveline.shared.models.git import GitEvent

Verdict = Literal["green", "red", "pending"]
_RED = {"failure", "error"}


def verdict(required: Sequence[str], latest: Mapping[str, str]) -> Verdict:
    """``latest`` maps check context to its latest state for one commit."""
    if any(latest.get(ctx) in _RED for ctx in required):
        return "red"
    if all(latest.get(ctx) == "success" for ctx in required):
        return "green"
    return "pending"


def trusted_reporter(
    required: Sequence[RequiredCheck], context: str, app: str | None, user: str | None
) -> bool:
    """Whether a check on ``context`` reported by ``app``/``user`` may count.

    A context no required check names, or one named without a reporter, counts from anyone;
    one naming an app counts only from that App (slug), one naming a user only from that
    login (both compared as GitHub does, ignoring case). Listed twice: either reporter."""
    specs = [c for c in required if c.name == context]
    if not specs:
        return True
    for spec in specs:
        if spec.app is None and spec.user is None:
            return True
        if spec.app is not None and app is not None and spec.app.lower() == app.lower():
            return True
        if spec.user is not None and user is not None and spec.user.lower() == user.lower():
            return True
    return False


def watched_tips(event: GitEvent, watched_branch: str) -> list[str]:
    """Where ``event`` shows the watched branch pointing, oldest first.

    A fast-forward: watched before (which may be a commit pushed outside Waveline) and
    after; one found already done: watched now. An alignment (after watched moved outside
    Waveline, e.g. a merged pull request): the commit it reports besides auto's new tip and
    its replayed commits (none besides: auto was reset onto watched)."""
    if event.outcome in {"rejected", "failed"} or event.sha is None:
        return []
    if event.command_kind == "fast_forward":
        if event.outcome == "fast_forwarded":
            return [s for s in (event.old_sha, event.sha) if s]
        return [event.sha] if event.branch == watched_branch else []
    if event.command_kind == "align":
        others = set(event.wave_apps) - {event.sha} - set(event.replayed.values())
        if len(others) > 1:
            return []  # not the shape an alignment reports: trust none of it
        return sorted(others) or [event.sha]
    return []


ReportFate = Literal["apply", "hold", "stale"]
K = TypeVar("K", bound=Hashable)


def report_fate(
    position: int | None,
    reported_at: datetime,
    current_position: int | None,
    current_reported_at: datetime | None,
) -> ReportFate:
    """What to do with a deploy report about a revision at ``position`` on watched (None:
    not known on watched) for a target whose last counted report was at
    ``current_position`` (None: none, or one counted before positions were recorded).

    Unknown → hold (its git event may still be on its way); an earlier revision than the
    last report's, or the same revision reported earlier → stale (never moves the target
    back); otherwise apply."""
    if position is None:
        return "hold"
    if current_position is None or position > current_position:
        return "apply"
    if position == current_position and (
        current_reported_at is None or reported_at >= current_reported_at
    ):
        return "apply"
    return "stale"


def poll_fates(
    reports: Sequence[tuple[K, int | None, datetime]],
    current: Mapping[K, tuple[int | None, datetime | None]],
) -> list[ReportFate]:
    """The fate of each report of a poll, in order, as if judged one at a time: an applied
    report is its target's last counted one for the reports after it, so the last word per
    target is the one a one-by-one run would leave. ``reports``: (target, position of its
    revision on watched or None, reported_at); ``current``: each target's last counted
    (position, reported_at) before the poll (absent: none)."""
    last: dict[K, tuple[int | None, datetime | None]] = dict(current)
    fates: list[ReportFate] = []
    for target, position, reported_at in reports:
        before_position, before_at = last.get(target, (None, None))
        fate = report_fate(position, reported_at, before_position, before_at)
        if fate == "apply":
            last[target] = (position, reported_at)
        fates.append(fate)
    return fates


class ChangeLog:
    """Remembers the last reason logged per key, so a flood of the same refusal logs once
    and a change (or a return to normal) logs again. Bounded: the oldest keys go first."""

    def __init__(self, limit: int = 10_000) -> None:
        self._last: OrderedDict[Hashable, str | None] = OrderedDict()
        self._limit = limit

    def changed(self, key: Hashable, reason: str | None) -> bool:
        """Record ``reason`` (None: all is well) for ``key``; True when it differs from the
        last one recorded (an unseen key counts as None)."""
        before = self._last.pop(key, None)
        self._last[key] = reason
        while len(self._last) > self._limit:
            self._last.popitem(last=False)
        return before != reason


@dataclass(frozen=True)
class TargetReport:
    target: str
    revision: str
    phase: str
    health: str
    sync: str
    app_sha: str | None  # what the wave holds at ``revision`` (None: not a commit we know)
    reported_at: float
    position: int | None = None  # of ``revision`` on watched (None: counted before positions)


@dataclass(frozen=True)
class WaveVerdict:
    state: Literal["running", "failing", "deploying"]
    app_sha: str | None = None
    cfg_sha: str | None = None
    reason: str | None = None
    cfg_position: int | None = None
    # Targets not counted as running ``app_sha``: silent, not yet Synced and Healthy,
    # degraded (when tolerated) or on another set. Empty unless a quorum let the wave run.
    lagging: tuple[str, ...] = ()


def _degraded(r: TargetReport) -> bool:
    return r.health == "Degraded" or r.phase in {"Failed", "Error"}


def wave_verdict(
    targets: Sequence[str],
    reports: Mapping[str, TargetReport],
    need: int | None = None,
    tolerate_degraded: bool = False,
) -> WaveVerdict:
    """What a wave runs, given the latest report of each of its targets: set X once
    ``need`` of them (default: every one; see shared/quorum.py) are Synced and Healthy on
    revisions whose wave files are X; when several sets reach it, the one on the latest
    revision. A degraded or failed target fails the wave unless ``tolerate_degraded``
    (then it only does not count). ``cfg_position`` is the latest watched position any
    target reports: as no target goes back, it never decreases for a wave, so a status
    with a lower one is an old status replayed."""
    need = len(targets) if need is None else need
    known = [r.position for t in targets if (r := reports.get(t)) and r.position is not None]
    latest = max(known, default=None)
    if not tolerate_degraded:
        for target in targets:
            r = reports.get(target)
            if r is not None and _degraded(r):
                return WaveVerdict(
                    "failing",
                    r.app_sha,
                    r.revision,
                    f"{target}: phase {r.phase or '-'}, health {r.health or '-'}",
                    latest,
                )
    healthy: dict[str, list[TargetReport]] = {}
    for target in targets:
        r = reports.get(target)
        if r is not None and r.sync == "Synced" and r.health == "Healthy" and r.app_sha:
            healthy.setdefault(r.app_sha, []).append(r)
    reached = [runs for runs in healthy.values() if len(runs) >= need]
    if not reached:
        return WaveVerdict("deploying", reason=_why_not(targets, reports, need, healthy))

    def newest(r: TargetReport) -> tuple[int, float]:
        # The latest revision on watched, not the latest to arrive.
        return (-1 if r.position is None else r.position, r.reported_at)

    runs = max(reached, key=lambda group: max(map(newest, group)))
    on_set = {r.target for r in runs}
    lagging = tuple(t for t in targets if t not in on_set)
    head = max(runs, key=newest)
    return WaveVerdict("running", head.app_sha, head.revision, cfg_position=latest, lagging=lagging)


def _why_not(
    targets: Sequence[str],
    reports: Mapping[str, TargetReport],
    need: int,
    healthy: Mapping[str, list[TargetReport]],
) -> str:
    missing = [t for t in targets if t not in reports]
    if need == len(targets):
        if missing:
            return f"no report yet from {missing}"
        if any(r.sync != "Synced" or r.health != "Healthy" for r in reports.values()):
            return "not every target is Synced and Healthy"
        return f"targets run different image sets: { {r.app_sha for r in reports.values()} }"
    best = max((len(runs) for runs in healthy.values()), default=0)
    counted = {r.target for runs in healthy.values() if len(runs) == best for r in runs}
    lagging = [t for t in targets if t not in counted]
    return f"{best}/{need} targets healthy on one set (of {len(targets)}); lagging: {lagging}"

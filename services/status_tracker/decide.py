"""Pure decisions of the status-tracker: is a commit green or red, what does a wave run.

Kept free of I/O so the rules (DESIGN §2: all required checks green → fast-forward; any red →
evict; pending ignored; a wave runs X when every target is Synced+Healthy on a revision whose
wave files are X) are tested directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["green", "red", "pending"]
_RED = {"failure", "error"}


def verdict(required: Sequence[str], latest: Mapping[str, str]) -> Verdict:
    """``latest`` maps check context to its latest state for one commit."""
    if any(latest.get(ctx) in _RED for ctx in required):
        return "red"
    if all(latest.get(ctx) == "success" for ctx in required):
        return "green"
    return "pending"


@dataclass(frozen=True)
class TargetReport:
    target: str
    revision: str
    phase: str
    health: str
    sync: str
    app_sha: str | None  # what the wave holds at ``revision`` (None: not a commit we know)
    reported_at: float


@dataclass(frozen=True)
class WaveVerdict:
    state: Literal["running", "failing", "deploying"]
    app_sha: str | None = None
    cfg_sha: str | None = None
    reason: str | None = None


def wave_verdict(targets: Sequence[str], reports: Mapping[str, TargetReport]) -> WaveVerdict:
    """What a wave runs, given the latest report of each of its targets."""
    missing = [t for t in targets if t not in reports]
    for target in targets:
        r = reports.get(target)
        if r is not None and (r.health == "Degraded" or r.phase in {"Failed", "Error"}):
            return WaveVerdict(
                "failing",
                r.app_sha,
                r.revision,
                f"{target}: phase {r.phase or '-'}, health {r.health or '-'}",
            )
    if missing:
        return WaveVerdict("deploying", reason=f"no report yet from {missing}")
    ready = [reports[t] for t in targets]
    if not all(r.sync == "Synced" and r.health == "Healthy" for r in ready):
        return WaveVerdict("deploying", reason="not every target is Synced and Healthy")
    apps = {r.app_sha for r in ready}
    if len(apps) != 1 or None in apps:
        return WaveVerdict("deploying", reason=f"targets run different image sets: {apps}")
    newest = max(ready, key=lambda r: r.reported_at)
    return WaveVerdict("running", apps.pop(), newest.revision)

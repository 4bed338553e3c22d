"""Pure rules of what the pipeline view (``GET /v1/pipelines/{p}``, the dashboard and
``waveline status``) shows, kept free of I/O so they are tested directly.

- A commit of ``auto`` is on ``watched`` once it or a later commit of the same ``auto``
  line is where Waveline saw ``watched`` point: ``auto`` is one line on top of ``watched``,
  so a fast-forward to a commit brings every commit before it. Such a commit is never
  pending, whatever checks it got (a newer commit's green check took it along).
- A promotion still in flight is superseded once a newer promotion of another set into the
  same wave has landed (its commit is on ``watched``, or it is done), whether or not its
  own commit is on ``watched`` too: the wave will run the newer set, never the older one.
- Gate verdicts are the promoter's (``services/promoter/rules.py``), shown generically:
  what the gate waits for, why, and until when if known; a gate kind added later renders
  the same way.
- A quorum wave (``min_healthy``) shows how many targets it needs and the ones not counted.
- Times are shown relative ("3 min ago") with the exact time, ISO 8601 to the second, kept
  for a tooltip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from waveline.services.promoter import rules
from waveline.services.promoter.rules import PromotionFacts
from waveline.shared.config import WaveConfig
from waveline.shared.quorum import required_healthy


def on_watched(created_at: datetime, watched_mark: datetime | None) -> bool:
    """Whether an ``auto`` commit recorded at ``created_at`` is on ``watched``, given
    ``watched_mark``: when the newest ``auto`` commit of the repository that ``watched``
    pointed at was recorded (None: none yet)."""
    return watched_mark is not None and created_at <= watched_mark


@dataclass(frozen=True)
class Flight:
    """A promotion as the supersession rule sees it. ``landed``: the wave will run its set
    (its commit is on ``watched``) or runs it (done)."""

    facts: PromotionFacts
    wave: str
    landed: bool


def superseded(flights: Iterable[Flight]) -> dict[UUID, str]:
    """``{promotion_id: app_sha of the newer set}`` for every promotion in flight that the
    newest landed set of its wave overtook: the promoter's own rule for a wave that runs a
    set (``rules.arrival``), applied as soon as the set is on ``watched``."""
    by_wave: dict[str, list[Flight]] = {}
    for f in flights:
        by_wave.setdefault(f.wave, []).append(f)
    out: dict[UUID, str] = {}
    for group in by_wave.values():
        landed = [f.facts for f in group if f.landed]
        if not landed:
            continue
        newest = max(landed, key=lambda p: p.created_at).app_sha
        for pid in rules.arrival([f.facts for f in group], newest).overtaken:
            out[pid] = newest
    return out


def gate_verdicts(
    wave: WaveConfig,
    *,
    held: bool,
    held_by: str | None,
    frozen: rules.GateVerdict,
    waiting: Iterable[rules.GateFacts],
    now: datetime,
) -> list[dict[str, Any]]:
    """Why ``wave``'s gate is closed, each ``{"open", "waiting_for", "reason", "until"}``;
    ``[]`` when open. The hold (``rules.hold_gate``) and the wave's freeze verdict
    (``frozen``) stand whether or not a set waits; then ``rules.closed_gates`` for each
    promotion ``waiting`` at it. A verdict two promotions share is listed once."""
    # A hold closes the gate whether or not a set waits at it: asked once, for no set.
    hold = rules.GateFacts(app_sha="", from_wave="", since=now, held=held, held_by=held_by)
    found = [rules.hold_gate(hold, wave, now), None if frozen.is_open else frozen]
    for facts in waiting:
        found.extend(rules.closed_gates(facts, wave, now))
    out: list[dict[str, Any]] = []
    for verdict in found:
        if verdict is not None and verdict.to_json() not in out:
            out.append(verdict.to_json())
    return out


def quorum(wave: WaveConfig, lagging: list[str]) -> dict[str, Any] | None:
    """A quorum wave's count (``min_healthy``): ``{"required", "targets", "lagging"}``,
    ``lagging`` the targets the status-tracker did not count when the wave last ran a set
    (silent, not Synced and Healthy, degraded when tolerated, on another set). None for a
    wave that needs every target."""
    if wave.min_healthy is None:
        return None
    required = required_healthy(len(wave.targets), wave.min_healthy)
    return {"required": required, "targets": len(wave.targets), "lagging": lagging}


def quorum_text(q: Mapping[str, Any] | None, state: str) -> str:
    """ "4/5 healthy (needs 4), not counted: x" for a running quorum wave; "needs 4 of 5
    healthy" otherwise; "" for a wave that needs every target."""
    if not q:
        return ""
    lagging = list(q.get("lagging") or [])
    if state != "running":
        return f"needs {q['required']} of {q['targets']} healthy"
    counted = q["targets"] - len(lagging)
    rest = f", not counted: {', '.join(lagging)}" if lagging else ""
    return f"{counted}/{q['targets']} healthy (needs {q['required']}){rest}"


def span(seconds: float | None) -> str:
    """A duration for people: "42 s", "12 min", "3.5 h", "2.1 d"; "-" for none."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def dora_figures(numbers: Mapping[str, Any]) -> dict[str, str]:
    """The four DORA numbers of a pipeline (``PipelineDora.to_json()``), labelled for
    people."""
    rate = numbers.get("change_failure_rate")
    since, until = parse(numbers.get("since")), parse(numbers.get("until"))
    return {
        "deployments per day": f"{numbers['deployments_per_day']:.2f}",
        "lead time (median)": span(numbers["lead_time"]["median_s"]),
        "change failure rate": "-" if rate is None else f"{rate * 100:.0f} %",
        "time to restore (median)": span(numbers["time_to_restore"]["median_s"]),
        "window": f"last {(until - since).days} d" if since and until else "-",
    }


def exact(when: datetime) -> str:
    """ISO 8601 to the second (no microseconds)."""
    return when.isoformat(timespec="seconds")


def parse(value: str | None) -> datetime | None:
    """The datetime of an ISO string from the view's JSON (None stays None)."""
    return datetime.fromisoformat(value) if value else None


def ago(when: datetime, now: datetime) -> str:
    """``when`` relative to ``now``: "just now", "42 s ago", "3 min ago", "2 h ago",
    "5 d ago"; in the future "in 3 min"."""
    seconds = (now - when).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 5:
        return "just now"
    if seconds < 60:
        amount = f"{int(seconds)} s"
    elif seconds < 3600:
        amount = f"{int(seconds // 60)} min"
    elif seconds < 86400:
        amount = f"{int(seconds // 3600)} h"
    else:
        amount = f"{int(seconds // 86400)} d"
    return f"in {amount}" if future else f"{amount} ago"

"""One image set's journey through Waveline, hop by hop, built from what the topics hold.

Pure: ``build_timeline`` turns ``(timestamp_ms, topic, model)`` tuples into hops (the
announcement, the git commands and what the git-writer did with them, the checks on the
set's commits, Argo CD's reports, the waves' verdicts, the promotions and the operator
actions concerning it, each with who did it) with the time of each and a summary;
``render`` and ``to_json`` present it. ``waveline trace`` reads Kafka.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from waveline.shared.config import WavelineConfig
from waveline.shared.gitengine.trailers import Trailers
from waveline.shared.models.checks import CheckReported
from waveline.shared.models.deploys import DeployReported
from waveline.shared.models.git import (
    Evict,
    FastForward,
    GitEvent,
    IntroduceImages,
    PromoteWave,
    RollbackWave,
)
from waveline.shared.models.images import ImageSetAnnounced
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.models.promotions import TERMINAL, PromotionEvent
from waveline.shared.models.waves import WaveStatus

logger = logging.getLogger(__name__)

Observed = tuple[int, str, BaseModel]  # (record timestamp in ms, base topic name, message)


@dataclass(frozen=True)
class Hop:
    at_ms: int
    topic: str
    kind: str  # announce, command, commit, watched, check, deploy, wave, promotion, git, operator
    name: str


@dataclass(frozen=True)
class Timeline:
    app_sha: str
    pipelines: tuple[str, ...]
    hops: tuple[Hop, ...]
    summary: tuple[tuple[str, int], ...]  # (main hop, milliseconds)

    @property
    def origin_ms(self) -> int:
        """The announcement's time (the first hop's when it is before ``--since``)."""
        return next((h.at_ms for h in self.hops if h.kind == "announce"), self.hops[0].at_ms)


def _s(sha: str | None) -> str:
    return (sha or "-")[:10]


def waves_of_targets(config: WavelineConfig) -> dict[str, list[str]]:
    """Argo CD application → the ``pipeline/wave`` keys that list it as a target."""
    found: dict[str, list[str]] = {}
    for name, pipeline in config.pipelines.items():
        for wave in pipeline.waves:
            for target in wave.targets:
                found.setdefault(target, []).append(f"{name}/{wave.name}")
    return found


def resolve_app_sha(given: str, observed: Iterable[Observed]) -> str:
    """``given`` if some message names it exactly, else the one announced set it prefixes."""
    seen = {getattr(m, "app_sha", None) for _, _, m in observed} - {None}
    if given in seen:
        return given
    candidates = {s for s in seen if isinstance(s, str) and s.startswith(given)}
    return candidates.pop() if len(candidates) == 1 else given


def build_timeline(
    app_sha: str,
    observed: Iterable[Observed],
    *,
    pipeline: str | None = None,
    target_waves: Mapping[str, list[str]] | None = None,
) -> Timeline | None:
    """The hops of image set ``app_sha`` in time order; None when no message concerns it.

    Commits are the set's when a git event with its app_sha made them, or when an eviction
    or re-alignment replayed one of those. A deploy report counts when its revision holds
    this set in the target's wave (``wave_apps`` of any git event; ``target_waves`` from the
    config), or — when that is unknown — when the revision is one of the set's commits.
    """
    trace = _Trace(app_sha, pipeline, target_waves or {})
    events = sorted(observed, key=lambda o: o[0])
    trace.scan(events)
    for at, topic, message in events:
        trace.match(at, topic, message)
    if not trace.hops:
        return None
    return Timeline(app_sha, tuple(sorted(trace.pipelines)), tuple(trace.hops), trace.summary())


@dataclass
class _Trace:
    app_sha: str
    pipeline: str | None
    target_waves: Mapping[str, list[str]]
    commits: dict[str, str | None] = field(default_factory=dict)  # sha -> wave it wrote
    holds: dict[str, dict[str, str]] = field(default_factory=dict)  # sha -> {p/wave: app}
    linked: set[UUID] = field(default_factory=set)  # the set's commands
    ff_of: dict[UUID, str] = field(default_factory=dict)  # fast-forward -> the commit named
    hops: list[Hop] = field(default_factory=list)
    pipelines: set[str] = field(default_factory=set)
    committed: dict[str, int] = field(default_factory=dict)  # wave -> set first committed
    watched: dict[str, int] = field(default_factory=dict)  # wave -> watched first held it
    healthy: dict[str, int] = field(default_factory=dict)  # wave -> first "runs it"
    running: set[tuple[str, str]] = field(default_factory=set)
    promotion_ids: set[UUID] = field(default_factory=set)
    arrived: set[tuple[str, str]] = field(default_factory=set)  # (pipeline, wave) it reached

    def mine(self, pipeline: str | None, app_sha: str | None) -> bool:
        return app_sha == self.app_sha and self.pipeline in (None, pipeline)

    def scan(self, events: list[Observed]) -> None:
        """First pass: the set's commits (through replays of replays) and its commands."""
        gits = [m for _, _, m in events if isinstance(m, GitEvent)]
        for m in gits:
            self.holds.update(m.wave_apps)
            if self.mine(m.pipeline, m.app_sha) and m.outcome == "committed" and m.sha:
                self.commits[m.sha] = m.wave
        changed = True
        while changed:
            changed = False
            for m in gits:
                for old, new in m.replayed.items():
                    if old in self.commits and new not in self.commits:
                        self.commits[new], changed = self.commits[old], True
        for _, _, c in events:
            if isinstance(c, IntroduceImages | PromoteWave | RollbackWave):
                if self.mine(c.pipeline, c.app_sha):
                    self.linked.add(c.command_id)
            elif isinstance(c, FastForward | Evict) and c.sha in self.commits:
                self.linked.add(c.command_id)
                if isinstance(c, FastForward):
                    self.ff_of[c.command_id] = c.sha

    def add(self, at: int, topic: str, kind: str, name: str) -> None:
        self.hops.append(Hop(at, topic, kind, name))

    def match(self, at: int, topic: str, m: BaseModel) -> None:
        if isinstance(m, ImageSetAnnounced) and self.mine(m.pipeline, m.app_sha):
            self.pipelines.add(m.pipeline)
            n = len(m.images)
            what = f"{n} service{'s' if n != 1 else ''}"
            by = f" by {m.actor}" if m.actor else ""
            self.add(at, topic, "announce", f"announced in {m.pipeline} ({what}){by}")
        elif isinstance(m, OperatorCommand):
            if self.acted_on(m):
                self.add(at, topic, "operator", _operator_name(m))
        elif isinstance(m, GitEvent):
            self.git(at, topic, m)
        elif getattr(m, "command_id", None) in self.linked:
            self.add(at, topic, "command", _command_name(m))
        elif isinstance(m, CheckReported) and m.sha in self.commits:
            self.add(at, topic, "check", f"check {m.context} {m.state} on {_s(m.sha)}")
        elif isinstance(m, DeployReported) and self.deployed(m):
            phase = f" ({m.phase})" if m.phase not in {"", "Succeeded"} else ""
            state = f"{m.sync or '-'}/{m.health or '-'}"
            self.add(at, topic, "deploy", f"{m.app} {state}{phase} at {_s(m.revision)}")
        elif isinstance(m, WaveStatus) and self.pipeline in (None, m.pipeline):
            key = (m.pipeline, m.wave)
            if m.app_sha == self.app_sha and m.state == "running":
                self.running.add(key)
                self.arrived.add(key)
                self.healthy.setdefault(m.wave, at)
                self.add(at, topic, "wave", f"wave {m.wave} runs it at {_s(m.cfg_sha)}")
            elif m.app_sha == self.app_sha:
                self.add(at, topic, "wave", f"wave {m.wave} failing: {m.reason or '-'}")
            elif key in self.running:
                self.running.discard(key)
                self.add(at, topic, "wave", f"wave {m.wave} moved on to {_s(m.app_sha)}")
        elif isinstance(m, PromotionEvent) and self.mine(m.pipeline, m.app_sha):
            route = (
                f"promote {m.from_wave}→{m.to_wave}"
                if m.from_wave
                else f"introduce into {m.to_wave}"
            )
            url = f" {m.url}" if m.url else ""
            self.add(at, topic, "promotion", f"{route} {m.status}{url}")
            self.promotion_ids.add(m.promotion_id)
            if m.status in TERMINAL:
                self.arrived.add((m.pipeline, m.to_wave))

    def acted_on(self, m: OperatorCommand) -> bool:
        """Whether an operator command concerns this set: a result about one of its
        promotions; a command naming a set (a rollback's ``to``, an approval's set) names
        this one; else a wave command (hold, release, an approval naming no set) of its
        pipeline on a wave it has not reached yet, or a rollback of a wave running it."""
        if self.pipeline not in (None, m.pipeline) or m.pipeline not in self.pipelines:
            return False
        if m.action == "result":
            return m.promotion_id in self.promotion_ids
        named = getattr(m, "app_sha", None)
        if m.action == "rollback":
            if m.to not in (None, "previous"):
                return m.to == self.app_sha
            return (m.pipeline, m.wave) in self.running
        if isinstance(named, str):
            return named == self.app_sha
        return (m.pipeline, m.wave) not in self.arrived

    def git(self, at: int, topic: str, m: GitEvent) -> None:
        replays = {o: n for o, n in m.replayed.items() if o in self.commits}
        made = m.sha in self.commits and m.outcome in {"committed", "fast_forwarded"}
        if m.command_id not in self.linked and not replays and not made:
            return  # e.g. a no-op whose sha is merely the current tip
        if m.outcome == "committed" and m.app_sha == self.app_sha and m.sha in self.commits:
            into = self.commits[m.sha] or "?"
            self.committed.setdefault(into, at)
            self.add(
                at, topic, "commit", f"committed on {m.branch} {_s(m.sha)} ({into}){_attempt(m)}"
            )
        elif m.command_kind == "fast_forward" and m.outcome in {"fast_forwarded", "noop"}:
            sha = self.ff_of.get(m.command_id, m.sha or "")
            wave = self.commits.get(sha)
            if wave is not None:
                self.watched.setdefault(wave, at)
            verb = "fast-forwarded to" if m.outcome == "fast_forwarded" else "already contained"
            self.add(at, topic, "watched", f"watched {m.branch} {verb} {_s(sha)}")
        elif m.outcome == "evicted" and m.old_sha in self.commits:
            self.add(at, topic, "git", f"evicted {_s(m.old_sha)} from {m.branch}{_attempt(m)}")
        elif m.outcome in {"noop", "rejected", "failed"}:
            self.add(at, topic, "git", f"{m.command_kind} {m.outcome}: {m.reason or '-'}")
        for old, new in replays.items():
            self.add(at, topic, "git", f"{_s(old)} replayed as {_s(new)} on {m.branch}")

    def deployed(self, m: DeployReported) -> bool:
        if self.target_waves and m.app not in self.target_waves:
            return False  # no wave of the config deploys to it
        waves = [
            w for w in self.target_waves.get(m.app, []) if self.pipeline in (None, w.split("/")[0])
        ]
        held = self.holds.get(m.revision)
        if held is not None and waves:
            return any(held.get(w) == self.app_sha for w in waves)
        return m.revision in self.commits and (not self.target_waves or bool(waves))

    def summary(self) -> tuple[tuple[str, int], ...]:
        announce = next((h.at_ms for h in self.hops if h.kind == "announce"), None)
        out: list[tuple[str, int]] = []
        previous: str | None = None
        for wave, at in sorted(self.committed.items(), key=lambda kv: kv[1]):
            if previous is None and announce is not None:
                out.append((f"announce → committed on auto ({wave})", at - announce))
            elif previous is not None and previous in self.healthy:
                out.append((f"{previous} healthy → {wave} committed", at - self.healthy[previous]))
            if wave in self.watched:
                out.append((f"{wave}: committed → watched", self.watched[wave] - at))
                if wave in self.healthy:
                    out.append(
                        (f"{wave}: watched → healthy", self.healthy[wave] - self.watched[wave])
                    )
            previous = wave
        if announce is not None and self.healthy:
            wave, at = max(self.healthy.items(), key=lambda kv: kv[1])
            out.append((f"announce → {wave} healthy (total)", at - announce))
        return tuple(out)


def _attempt(m: GitEvent) -> str:
    """`` (attempt N)`` for a commit of a set retried after eviction (docs/gates.md)."""
    attempt = Trailers(m.trailers).attempt
    return f" (attempt {attempt})" if attempt > 1 else ""


def _command_name(m: BaseModel) -> str:
    if isinstance(m, IntroduceImages):
        again = f" (attempt {m.attempt})" if m.attempt > 1 else ""
        return f"introduce command → {m.wave}{again}"
    if isinstance(m, PromoteWave):
        return f"promote command {m.from_wave}→{m.to_wave}"
    if isinstance(m, RollbackWave):
        return f"rollback command {m.wave} to {_s(m.to_sha)}"
    verb = "fast-forward" if isinstance(m, FastForward) else "evict"
    return f"{verb} command for {_s(getattr(m, 'sha', None))}"


def _operator_name(m: OperatorCommand) -> str:
    what = {"result": f"result {m.result}", "rollback": f"rollback to {m.to or 'previous'}"}
    return f"{what.get(m.action, m.action)} {m.wave} by {m.actor}"


def format_delta(ms: int) -> str:
    """``+830 ms``, ``+2.41 s``, ``+12m05s``, ``+3h02m`` (``-`` when clocks disagree)."""
    sign, ms = ("-" if ms < 0 else "+"), abs(ms)
    if ms < 1000:
        return f"{sign}{ms} ms"
    if ms < 60_000:
        return f"{sign}{ms / 1000:.2f} s"
    seconds = ms // 1000
    if seconds < 3600:
        return f"{sign}{seconds // 60}m{seconds % 60:02d}s"
    return f"{sign}{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def rows(timeline: Timeline) -> list[dict[str, Any]]:
    """One dict per hop: time, deltas since the previous hop and since the announcement."""
    out, previous = [], timeline.hops[0].at_ms
    for hop in timeline.hops:
        out.append(
            {
                "at": _iso(hop.at_ms).replace("+00:00", "Z"),
                "since_previous_ms": hop.at_ms - previous,
                "since_announce_ms": hop.at_ms - timeline.origin_ms,
                "topic": hop.topic,
                "kind": hop.kind,
                "hop": hop.name,
            }
        )
        previous = hop.at_ms
    return out


def to_json(timeline: Timeline) -> dict[str, Any]:
    return {
        "app_sha": timeline.app_sha,
        "pipelines": list(timeline.pipelines),
        "announced": any(h.kind == "announce" for h in timeline.hops),
        "hops": rows(timeline),
        "summary": [{"hop": label, "ms": ms} for label, ms in timeline.summary],
    }


def render(timeline: Timeline) -> str:
    where = ", ".join(timeline.pipelines) or "pipeline unknown"
    lines = [f"image set {timeline.app_sha} ({where})"]
    if not any(h.kind == "announce" for h in timeline.hops):
        lines.append("  (announcement not in the window; deltas count from the first hop)")
    lines.append(f"  {'time (UTC)':<24} {'since prev':>10} {'since ann.':>10}  hop")
    for row in rows(timeline):
        lines.append(
            f"  {row['at']:<24} {format_delta(row['since_previous_ms']):>10} "
            f"{format_delta(row['since_announce_ms']):>10}  {row['hop']}"
        )
    if timeline.summary:
        lines.append("summary:")
        width = max(len(label) for label, _ in timeline.summary)
        lines.extend(f"  {label:<{width}}  {format_delta(ms)}" for label, ms in timeline.summary)
    return "\n".join(lines)

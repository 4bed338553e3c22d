"""Which Argo CD reports count (docs/security.md, Deploy reports, checks, approvals).

A report counts only when its revision is a commit Waveline saw the pipeline's watched
branch point at (``watched_commits``, recorded from the git-writer's events), and never
takes a target back to an earlier position on watched. A report about a revision not yet
known is held (``held_deploys``): Argo CD may deploy a fast-forward before its git event
reaches this service, so the report is applied when the commit is recorded; one whose
commit is not recorded within ``WAVELINE_DEPLOY_HOLD_S`` is dropped, logged and counted as
ignored (a report about a commit that reaches watched later still never counts: Argo CD
could not have run it then). The rules are in ``decide.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from prometheus_client import Counter

from waveline.services.status_tracker import store
from waveline.services.status_tracker.decide import ChangeLog, poll_fates
from waveline.services.status_tracker.store import Report
from waveline.shared.models.deploys import DeployReported
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from waveline.services.status_tracker.store import Conn


class TrackerMetrics:
    """The status-tracker's refusals, on its ``/metrics`` (the runtime's registry)."""

    def __init__(self, runtime: Runtime) -> None:
        registry = runtime.waits.registry
        self.deploys_ignored = Counter(
            "waveline_deploy_reports_ignored_total",
            "Argo CD reports that did not count: revision not on watched (after the hold),"
            " stale (an earlier revision than the target's last report), unknown target",
            ["reason"],
            registry=registry,
        )
        self.deploys_held = Counter(
            "waveline_deploy_reports_held_total",
            "Argo CD reports held because their revision was not yet known on watched",
            registry=registry,
        )
        self.checks_ignored = Counter(
            "waveline_checks_ignored_total",
            "Check results that did not count: a required check from another reporter",
            ["reason"],
            registry=registry,
        )


@dataclass
class DeployReports:
    """Deploy reports a poll at a time: every statement runs once for the whole poll (one
    by one, the ~5 round trips a report cost kept the status-tracker behind a fleet's
    reports while it used a few percent of a core, docs/benchmarks.md)."""

    runtime: Runtime
    metrics: TrackerMetrics
    evaluate_waves: Callable[[Iterable[tuple[str, str]]], Awaitable[None]]
    _log: ChangeLog = field(default_factory=ChangeLog)
    # target → its (pipeline, wave) pairs and its repos: the config's look-up walks every
    # wave of every pipeline (~2 ms a report at 1,000 pipelines); the config never changes.
    _waves: dict[str, list[tuple[str, str]]] = field(init=False)
    _repos: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        config = self.runtime.config
        self._waves = {}
        for name, pipeline in config.pipelines.items():
            for wave in pipeline.waves:
                for target in dict.fromkeys(wave.targets):
                    self._waves.setdefault(target, []).append((name, wave.name))
        self._repos = {
            target: sorted({config.pipelines[p].repo for p, _ in waves})
            for target, waves in self._waves.items()
        }

    def waves_of(self, target: str) -> list[tuple[str, str]]:
        """(pipeline, wave) pairs whose wave lists ``target`` (``pipelines_of_target``)."""
        return self._waves.get(target, [])

    def _repos_of(self, target: str) -> list[str]:
        return self._repos.get(target, [])

    async def on_deploys(self, deploys: Sequence[DeployReported]) -> None:
        """A poll's reports, in order, with the outcome of handling them one at a time:
        the last word per target is the same, every held, stale or unknown one is counted
        and logged as it would be; each wave a counted report changed is judged once, after
        the whole poll (so a wave that passes through several states within one poll
        publishes the one it ends in)."""
        polled: list[tuple[Report, list[str]]] = []
        for deploy in deploys:
            report = Report(
                deploy.app,
                deploy.revision,
                deploy.phase,
                deploy.health,
                deploy.sync,
                deploy.reported_at,
            )
            repos = self._repos_of(report.target)
            if not repos:
                # Ingest answers such reports 204; one on the topic came some other way.
                self.metrics.deploys_ignored.labels("unknown_target").inc()
                self._note(report, "unknown_target", "no wave lists this target")
                continue
            polled.append((report, repos))
        if not polled:
            return
        pool = self.runtime.pool
        positions = await store.watched_positions(pool, _commits(polled))
        judged = [(r, _latest(positions, repos, r.revision)) for r, repos in polled]
        changed = await self._settle(judged)
        # The git-events consumer may have recorded a held report's commit between the
        # look-up and the hold, and looked for held reports before this one was: look once
        # more (one of the two always sees the other's row; applying twice is harmless).
        held = [
            (r, repos) for (r, repos), (_, at) in zip(polled, judged, strict=True) if at is None
        ]
        if held:
            again = await store.watched_positions(pool, _commits(held))
            tips: dict[str, set[str]] = {}
            for report, repos in held:
                known = _where(again, repos, report.revision)
                if known is not None:
                    tips.setdefault(known[1], set()).add(report.revision)
            if tips:
                changed |= await self._apply_held(tips)
        await self._evaluate(changed)

    async def _settle(self, judged: Sequence[tuple[Report, int | None]]) -> set[str]:
        """Apply, hold or ignore each (report, position on watched or None), in order;
        returns the targets whose row changed."""
        pool = self.runtime.pool
        current = await store.last_counted(pool, {r.target for r, _ in judged})
        fates = poll_fates([(r.target, at, r.reported_at) for r, at in judged], current)
        holds: list[Report] = []
        counted: dict[str, tuple[Report, int]] = {}
        for (report, position), fate in zip(judged, fates, strict=True):
            if fate == "hold":
                holds.append(report)
                self.metrics.deploys_held.inc()
                self._note(report, "held", "revision not known on watched yet; held")
            elif fate == "stale":
                self.metrics.deploys_ignored.labels("stale").inc()
                self._note(report, "stale", "an earlier revision than the target's last report")
            else:
                assert position is not None
                counted[report.target] = (report, position)  # the last applied one stays
                self._note(report, None, "reports count again")
        if holds:
            await store.hold(pool, holds)
        return await store.count(pool, list(counted.values())) if counted else set()

    def _note(self, report: Report, reason: str | None, why: str) -> None:
        """Log a target's refusals once per change of reason, not once per report."""
        if not self._log.changed(report.target, reason):
            return
        level = logging.INFO if reason in {None, "held"} else logging.WARNING
        logger.log(
            level,
            "deploy report for target %s at %s: %s",
            report.target,
            report.revision[:10],
            why if reason is None else f"{reason}: {why}",
        )

    async def record_watched(self, conn: Conn, commits: Sequence[tuple[str, str]]) -> None:
        """``commits``: (repo, sha) where watched pointed, oldest first."""
        await store.record_watched(conn, commits)

    async def apply_held(self, tips: Mapping[str, Collection[str]]) -> None:
        """Apply the held reports about ``tips`` (repo → shas now known on its watched
        branch), in watched order, then judge the waves they changed."""
        await self._evaluate(await self._apply_held(tips))

    async def _apply_held(self, tips: Mapping[str, Collection[str]]) -> set[str]:
        pool = self.runtime.pool
        commits = {(repo, sha) for repo, shas in tips.items() for sha in shas}
        if not commits:
            return set()
        judged: list[tuple[Report, int | None]] = []
        for row in await store.held_on(pool, commits):
            if row["repo"] not in self._repos_of(row["target"]):
                continue
            judged.append(
                (
                    Report(
                        row["target"],
                        row["revision"],
                        row["phase"],
                        row["health"],
                        row["sync"],
                        row["reported_at"],
                    ),
                    row["position"],
                )
            )
        if not judged:
            return set()
        changed = await self._settle(judged)
        await store.unhold(pool, {(r.target, r.revision) for r, _ in judged})
        for report, _ in judged:
            logger.info(
                "deploy report for target %s at %s: its commit is now known on watched",
                report.target,
                report.revision[:10],
            )
        return changed

    async def _evaluate(self, targets: Iterable[str]) -> None:
        waves = {pw for t in set(targets) for pw in self.waves_of(t)}
        if waves:
            await self.evaluate_waves(waves)

    async def drop_expired(self, hold: timedelta) -> int:
        """Drop the held reports whose revision stayed unknown for ``hold``: ignored as not
        on watched (logged, counted). Returns how many."""
        dropped = await store.drop_expired(self.runtime.pool, hold)
        for report in dropped:
            self.metrics.deploys_ignored.labels("not_on_watched").inc()
            self._note(
                report,
                "not_on_watched",
                f"not a commit Waveline saw on the watched branch within {hold.total_seconds():g}"
                " s; ignored",
            )
        return len(dropped)


def _commits(polled: Iterable[tuple[Report, list[str]]]) -> set[tuple[str, str]]:
    return {(repo, r.revision) for r, repos in polled for repo in repos}


def _where(
    positions: Mapping[tuple[str, str], int], repos: list[str], sha: str
) -> tuple[int, str] | None:
    """(position, repo) of ``sha`` on the watched branch of one of ``repos``: the latest."""
    found = [(at, repo) for repo in repos if (at := positions.get((repo, sha))) is not None]
    return max(found, default=None)


def _latest(positions: Mapping[tuple[str, str], int], repos: list[str], sha: str) -> int | None:
    where = _where(positions, repos, sha)
    return None if where is None else where[0]

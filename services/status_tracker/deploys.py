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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
from prometheus_client import Counter

from waveline.services.status_tracker.decide import ChangeLog, report_fate
from waveline.shared.models.deploys import DeployReported
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]


@dataclass(frozen=True)
class Report:
    target: str
    revision: str
    phase: str
    health: str
    sync: str
    reported_at: datetime


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
    runtime: Runtime
    metrics: TrackerMetrics
    evaluate_wave: Callable[[str, str], Awaitable[None]]
    _log: ChangeLog = field(default_factory=ChangeLog)

    def _repos_of(self, target: str) -> list[str]:
        config = self.runtime.config
        return sorted({config.pipelines[p].repo for p, _ in config.pipelines_of_target(target)})

    async def on_deploy(self, deploy: DeployReported) -> None:
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
            return
        known = await self._watched(repos, report.revision)
        if known is not None:
            if await self._judge(report, known[1]) == "changed":
                await self._evaluate([report.target])
            return
        await self._judge(report, None)
        # The git-events consumer may have recorded the commit between the look-up and the
        # hold, and looked for held reports before this one was: look once more (one of
        # the two always sees the other's row; applying twice is harmless).
        known = await self._watched(repos, report.revision)
        if known is not None:
            await self.apply_held(known[0], [report.revision])

    async def _watched(self, repos: list[str], sha: str) -> tuple[str, int] | None:
        """(repo, position) of ``sha`` on the watched branch of one of ``repos``."""
        row = await self.runtime.pool.fetchrow(
            "SELECT repo, position FROM watched_commits WHERE repo = ANY($1::text[])"
            " AND sha = $2 ORDER BY position DESC LIMIT 1",
            repos,
            sha,
        )
        return (row["repo"], row["position"]) if row else None

    async def _judge(self, report: Report, position: int | None) -> str:
        """Apply, hold or ignore one report: ``changed`` when the target's row changed,
        else the fate (``hold``, ``stale``, ``apply``: applied but an equal or later one
        got there first)."""
        pool = self.runtime.pool
        current = await pool.fetchrow(
            "SELECT position, reported_at FROM target_deploys WHERE target = $1", report.target
        )
        fate = report_fate(
            position,
            report.reported_at,
            current["position"] if current else None,
            current["reported_at"] if current else None,
        )
        if fate == "hold":
            await pool.execute(
                "INSERT INTO held_deploys (target, revision, phase, health, sync, reported_at)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (target, revision) DO UPDATE"
                " SET phase = EXCLUDED.phase, health = EXCLUDED.health, sync = EXCLUDED.sync,"
                " reported_at = EXCLUDED.reported_at"
                " WHERE held_deploys.reported_at <= EXCLUDED.reported_at",
                report.target,
                report.revision,
                report.phase,
                report.health,
                report.sync,
                report.reported_at,
            )
            self.metrics.deploys_held.inc()
            self._note(report, "held", "revision not known on watched yet; held")
            return fate
        if fate == "stale":
            self.metrics.deploys_ignored.labels("stale").inc()
            self._note(report, "stale", "an earlier revision than the target's last report")
            return fate
        # The guard repeats the rule in SQL: held reports are applied from the git-events
        # consumer, which may run beside this one.
        status = await pool.execute(
            "INSERT INTO target_deploys"
            " (target, revision, phase, health, sync, reported_at, position)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (target) DO UPDATE SET revision = EXCLUDED.revision,"
            " phase = EXCLUDED.phase, health = EXCLUDED.health, sync = EXCLUDED.sync,"
            " reported_at = EXCLUDED.reported_at, position = EXCLUDED.position"
            " WHERE target_deploys.position IS NULL"
            " OR target_deploys.position < EXCLUDED.position"
            " OR (target_deploys.position = EXCLUDED.position"
            "  AND target_deploys.reported_at <= EXCLUDED.reported_at)",
            report.target,
            report.revision,
            report.phase,
            report.health,
            report.sync,
            report.reported_at,
            position,
        )
        self._note(report, None, "reports count again")
        return "changed" if status.endswith(" 1") else fate

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
        """``commits``: (repo, sha) where watched pointed, oldest first (a known one keeps
        its position; ``executemany`` runs them in order, so positions follow it)."""
        if commits:
            await conn.executemany(
                "INSERT INTO watched_commits (repo, sha) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                commits,
            )

    async def apply_held(self, repo: str, shas: Sequence[str]) -> None:
        """Apply the held reports about ``shas``, now known on ``repo``'s watched branch,
        in watched order (so the last one applied is the latest)."""
        pool = self.runtime.pool
        rows = await pool.fetch(
            "SELECT h.target, h.revision, h.phase, h.health, h.sync, h.reported_at, w.position"
            " FROM held_deploys h JOIN watched_commits w ON w.repo = $1 AND w.sha = h.revision"
            " WHERE h.revision = ANY($2::text[]) ORDER BY w.position, h.reported_at",
            repo,
            list(shas),
        )
        changed: list[str] = []
        for row in rows:
            if repo not in self._repos_of(row["target"]):
                continue
            report = Report(
                row["target"],
                row["revision"],
                row["phase"],
                row["health"],
                row["sync"],
                row["reported_at"],
            )
            if await self._judge(report, row["position"]) == "changed":
                changed.append(report.target)
            await pool.execute(
                "DELETE FROM held_deploys WHERE target = $1 AND revision = $2",
                report.target,
                report.revision,
            )
            logger.info(
                "deploy report for target %s at %s: its commit is now known on watched",
                report.target,
                report.revision[:10],
            )
        await self._evaluate(changed)

    async def _evaluate(self, targets: Sequence[str]) -> None:
        config = self.runtime.config
        waves = sorted({pw for t in set(targets) for pw in config.pipelines_of_target(t)})
        for pipeline, wave in waves:
            await self.evaluate_wave(pipeline, wave)

    async def drop_expired(self, hold: timedelta) -> int:
        """Drop the held reports whose revision stayed unknown for ``hold``: ignored as not
        on watched (logged, counted). Returns how many."""
        rows = await self.runtime.pool.fetch(
            "DELETE FROM held_deploys WHERE held_at < now() - $1::interval"
            " RETURNING target, revision, phase, health, sync, reported_at",
            hold,
        )
        for row in rows:
            self.metrics.deploys_ignored.labels("not_on_watched").inc()
            self._note(
                Report(**dict(row)),
                "not_on_watched",
                f"not a commit Waveline saw on the watched branch within {hold.total_seconds():g}"
                " s; ignored",
            )
        return len(rows)

"""status-tracker's Kafka side.

- ``waveline.git.events``: remembers Waveline's commits on ``auto`` (following evictions: a
  replayed commit is a new commit, judged on its own checks) and what every wave holds at
  each commit Waveline made;
- ``waveline.checks``: the latest state per (commit, context) wins; when every required check
  of a commit on ``auto`` is green → fast-forward command, any red → evict command; a
  required check from another reporter than the one it names does not count;
- ``waveline.deploys``: the latest report per Argo CD target, if its revision is on watched
  and not earlier than the target's last (``deploys.py``); when a wave's verdict changes →
  ``waveline.waves``.
Commands carry ids derived from (repo, sha), so repeats are no-ops downstream.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from waveline.services.status_tracker.decide import (
    ChangeLog,
    trusted_reporter,
    verdict,
    watched_tips,
)
from waveline.services.status_tracker.deploys import DeployReports, TrackerMetrics
from waveline.services.status_tracker.waves import evaluate_waves
from waveline.shared.models.base import utcnow
from waveline.shared.models.checks import CheckReported
from waveline.shared.models.deploys import DeployReported
from waveline.shared.models.git import Evict, FastForward, GitEvent
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

_NS = uuid.UUID("3c8b3d1a-0f0e-4b8e-a5a7-1b9f0e2d7c64")


# Held deploy reports are looked at on this period (docs/security.md).
HOLD_TICK_S = 0.5


@dataclass
class StatusTracker:
    runtime: Runtime
    metrics: TrackerMetrics = field(init=False)
    deploys: DeployReports = field(init=False)
    _checks_log: ChangeLog = field(default_factory=ChangeLog)
    _ticker: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.metrics = TrackerMetrics(self.runtime)
        self.deploys = DeployReports(self.runtime, self.metrics, self.evaluate_waves)

    def register(self) -> None:
        rt = self.runtime
        group = "waveline-status-tracker"
        rt.consume_batch(
            rt.topics.checks,
            group,
            CheckReported.model_validate_json,
            self.on_checks,
            title="status-tracker checks",
        )
        rt.consume_batch(
            rt.topics.deploys,
            group,
            DeployReported.model_validate_json,
            self.deploys.on_deploys,
            title="status-tracker deploys",
        )
        rt.consume_batch(
            rt.topics.git_events,
            group,
            GitEvent.model_validate_json,
            self.on_git_events,
            title="status-tracker git events",
            batched=True,
        )

    async def on_started(self) -> None:
        """Start dropping expired held deploy reports once connected."""
        self._ticker = asyncio.create_task(self._tick(), name="status-tracker-held-reports")

    async def _tick(self) -> None:
        hold = timedelta(seconds=self.runtime.settings.deploy_hold_s)
        while True:
            await asyncio.sleep(min(HOLD_TICK_S, hold.total_seconds()))
            try:
                await self.deploys.drop_expired(hold)
            except Exception:
                logger.exception("status-tracker: held reports check failed; next tick")

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    # -- git events ----------------------------------------------------------------------

    async def on_git_events(self, events: list[GitEvent]) -> None:
        """A poll's git events, in order, in one transaction: each statement runs once for
        the whole poll (``executemany``), since per-event round trips were most of this
        service's CPU at 100 image sets/s (socket writes, docs/benchmarks.md)."""
        watched: list[tuple[str, str]] = []
        waves: list[tuple[str, str, str]] = []
        committed: list[tuple[str, str, str | None, str | None, str | None, int]] = []
        replayed: list[tuple[str, str, str, int]] = []
        # Where each new commit of auto comes in the poll: its created_at is the poll's
        # time plus that many microseconds, so the rows keep auto's order (rules compare
        # created_at: "made before the newest green commit" means "on watched with it").
        place = itertools.count()
        judge: list[tuple[str, str]] = []
        tips_by_repo: dict[str, list[str]] = {}
        aligned: list[tuple[str, list[str]]] = []
        for event in events:
            repo = self.runtime.config.repos.get(event.repo)
            on_auto = repo is not None and event.branch == repo.auto_branch
            tips = watched_tips(event, repo.watched_branch) if repo is not None else []
            watched.extend((event.repo, sha) for sha in tips)
            if tips:
                tips_by_repo.setdefault(event.repo, []).extend(tips)
            waves.extend((event.repo, sha, json.dumps(w)) for sha, w in event.wave_apps.items())
            # A promotion branch's commit (pull-request strategy) is judged on the forge,
            # not here: only auto's commits are fast-forwarded or evicted.
            # An event's replays come before the commit it made on top of them.
            replayed.extend(
                (event.repo, old, new, next(place)) for old, new in event.replayed.items()
            )
            if event.outcome == "committed" and event.sha and on_auto:
                committed.append(
                    (event.repo, event.sha, event.pipeline, event.wave, event.app_sha, next(place))
                )
                judge.append((event.repo, event.sha))
            if event.command_kind == "align" and event.wave_apps:
                aligned.append((event.repo, list(event.wave_apps)))
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            await self.deploys.record_watched(conn, watched)
            if waves:
                await conn.executemany(
                    "INSERT INTO commit_waves (repo, sha, waves) VALUES ($1, $2, $3::jsonb)"
                    " ON CONFLICT (repo, sha) DO UPDATE SET waves = EXCLUDED.waves",
                    waves,
                )
            # Every commit before its replays: a replay copies the row of the commit it
            # replaces, which an earlier event of the same poll may have brought.
            if committed:
                await conn.executemany(
                    "INSERT INTO auto_commits (repo, sha, pipeline, wave, app_sha, created_at)"
                    " VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6 / 1e6))"
                    " ON CONFLICT DO NOTHING",
                    committed,
                )
            if replayed:
                await conn.executemany(
                    "INSERT INTO auto_commits (repo, sha, pipeline, wave, app_sha, created_at)"
                    " SELECT repo, $3, pipeline, wave, app_sha,"
                    " now() + make_interval(secs => $4 / 1e6) FROM auto_commits"
                    " WHERE repo = $1 AND sha = $2 ON CONFLICT DO NOTHING",
                    replayed,
                )
                await conn.executemany(
                    "UPDATE auto_commits SET state = 'replaced', replaced_by = $3"
                    " WHERE repo = $1 AND sha = $2",
                    [r[:3] for r in replayed],
                )
        await self.deploys.apply_held(tips_by_repo)
        await self.evaluate_commits(judge)
        for repo_name, shas in aligned:
            await self._revisit_waves(repo_name, shas)

    async def _revisit_waves(self, repo: str, shas: list[str]) -> None:
        """Argo CD may deploy a commit Waveline did not make (a merged pull request)
        before the alignment that follows tells us what it holds: judge again the waves
        whose targets run one of ``shas``. Waveline's own commits are known before they
        can be deployed, so only alignments need this."""
        targets = await self.runtime.pool.fetch(
            "SELECT target FROM target_deploys WHERE revision = ANY($1::text[])", shas
        )
        waves = {
            (pipeline, wave)
            for r in targets
            for pipeline, wave in self.deploys.waves_of(r["target"])
            if self.runtime.config.pipelines[pipeline].repo == repo
        }
        await self.evaluate_waves(waves)

    # -- checks --------------------------------------------------------------------------

    async def on_checks(self, checks: list[CheckReported]) -> None:
        """A poll's check reports: the latest per (repo, sha, context) stored in one
        statement, then every commit a final state was reported for judged together."""
        latest: dict[tuple[str, str, str], CheckReported] = {}
        for check in checks:
            if not self._trusted(check):
                continue
            key = (check.repo, check.sha, check.context)
            before = latest.get(key)
            if before is None or before.reported_at <= check.reported_at:
                latest[key] = check
        if not latest:
            return
        rows = list(latest.values())
        await self.runtime.pool.execute(
            "INSERT INTO commit_checks (repo, sha, context, state, reported_at)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
            " $5::timestamptz[])"
            " ON CONFLICT (repo, sha, context) DO UPDATE"
            " SET state = EXCLUDED.state, reported_at = EXCLUDED.reported_at"
            " WHERE commit_checks.reported_at <= EXCLUDED.reported_at",
            [c.repo for c in rows],
            [c.sha for c in rows],
            [c.context for c in rows],
            [c.state for c in rows],
            [c.reported_at for c in rows],
        )
        await self.evaluate_commits([(c.repo, c.sha) for c in rows if c.state != "pending"])

    def _trusted(self, check: CheckReported) -> bool:
        repo = self.runtime.config.repos.get(check.repo)
        required = repo.required_checks if repo is not None else ()
        key = (check.repo, check.context, check.app, check.user)
        if trusted_reporter(required, check.context, check.app, check.user):
            self._checks_log.changed(key, None)
            return True
        # Stored, it would stand for the trusted reporter's result: dropped instead.
        self.metrics.checks_ignored.labels("untrusted_reporter").inc()
        if self._checks_log.changed(key, "untrusted"):
            logger.warning(
                "repo %s: check %r on %s reported by app %s / user %s ignored: the"
                " required check names another reporter",
                check.repo,
                check.context,
                check.sha[:10],
                check.app or "-",
                check.user or "-",
            )
        return False

    async def evaluate_commits(self, commits: list[tuple[str, str]]) -> None:
        """Judge each (repo, sha) still pending on ``auto`` by its checks, in the order
        given: green → fast-forward command, red → evict command, then mark it judged.
        Commits that are not ours, already judged or replaced are skipped."""
        wanted = list(dict.fromkeys((r, s) for r, s in commits if r in self.runtime.config.repos))
        if not wanted:
            return
        pool = self.runtime.pool
        rows = await pool.fetch(
            "SELECT a.repo, a.sha, array_remove(array_agg(c.context), NULL) AS contexts,"
            " array_remove(array_agg(c.state), NULL) AS states"
            " FROM unnest($1::text[], $2::text[]) AS p(repo, sha)"
            " JOIN auto_commits a ON a.repo = p.repo AND a.sha = p.sha AND a.state = 'pending'"
            " LEFT JOIN commit_checks c ON c.repo = a.repo AND c.sha = a.sha"
            " GROUP BY a.repo, a.sha",
            [r for r, _ in wanted],
            [s for _, s in wanted],
        )
        found = {
            (r["repo"], r["sha"]): dict(zip(r["contexts"], r["states"], strict=True)) for r in rows
        }
        judged: list[tuple[str, str, str]] = []
        for repo, sha in wanted:
            latest = found.get((repo, sha))
            if latest is None:
                continue  # not ours, already judged, or replaced by a replay
            decision = verdict(self.runtime.config.repos[repo].required_check_names(), latest)
            if decision == "pending":
                continue
            kind = "fast_forward" if decision == "green" else "evict"
            command_id = uuid.uuid5(_NS, f"{kind}/{repo}/{sha}")
            command: FastForward | Evict
            if decision == "green":
                command = FastForward(command_id=command_id, repo=repo, issued_at=utcnow(), sha=sha)
            else:
                command = Evict(command_id=command_id, repo=repo, issued_at=utcnow(), sha=sha)
            await self.runtime.publish(command, self.runtime.topics.git_commands, key=repo)
            judged.append((repo, sha, decision))
            logger.info("repo %s: %s is %s -> %s", repo, sha[:10], decision, kind)
        if judged:
            await pool.executemany(
                "UPDATE auto_commits SET state = $3 WHERE repo = $1 AND sha = $2", judged
            )

    async def evaluate_waves(self, waves: Iterable[tuple[str, str]]) -> None:
        await evaluate_waves(self.runtime, waves)

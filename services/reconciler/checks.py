"""Reconcile checks: commits of ``auto`` still pending ``reconcile_checks_after_s`` after they
were recorded are read on GitHub (statuses, check runs, and check suites when a required
check is one), and each required verdict the status-tracker does not hold yet is published
on ``waveline.checks`` exactly as ingest publishes a webhook's (same fields, same id from
the same meaning), so the trusted-reporter rule and deduplication apply unchanged.

Each commit is polled on its own backoff (``rules.after_poll``); every read is conditional
on the last ETag; calls wait for the forge's budget (``Gate``). A rate-limit refusal pauses
every call on those credentials and leaves the commit due, so no verdict is lost, only
learned later. Poll state (ETags, backoff) lives in memory: after a restart each pending
commit is read once in full again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from waveline.services.reconciler import rules, store
from waveline.services.reconciler.metrics import ReconcilerMetrics
from waveline.services.status_tracker.decide import ChangeLog
from waveline.shared.config import RepoConfig
from waveline.shared.deploy_sources import REPORT_NS
from waveline.shared.forge.base import ForgeError
from waveline.shared.forge.github_checks import (
    Answer,
    CommitCheck,
    GitHubChecks,
    RateLimit,
    RateLimited,
)
from waveline.shared.models.base import utcnow
from waveline.shared.models.checks import CheckReported
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)


def check_report(repo: str, sha: str, check: CommitCheck) -> CheckReported:
    """The message ingest publishes for the webhook reporting ``check`` on ``sha``."""
    meaning = f"check/{repo}/{sha}/{check.context}/{check.state}"
    if check.app is not None or check.user is not None:
        meaning += f"/{check.app or ''}/{check.user or ''}"
    return CheckReported(
        event_id=uuid.uuid5(REPORT_NS, meaning),
        repo=repo,
        sha=sha,
        context=check.context,
        state=check.state,
        kind=check.kind,
        branches=(check.branch,) if check.branch else (),
        reported_at=utcnow(),
        app=check.app,
        user=check.user,
    )


@dataclass
class Gate:
    """The pace of calls on one set of credentials: no call before ``not_before`` (Unix
    time), set from each answer's rate-limit headers and from refusals."""

    share: float
    not_before: float = 0.0
    rate: RateLimit = field(default_factory=RateLimit)

    def delay(self, now: float) -> float:
        return max(0.0, self.not_before - now)

    def answered(self, rate: RateLimit, now: float) -> None:
        self.rate = rate
        self.not_before = now + rules.budget_wait(rate, self.share, now)

    def refused(self, refusal: RateLimited, now: float) -> None:
        self.rate = refusal.rate
        wait = rules.refusal_wait(refusal.wait_s, refusal.rate, self.share, now)
        self.not_before = now + wait


@dataclass
class _Cached:
    etag: str | None
    checks: tuple[CommitCheck, ...]


@dataclass
class ChecksPoller:
    runtime: Runtime
    metrics: ReconcilerMetrics
    # repo name -> (client, gate); repos sharing credentials share a gate.
    clients: dict[str, tuple[GitHubChecks, Gate]]
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _polls: dict[tuple[str, str], rules.PollState] = field(default_factory=dict)
    _cache: dict[tuple[str, str, str], _Cached] = field(default_factory=dict)
    _log: ChangeLog = field(default_factory=ChangeLog)

    async def round(self) -> int:
        """Poll every commit due now; return how many verdicts were published."""
        settings = self.runtime.settings.reconcile
        after_s = settings.reconcile_checks_after_s
        pending = await store.pending_commits(self.runtime.pool, list(self.clients), after_s)
        self._forget({(c.repo, c.sha) for c in pending})
        published = 0
        for commit in rules.commits_due(pending, self._polls, self.clock(), after_s):
            client, gate = self.clients[commit.repo]
            wait = gate.delay(self.clock())
            if wait > settings.reconcile_interval_s:
                continue  # this forge's budget says later; the commit stays due
            await self.sleep(wait)
            try:
                checks = await self._read(client, gate, commit.repo, commit.sha)
            except RateLimited as exc:
                gate.refused(exc, self.clock())
                self.metrics.calls.labels("github", "rate_limited").inc()
                if self._log.changed(commit.repo, "rate limited"):
                    logger.warning(
                        "reconciler: GitHub rate-limits repo %s's credentials; pausing %.0f s",
                        commit.repo,
                        gate.delay(self.clock()),
                    )
                continue
            except ForgeError as exc:
                self.metrics.calls.labels("github", "error").inc()
                self._polled(commit)
                if self._log.changed(commit.repo, type(exc).__name__):
                    logger.warning("reconciler: checks of repo %s not read: %s", commit.repo, exc)
                continue
            self._log.changed(commit.repo, None)
            published += await self._publish(commit, checks)
            self._polled(commit)
        return published

    async def _read(
        self, client: GitHubChecks, gate: Gate, repo: str, sha: str
    ) -> list[CommitCheck]:
        config = self.runtime.config.repos[repo]
        reads: list[tuple[str, Callable[[str, str, str | None], Awaitable[Answer]]]] = [
            ("statuses", client.statuses),
            ("check-runs", client.check_runs),
        ]
        if rules.needs_suites(config.required_checks):
            reads.append(("check-suites", client.check_suites))
        found: list[CommitCheck] = []
        for what, read in reads:
            key = (repo, sha, what)
            cached = self._cache.get(key)
            answer = await read(config.full_name(), sha, cached.etag if cached else None)
            gate.answered(answer.rate, self.clock())
            if answer.rate.remaining is not None:
                self.metrics.budget_remaining.labels(repo).set(answer.rate.remaining)
            self.metrics.calls.labels(
                "github", "changed" if answer.changed else "not_modified"
            ).inc()
            if answer.changed:
                cached = self._cache[key] = _Cached(answer.etag, answer.checks)
            found.extend(cached.checks if cached else ())
        return found

    async def _publish(self, commit: rules.PendingCommit, checks: list[CommitCheck]) -> int:
        config: RepoConfig = self.runtime.config.repos[commit.repo]
        found = rules.verdicts(config.required_checks, checks)
        if not found:
            return 0
        known = await store.known_checks(self.runtime.pool, commit.repo, commit.sha)
        new = rules.learned(found, known)
        for check in new:
            report = check_report(commit.repo, commit.sha, check)
            await self.runtime.publish(report, self.runtime.topics.checks, key=commit.repo)
            self.metrics.learned.labels("check").inc()
            logger.info(
                "reconciler: repo %s: %s on %s is %s (learned by polling GitHub)",
                commit.repo,
                check.context,
                commit.sha[:10],
                check.state,
            )
        return len(new)

    def _polled(self, commit: rules.PendingCommit) -> None:
        key = (commit.repo, commit.sha)
        settings = self.runtime.settings.reconcile
        self._polls[key] = rules.after_poll(
            self._polls.get(key),
            self.clock(),
            settings.reconcile_checks_after_s,
            settings.reconcile_backoff_cap_s,
        )

    def _forget(self, pending: set[tuple[str, str]]) -> None:
        """Drop the state of commits judged (or replaced) meanwhile: memory stays bounded
        by what is pending."""
        for commit in [k for k in self._polls if k not in pending]:
            del self._polls[commit]
        for read in [k for k in self._cache if (k[0], k[1]) not in pending]:
            del self._cache[read]

    async def close(self) -> None:
        for client, _ in self.clients.values():
            await client.close()

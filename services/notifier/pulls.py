"""The pull-request strategy's forge side: open or update the promotion pull request when
git-writer pushed a promotion branch, follow it through ``pull_request`` webhooks (merged →
done, closed unmerged → cancelled), and merge it once its required checks pass when the
strategy asks for auto-merge.

One open pull request per promotion branch (a unique index): a newer promotion pushes the
same branch, so its pull request is the old one updated, and the older promotion is
``superseded``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from waveline.services.promoter.rules import pull_request_end
from waveline.shared.config import PipelineConfig, Secrets, WavelineConfig
from waveline.shared.errors import ConfigError
from waveline.shared.forge import Forge, GitHubForge, HeadChanged, PullRequestNotMergeable
from waveline.shared.forge.github_app import token_source
from waveline.shared.forge.select import make_forge
from waveline.shared.models.base import utcnow
from waveline.shared.models.checks import CheckReported
from waveline.shared.models.git import GitEvent
from waveline.shared.models.promotions import PromotionEvent, PromotionStatus
from waveline.shared.models.pulls import PullRequestReported
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)


def forges_from_config(config: WavelineConfig, secrets: Secrets) -> dict[str, Forge]:
    """One client per repo that names a forge; its token (or its GitHub App's key) must be
    set (checked at start)."""
    forges: dict[str, Forge] = {}
    for name, repo in config.repos.items():
        if repo.forge is None:
            continue
        if repo.forge.app is not None:
            forges[name] = GitHubForge(repo.forge.api_url, token=token_source(name, repo, secrets))
            continue
        token = secrets.get(repo.forge.token_env)
        if token is None:
            raise ConfigError(f"repos.{name}.forge: {repo.forge.token_env} is not set")
        forges[name] = make_forge(repo.forge, token)
    return forges


def _render(values: Mapping[str, str]) -> str:
    return ", ".join(f"{k} `{v}`" for k, v in sorted(values.items())) or "—"


def pull_request_body(event: GitEvent) -> str:
    """Each service's old → new values, and the commit's trailers."""
    lines = [
        f"Waveline promotes `{event.app_sha}` to **{event.wave}** of pipeline `{event.pipeline}`.",
        "",
        "| service | before | after |",
        "|---|---|---|",
    ]
    for key in sorted(set(event.values_before) | set(event.values_after)):
        before = _render(event.values_before.get(key, {}))
        after = _render(event.values_after.get(key, {}))
        lines.append(f"| {key} | {before} | {after} |")
    lines += ["", "```", *(f"{k}: {v}" for k, v in event.trailers.items()), "```"]
    return "\n".join(lines)


@dataclass
class PullRequests:
    runtime: Runtime
    forges: Mapping[str, Forge]

    def __post_init__(self) -> None:
        # Repos with a forge where some wave auto-merges: only their checks are kept.
        self._auto_merging = {
            p.repo
            for p in self.runtime.config.pipelines.values()
            for w in p.waves
            if p.repo in self.forges and p.strategy_of(w.name).auto_merge
        }
        # Repos where some wave leaves the merge to the forge once its pipeline succeeds.
        self._forge_merging = {
            p.repo
            for p in self.runtime.config.pipelines.values()
            for w in p.waves
            if p.repo in self.forges and p.strategy_of(w.name).merge_when_pipeline_succeeds
        }

    @property
    def pool(self) -> asyncpg.Pool:
        return self.runtime.pool

    def _promotion_branch(self, event: GitEvent) -> PipelineConfig | None:
        """The pipeline when ``event`` pushed the promotion branch of a pull-request wave."""
        if event.outcome != "committed" or not (event.pipeline and event.wave and event.sha):
            return None
        pipeline = self.runtime.config.pipelines.get(event.pipeline)
        if pipeline is None:
            return None
        strategy = pipeline.strategy_of(event.wave)
        if strategy.kind != "pull-request":
            return None
        return pipeline if event.branch == strategy.branch_for(event.pipeline, event.wave) else None

    async def on_git_event(self, event: GitEvent) -> None:
        pipeline = self._promotion_branch(event)
        if pipeline is None:
            return
        assert event.pipeline and event.wave and event.sha and event.branch and event.app_sha
        if await self._stale(pipeline.repo, event):
            logger.info(
                "pipeline %s: promotion %s to %s is settled or superseded; pull request left",
                event.pipeline,
                event.command_id,
                event.wave,
            )
            return
        repo = self.runtime.config.repos[pipeline.repo]
        strategy = pipeline.strategy_of(event.wave)
        base = strategy.base or repo.watched_branch
        pr = await self.forges[pipeline.repo].open_or_update_pull_request(
            repo.full_name(),
            head=event.branch,
            base=base,
            title=f"Promote {event.app_sha[:10]} to {event.wave} ({event.pipeline})",
            body=pull_request_body(event),
        )
        await self._settle_others(pipeline.repo, event.branch, pr.number)
        async with self.pool.acquire() as conn, conn.transaction():
            older = await conn.fetch(
                "SELECT promotion_id, app_sha FROM pull_requests WHERE repo = $1 AND"
                " number = $2 AND promotion_id <> $3",
                pipeline.repo,
                pr.number,
                event.command_id,
            )
            await conn.execute(
                "INSERT INTO pull_requests (repo, number, branch, base, pipeline, wave,"
                " promotion_id, app_sha, head_sha, url, state, event_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'open', $11)"
                " ON CONFLICT (repo, number) DO UPDATE SET promotion_id = EXCLUDED.promotion_id,"
                " app_sha = EXCLUDED.app_sha, head_sha = EXCLUDED.head_sha,"
                " event_at = EXCLUDED.event_at, updated_at = now()",
                pipeline.repo,
                pr.number,
                event.branch,
                base,
                event.pipeline,
                event.wave,
                event.command_id,
                event.app_sha,
                event.sha,
                pr.url,
                event.at,
            )
        for row in older:
            await self._status(
                event.pipeline,
                event.wave,
                row["promotion_id"],
                row["app_sha"],
                "superseded",
                url=pr.url,
                detail=f"pull request #{pr.number} now promotes {event.app_sha}",
            )
        await self._status(
            event.pipeline, event.wave, event.command_id, event.app_sha, "opened", url=pr.url
        )
        logger.info(
            "pipeline %s: pull request #%d %s for %s -> %s",
            event.pipeline,
            pr.number,
            "opened" if pr.created else "updated",
            event.app_sha[:10],
            event.wave,
        )
        if strategy.auto_merge:
            await self.try_merge(pipeline.repo, event.sha)
        elif strategy.merge_when_pipeline_succeeds and pr.state == "open":
            await self._schedule_merge(pipeline.repo, event.sha)

    async def _stale(self, repo: str, event: GitEvent) -> bool:
        """True for a redelivered promotion whose pull request already ended, or that a
        newer promotion on the same branch replaced."""
        return bool(
            await self.pool.fetchval(
                "SELECT true FROM pull_requests WHERE repo = $1 AND branch = $2 AND"
                " ((promotion_id = $3 AND state <> 'open')"
                "  OR (promotion_id <> $3 AND event_at > $4)) LIMIT 1",
                repo,
                event.branch,
                event.command_id,
                event.at,
            )
        )

    async def _settle_others(self, repo_name: str, branch: str, number: int) -> None:
        """Pull requests we still think open on ``branch`` besides ``number`` (their close
        webhook never came): ask the forge how they ended, so their promotions end too and
        the branch holds one open pull request."""
        rows = await self.pool.fetch(
            "SELECT * FROM pull_requests WHERE repo = $1 AND branch = $2 AND state = 'open'"
            " AND number <> $3",
            repo_name,
            branch,
            number,
        )
        full_name = self.runtime.config.repos[repo_name].full_name()
        for row in rows:
            pr = await self.forges[repo_name].get_pull_request(full_name, row["number"])
            await self._closed(row, merged=pr.merged, merge_sha=pr.merge_commit_sha)

    async def on_pull_request(self, report: PullRequestReported) -> None:
        """Closed → the promotion ends (merged: done, else cancelled). Heads come from our
        own git events, not from here: webhooks and git events are not ordered."""
        if report.state != "closed":
            return
        row = await self.pool.fetchrow(
            "SELECT * FROM pull_requests WHERE repo = $1 AND number = $2",
            report.repo,
            report.number,
        )
        if row is None:
            return  # not one of ours
        await self._closed(row, merged=report.merged, merge_sha=report.merge_sha)

    async def _closed(self, row: asyncpg.Record, *, merged: bool, merge_sha: str | None) -> None:
        state = "merged" if merged else "closed"
        # A row already in that state answers too: the redelivery after a failed publish.
        updated = await self.pool.fetchval(
            "WITH moved AS (UPDATE pull_requests SET state = $3, merge_sha = $4,"
            " updated_at = now() WHERE repo = $1 AND number = $2 AND state = 'open'"
            " RETURNING true)"
            " SELECT true FROM moved UNION ALL"
            " SELECT true FROM pull_requests WHERE repo = $1 AND number = $2 AND state = $3",
            row["repo"],
            row["number"],
            state,
            merge_sha,
        )
        if not updated:
            return
        status = pull_request_end(merged)
        await self._status(
            row["pipeline"],
            row["wave"],
            row["promotion_id"],
            row["app_sha"],
            status,
            url=row["url"],
            detail=f"merged as {merge_sha}" if merged else "pull request closed unmerged",
        )
        logger.info("pull request #%d of %s %s", row["number"], row["repo"], state)

    async def on_check(self, check: CheckReported) -> None:
        """Auto-merge: remember checks of every commit of a repo that auto-merges (a check
        may come before the pull request is recorded), then merge if they make a promotion
        pull request's head green."""
        if check.repo in self._forge_merging and check.kind == "check_suite":
            # A pipeline of a head reported: GitLab refuses to schedule a merge before one
            # exists, so a scheduling refused at opening is asked again now.
            await self._schedule_merge(check.repo, check.sha)
        if check.repo not in self._auto_merging:
            return
        await self.pool.execute(
            "INSERT INTO pull_request_checks (repo, sha, context, state, reported_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (repo, sha, context) DO UPDATE"
            " SET state = EXCLUDED.state, reported_at = EXCLUDED.reported_at"
            " WHERE pull_request_checks.reported_at <= EXCLUDED.reported_at",
            check.repo,
            check.sha,
            check.context,
            check.state,
            check.reported_at,
        )
        await self.try_merge(check.repo, check.sha)

    async def try_merge(self, repo_name: str, head_sha: str) -> None:
        """Merge the open pull request at ``head_sha`` if its strategy auto-merges and every
        required check of the repo is green on that head."""
        row = await self.pool.fetchrow(
            "SELECT * FROM pull_requests WHERE repo = $1 AND head_sha = $2 AND state = 'open'",
            repo_name,
            head_sha,
        )
        if row is None:
            return
        pipeline = self.runtime.config.pipelines[row["pipeline"]]
        strategy = pipeline.strategy_of(row["wave"])
        if not strategy.auto_merge:
            return
        repo = self.runtime.config.repos[repo_name]
        checks = {
            r["context"]: r["state"]
            for r in await self.pool.fetch(
                "SELECT context, state FROM pull_request_checks WHERE repo = $1 AND sha = $2",
                repo_name,
                head_sha,
            )
        }
        if any(checks.get(c) != "success" for c in repo.required_check_names()):
            return
        await self._merge(repo_name, head_sha, row=row)

    async def _schedule_merge(self, repo_name: str, head_sha: str) -> None:
        """Ask the forge to merge the open pull request at ``head_sha`` once its pipeline
        succeeds (idempotent). Refused while the head has no pipeline yet: not an error,
        the pipeline's first report (``on_check``) asks again."""
        try:
            await self._merge(repo_name, head_sha, when_checks_pass=True)
        except PullRequestNotMergeable:
            logger.info(
                "%s: merge of %s not scheduled yet (no pipeline); asked again when one reports",
                repo_name,
                head_sha[:10],
            )

    async def _merge(
        self,
        repo_name: str,
        head_sha: str,
        *,
        row: asyncpg.Record | None = None,
        when_checks_pass: bool = False,
    ) -> None:
        """Merge the open pull request recorded at ``head_sha`` now, or (``when_checks_pass``)
        ask the forge to merge it once its pipeline succeeds; its webhook ends it then."""
        if row is None:
            row = await self.pool.fetchrow(
                "SELECT * FROM pull_requests WHERE repo = $1 AND head_sha = $2 AND state = 'open'",
                repo_name,
                head_sha,
            )
            if row is None:
                return
        strategy = self.runtime.config.pipelines[row["pipeline"]].strategy_of(row["wave"])
        full_name = self.runtime.config.repos[repo_name].full_name()
        forge = self.forges[repo_name]
        try:
            merge_sha = await forge.merge_pull_request(
                full_name,
                row["number"],
                sha=head_sha,
                method=strategy.merge_method,
                when_checks_pass=when_checks_pass,
            )
        except (PullRequestNotMergeable, HeadChanged):
            # Maybe merged meanwhile (another check's handler, a human): that is success.
            pr = await forge.get_pull_request(full_name, row["number"])
            if pr.state != "closed":
                raise
            await self._closed(row, merged=pr.merged, merge_sha=pr.merge_commit_sha)
            return
        if merge_sha is None:
            logger.info(
                "pull request #%d of %s merges when its pipeline succeeds", row["number"], repo_name
            )
            return
        await self._closed(row, merged=True, merge_sha=merge_sha)

    async def _status(
        self,
        pipeline: str,
        wave: str,
        promotion_id: uuid.UUID,
        app_sha: str,
        status: PromotionStatus,
        *,
        url: str | None = None,
        detail: str | None = None,
    ) -> None:
        await self.runtime.publish(
            PromotionEvent(
                event_id=uuid.uuid5(promotion_id, status),
                promotion_id=promotion_id,
                pipeline=pipeline,
                to_wave=wave,
                app_sha=app_sha,
                strategy="pull-request",
                status=status,
                url=url,
                detail=detail,
                at=utcnow(),
            ),
            self.runtime.topics.promotions,
            key=pipeline,
        )

    async def close(self) -> None:
        for forge in self.forges.values():
            await forge.close()

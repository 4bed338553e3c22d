"""git-writer's Kafka side: one consumer of ``waveline.git.commands``, events out.

Offsets are committed only after the push succeeded and the result was recorded in
Postgres, so a crash at any point replays the command; the Event-Id trailer and the result
table make the replay a no-op.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from faststream.kafka import KafkaMessage
from faststream.middlewares import AckPolicy

from waveline.services.git_writer.apply import Applier, Result
from waveline.shared.errors import GitFailure, PreconditionFailed
from waveline.shared.gitengine.repo import ConfigRepo, credentials_from_env
from waveline.shared.gitengine.worker import RepoWorker
from waveline.shared.kafka import publish
from waveline.shared.models.base import utcnow
from waveline.shared.models.git import GIT_COMMAND, AlignAuto, GitEvent, IntroduceImages
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

_EVENT_NS = uuid.UUID("5b0e6f1c-8a4e-4c39-9d0c-2f1f3c7d9a11")


@dataclass
class GitWriter:
    runtime: Runtime
    _repos: dict[str, tuple[RepoWorker, Applier]] = field(default_factory=dict)

    def register(self) -> None:
        rt = self.runtime
        boundary = rt.boundary()

        @rt.broker.subscriber(
            rt.topics.git_commands,
            group_id=rt.group("waveline-git-writer"),
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title="git-writer commands",
            description="Serialized git commands, keyed by config repo.",
        )
        async def on_command(msg: KafkaMessage) -> None:
            await boundary.run(msg, GIT_COMMAND.validate_json, self.handle)

    async def _applier(self, repo_name: str) -> tuple[RepoWorker, Applier]:
        if repo_name not in self._repos:
            config = self.runtime.config.repos[repo_name]
            repo = ConfigRepo(
                name=repo_name,
                config=config,
                path=self.runtime.settings.data_dir / "repos" / f"{repo_name}.git",
                creds=credentials_from_env(config),
            )
            worker = RepoWorker(repo_name)
            applier = Applier(repo, self.runtime.config)
            await worker.run(applier.refresh)
            self._repos[repo_name] = (worker, applier)
        return self._repos[repo_name]

    async def handle(self, cmd: object) -> None:
        if not isinstance(cmd, IntroduceImages | AlignAuto):
            kind = getattr(cmd, "kind", "?")
            raise PreconditionFailed(f"git-writer does not handle {kind!r} commands yet")
        if cmd.repo not in self.runtime.config.repos:
            raise PreconditionFailed(f"unknown repo {cmd.repo!r}")
        pool = self.runtime.pool
        stored = await pool.fetchval(
            "SELECT event::text FROM git_command_results WHERE command_id = $1", cmd.command_id
        )
        if stored is not None:
            # Finished before a crash cut the offset commit: say it again, change nothing.
            event = GitEvent.model_validate_json(stored)
        else:
            started = time.perf_counter()
            result = await self._apply(cmd)
            event = self._event(cmd, result, (time.perf_counter() - started) * 1000)
            await pool.execute(
                "INSERT INTO git_command_results (command_id, repo, kind, outcome, sha, event)"
                " VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (command_id) DO NOTHING",
                cmd.command_id,
                cmd.repo,
                cmd.kind,
                event.outcome,
                event.sha,
                event.model_dump_json(),
            )
        await publish(
            self.runtime.broker,
            event,
            self.runtime.topics.git_events,
            key=cmd.repo,
            timeout_s=self.runtime.settings.publish_timeout_s,
        )
        logger.info(
            "repo %s: %s %s -> %s %s", cmd.repo, cmd.kind, cmd.command_id, event.outcome, event.sha
        )

    async def _apply(self, cmd: IntroduceImages | AlignAuto) -> Result:
        worker, applier = await self._applier(cmd.repo)
        try:
            await worker.run(applier.refresh)
            return await worker.run(applier.apply, cmd)
        except PreconditionFailed as exc:
            return Result("rejected", reason=str(exc))
        except GitFailure as first:
            if not first.retriable:
                raise
            logger.warning("repo %s: %s; fetching and retrying once", cmd.repo, first)
        try:
            await worker.run(applier.refresh)
            return await worker.run(applier.apply, cmd)
        except PreconditionFailed as exc:
            return Result("rejected", reason=str(exc))
        except GitFailure as second:
            raise GitFailure(f"failed twice: {second}", retriable=False) from second

    def _event(
        self, cmd: IntroduceImages | AlignAuto, result: Result, elapsed_ms: float
    ) -> GitEvent:
        return GitEvent(
            event_id=uuid.uuid5(_EVENT_NS, str(cmd.command_id)),
            command_id=cmd.command_id,
            command_kind=cmd.kind,
            repo=cmd.repo,
            outcome=result.outcome,
            branch=result.branch,
            sha=result.sha,
            old_sha=result.old_sha,
            replayed=result.replayed,
            trailers=result.trailers,
            pipeline=getattr(cmd, "pipeline", None),
            wave=getattr(cmd, "wave", None),
            app_sha=getattr(cmd, "app_sha", None),
            reason=result.reason,
            timings_ms={"apply": round(elapsed_ms, 3)},
            at=utcnow(),
        )

    def close(self) -> None:
        for worker, _ in self._repos.values():
            worker.close()

"""Advancing image sets through waves: gates (bake, approval, hold), supersession, rollback.

State lives in Postgres (promotions, wave_runs, wave_gates, approvals). A promotion W→W+1 is
created ``waiting`` when W runs an image set; ``open_gates`` turns it ``requested`` (and sends
the git command) once W+1's gate opens. The unique index on (pipeline, wave, app_sha) makes a
redelivered wave report unable to create a second promotion; a wave status about an earlier
watched position than one applied is ignored, and approvals, holds and releases apply only to
what they name (``gates.py``, rules in ``trust.py``).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from waveline.services.promoter import gates
from waveline.services.promoter.dispatch import Promotion, dispatch, publish_status
from waveline.services.promoter.ids import promotion_id
from waveline.shared.config import PipelineConfig
from waveline.shared.errors import PreconditionFailed
from waveline.shared.models.base import utcnow
from waveline.shared.models.git import AlignAuto, RollbackWave
from waveline.shared.models.images import ImageRef
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.models.promotions import PromotionEvent, PromotionStatus
from waveline.shared.models.waves import WaveStatus
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)


def _images(raw: str | None) -> dict[str, ImageRef]:
    if not raw:
        return {}
    return {svc: ImageRef.model_validate(ref) for svc, ref in json.loads(raw).items()}


@dataclass
class Waves:
    runtime: Runtime

    def _pipeline(self, name: str) -> PipelineConfig:
        pipeline = self.runtime.config.pipelines.get(name)
        if pipeline is None:
            raise PreconditionFailed(f"unknown pipeline {name!r}")
        return pipeline

    async def on_wave_status(self, status: WaveStatus) -> None:
        pipeline = self._pipeline(status.pipeline)
        names = [w.name for w in pipeline.waves]
        if status.wave not in names:
            raise PreconditionFailed(f"pipeline {status.pipeline!r} has no wave {status.wave!r}")
        pool = self.runtime.pool
        if await gates.stale(pool, status):
            return  # an old status: it neither supersedes nor blocks a newer set
        if status.state == "failing":
            # A failing wave stops promotion from it until it runs a set again.
            await pool.execute(
                "UPDATE promotions SET status = 'blocked', updated_at = now()"
                " WHERE pipeline = $1 AND from_wave = $2 AND status = 'waiting'",
                status.pipeline,
                status.wave,
            )
            logger.warning(
                "pipeline %s: wave %s failing: %s", status.pipeline, status.wave, status.reason
            )
            return
        if status.app_sha is None or status.cfg_sha is None:
            return
        await self._arrived(status)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO wave_runs (pipeline, wave, app_sha, cfg_sha, since)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (pipeline, wave, app_sha) DO UPDATE"
                " SET cfg_sha = EXCLUDED.cfg_sha",
                status.pipeline,
                status.wave,
                status.app_sha,
                status.cfg_sha,
                status.at,
            )
            index = names.index(status.wave)
            if index + 1 < len(names):
                await self._queue(conn, status, names[index + 1])
        await self.open_gates(status.pipeline)

    async def _arrived(self, status: WaveStatus) -> None:
        """The wave runs the set: every promotion that brought it there is done."""
        assert status.app_sha is not None
        # Those already done are announced again too: if a publish failed after the update
        # (or the process died), this redelivery is what sends it (same event id).
        rows = await self.runtime.pool.fetch(
            "WITH moved AS (UPDATE promotions SET status = 'done', updated_at = now()"
            " WHERE pipeline = $1 AND wave = $2 AND app_sha = $3"
            " AND status NOT IN ('done', 'failed', 'cancelled', 'superseded', 'waiting',"
            " 'blocked') RETURNING promotion_id, strategy)"
            " SELECT promotion_id, strategy FROM moved UNION ALL"
            " SELECT promotion_id, strategy FROM promotions"
            " WHERE pipeline = $1 AND wave = $2 AND app_sha = $3 AND status = 'done'",
            status.pipeline,
            status.wave,
            status.app_sha,
        )
        # Older sets sent into this wave that it never ran (a newer one landed on top before
        # its targets reported) will never arrive: the wave moved past them. Left unfinished
        # they would be kept for ever (and their image sets with them) and listed as in
        # flight. An open pull request is the notifier's to close or update.
        await self.runtime.pool.execute(
            "UPDATE promotions SET status = 'superseded', updated_at = now()"
            " WHERE pipeline = $1 AND wave = $2 AND app_sha <> $3"
            " AND status IN ('requested', 'committed', 'delivered')"
            " AND created_at < (SELECT min(created_at) FROM promotions"
            " WHERE pipeline = $1 AND wave = $2 AND app_sha = $3)",
            status.pipeline,
            status.wave,
            status.app_sha,
        )
        for row in rows:
            await publish_status(
                self.runtime,
                await self._promotion(row["promotion_id"]),
                "done",
                strategy=row["strategy"],
                cfg_sha=status.cfg_sha,
                detail=f"{status.wave} runs it",
            )

    async def _promotion(self, pid: uuid.UUID) -> Promotion:
        row = await self.runtime.pool.fetchrow(
            "SELECT p.pipeline, p.wave, p.from_wave, p.app_sha, p.cfg_sha, i.images"
            " FROM promotions p LEFT JOIN image_sets i"
            " ON i.pipeline = p.pipeline AND i.app_sha = p.app_sha WHERE p.promotion_id = $1",
            pid,
        )
        if row is None:
            raise PreconditionFailed(f"no promotion {pid}")
        return Promotion(
            promotion_id=pid,
            pipeline=row["pipeline"],
            from_wave=row["from_wave"],
            to_wave=row["wave"],
            app_sha=row["app_sha"],
            images=_images(row["images"]),
            deployed_sha=row["cfg_sha"],
        )

    async def _queue(
        self,
        conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
        status: WaveStatus,
        target: str,
    ) -> None:
        assert status.app_sha is not None
        pid = promotion_id(status.pipeline, target, status.app_sha, "promote")
        # A newer set supersedes one still waiting at the same gate.
        await conn.execute(
            "UPDATE promotions SET status = 'superseded', updated_at = now()"
            " WHERE pipeline = $1 AND wave = $2 AND kind = 'promote' AND status = 'waiting'"
            " AND app_sha <> $3",
            status.pipeline,
            target,
            status.app_sha,
        )
        await conn.execute(
            "INSERT INTO promotions"
            " (promotion_id, pipeline, wave, from_wave, app_sha, kind, status, cfg_sha, strategy)"
            " VALUES ($1, $2, $3, $4, $5, 'promote', 'waiting', $6, $7)"
            " ON CONFLICT DO NOTHING",
            pid,
            status.pipeline,
            target,
            status.wave,
            status.app_sha,
            status.cfg_sha,
            self._pipeline(status.pipeline).strategy_of(target).kind,
        )
        # Recovered from failing with the same set: promotion may continue.
        await conn.execute(
            "UPDATE promotions SET status = 'waiting', updated_at = now()"
            " WHERE promotion_id = $1 AND status = 'blocked'",
            pid,
        )

    async def open_gates(self, pipeline_name: str | None = None) -> int:
        """Send every waiting promotion whose gate is open; returns how many were sent."""
        rows = await self.runtime.pool.fetch(
            "SELECT p.promotion_id, p.pipeline, p.wave, p.from_wave, p.app_sha, p.cfg_sha,"
            " r.since, coalesce(g.held, false) AS held, a.promotion_id IS NOT NULL AS approved,"
            " i.images"
            " FROM promotions p"
            " LEFT JOIN image_sets i ON i.pipeline = p.pipeline AND i.app_sha = p.app_sha"
            " JOIN wave_runs r ON r.pipeline = p.pipeline AND r.wave = p.from_wave"
            "  AND r.app_sha = p.app_sha"
            " LEFT JOIN wave_gates g ON g.pipeline = p.pipeline AND g.wave = p.wave"
            " LEFT JOIN approvals a ON a.promotion_id = p.promotion_id"
            " WHERE p.status = 'waiting' AND p.kind = 'promote'"
            " AND ($1::text IS NULL OR p.pipeline = $1)"
            " ORDER BY p.created_at",
            pipeline_name,
        )
        sent = 0
        now = utcnow()
        for row in rows:
            pipeline = self.runtime.config.pipelines.get(row["pipeline"])
            wave = pipeline.wave(row["wave"]) if pipeline else None
            if pipeline is None or wave is None or row["held"]:
                continue
            since: datetime = row["since"]
            if now < since + wave.gate.bake:
                continue
            if wave.gate.approval and not row["approved"]:
                continue
            await self._send(pipeline, row)
            sent += 1
        return sent

    async def _send(self, pipeline: PipelineConfig, row: asyncpg.Record) -> None:
        promotion = Promotion(
            promotion_id=row["promotion_id"],
            pipeline=row["pipeline"],
            from_wave=row["from_wave"],
            to_wave=row["wave"],
            app_sha=row["app_sha"],
            images=_images(row["images"]),
            deployed_sha=row["cfg_sha"],
        )
        await dispatch(self.runtime, pipeline, promotion)
        await self.runtime.pool.execute(
            "UPDATE promotions SET status = 'requested', strategy = $2, updated_at = now()"
            " WHERE promotion_id = $1 AND status = 'waiting'",
            row["promotion_id"],
            pipeline.strategy_of(row["wave"]).kind,
        )
        logger.info(
            "pipeline %s: promote %s %s -> %s",
            row["pipeline"],
            row["app_sha"][:10],
            row["from_wave"],
            row["wave"],
        )

    async def on_promotion_event(self, event: PromotionEvent) -> None:
        """Mirror what the notifier (pull requests, webhooks) learnt about a promotion."""
        if event.status in {"requested", "committed"}:
            return  # ours, or nothing new for the table
        # Also when the row already has that status: a redelivery after a failed publish of
        # the align must send it.
        updated = await self.runtime.pool.fetchval(
            "WITH moved AS (UPDATE promotions SET status = $2, url = coalesce($3, url),"
            " detail = coalesce($4, detail), updated_at = now()"
            " WHERE promotion_id = $1"
            " AND status NOT IN ('done', 'failed', 'cancelled', 'superseded')"
            " RETURNING strategy)"
            " SELECT strategy FROM moved UNION ALL"
            " SELECT strategy FROM promotions WHERE promotion_id = $1 AND status = $2",
            event.promotion_id,
            event.status,
            event.url,
            event.detail,
        )
        if updated == "pull-request" and event.status == "done":
            await self._align(self._pipeline(event.pipeline), event.promotion_id)

    async def _result(self, pipeline: PipelineConfig, cmd: OperatorCommand) -> None:
        """An external system's report on a webhook promotion: done or failed."""
        assert cmd.promotion_id is not None
        status: PromotionStatus = "done" if cmd.result == "succeeded" else "failed"
        # A row already in that status answers too: the redelivery after a failed publish.
        row = await self.runtime.pool.fetchrow(
            "WITH moved AS (UPDATE promotions SET status = $4, detail = $5, updated_at = now()"
            " WHERE promotion_id = $1 AND pipeline = $2 AND wave = $3"
            " AND status NOT IN ('done', 'failed', 'cancelled', 'superseded')"
            " RETURNING strategy)"
            " SELECT strategy FROM moved UNION ALL"
            " SELECT strategy FROM promotions WHERE promotion_id = $1 AND pipeline = $2"
            " AND wave = $3 AND status = $4",
            cmd.promotion_id,
            cmd.pipeline,
            cmd.wave,
            status,
            cmd.detail,
        )
        if row is None:
            # Unknown, or ended otherwise: the report changes nothing.
            logger.warning(
                "pipeline %s: result for promotion %s ignored (unknown or already final)",
                cmd.pipeline,
                cmd.promotion_id,
            )
            return
        await publish_status(
            self.runtime,
            await self._promotion(cmd.promotion_id),
            status,
            strategy=row["strategy"],
            detail=cmd.detail,
        )
        if status == "done":
            await self._align(pipeline, cmd.promotion_id)

    async def _align(self, pipeline: PipelineConfig, promotion_id: uuid.UUID) -> None:
        """A promotion finished outside Waveline (merged pull request, webhook receiver):
        watched may have moved, so have git-writer look now, re-align auto on it and report
        what the new commit holds."""
        await self.runtime.publish(
            AlignAuto(
                command_id=uuid.uuid5(promotion_id, "align-after-promotion"),
                repo=pipeline.repo,
                issued_at=utcnow(),
            ),
            self.runtime.topics.git_commands,
            key=pipeline.repo,
        )

    async def on_operator(self, cmd: OperatorCommand) -> None:
        pipeline = self._pipeline(cmd.pipeline)
        if pipeline.wave(cmd.wave) is None:
            raise PreconditionFailed(f"pipeline {cmd.pipeline!r} has no wave {cmd.wave!r}")
        pool = self.runtime.pool
        if cmd.action in {"hold", "release"}:
            await gates.hold_or_release(pool, cmd)
        elif cmd.action == "result":
            await self._result(pipeline, cmd)
            return
        elif cmd.action == "approve":
            await gates.approve(pool, cmd)
        else:
            await self._rollback(pipeline, cmd)
        logger.info("pipeline %s wave %s: %s by %s", cmd.pipeline, cmd.wave, cmd.action, cmd.actor)
        await self.open_gates(cmd.pipeline)

    async def _rollback(self, pipeline: PipelineConfig, cmd: OperatorCommand) -> None:
        runs = await self.runtime.pool.fetch(
            "SELECT app_sha, cfg_sha FROM wave_runs WHERE pipeline = $1 AND wave = $2"
            " ORDER BY since DESC",
            cmd.pipeline,
            cmd.wave,
        )
        if cmd.to in {None, "previous"}:
            target = runs[1] if len(runs) > 1 else None
        else:
            target = next((r for r in runs if r["app_sha"] == cmd.to), None)
        if target is None:
            raise PreconditionFailed(
                f"wave {cmd.wave!r} of {cmd.pipeline!r} never ran {cmd.to or 'an earlier set'}"
            )
        command = RollbackWave(
            command_id=uuid.uuid5(cmd.event_id, "rollback"),
            repo=pipeline.repo,
            issued_at=utcnow(),
            pipeline=cmd.pipeline,
            wave=cmd.wave,
            app_sha=target["app_sha"],
            to_sha=target["cfg_sha"],
        )
        await self.runtime.pool.execute(
            "INSERT INTO promotions (promotion_id, pipeline, wave, app_sha, kind, status, cfg_sha)"
            " VALUES ($1, $2, $3, $4, 'rollback', 'requested', $5) ON CONFLICT DO NOTHING",
            command.command_id,
            cmd.pipeline,
            cmd.wave,
            target["app_sha"],
            target["cfg_sha"],
        )
        await self.runtime.publish(command, self.runtime.topics.git_commands, key=pipeline.repo)

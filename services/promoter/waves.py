"""Advancing image sets through waves: the promoter's flow around its rules.

State lives in Postgres (``store.py``: promotions, wave_runs, wave_gates, approvals); the
rules are ``rules.py`` (gates, next wave, supersession, rollback target, promotion states)
and ``trust.py`` (which statuses and operator commands apply). A promotion W→W+1 is created
``waiting`` when W runs an image set; ``open_gates`` turns it ``requested`` (and sends the
git command) once ``rules.gate`` says W+1's gate is open. The unique index on (pipeline,
wave, app_sha) makes a redelivered wave report unable to create a second promotion; a wave
status about an earlier watched position than one applied is ignored, and approvals, holds
and releases apply only to what they name (``gates.py``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from waveline.services.promoter import gates, rules
from waveline.services.promoter.actors import record_action
from waveline.services.promoter.dispatch import Promotion, dispatch, publish_status
from waveline.services.promoter.gate_facts import with_gate_facts
from waveline.services.promoter.ids import promotion_id
from waveline.services.promoter.store import Store, Tx
from waveline.services.promoter.store_gates import GateStore
from waveline.services.promoter.store_introductions import IntroductionStore
from waveline.services.promoter.verify import start_verifications, verification_state
from waveline.shared import quarantine_store
from waveline.shared.config import PipelineConfig
from waveline.shared.errors import PreconditionFailed
from waveline.shared.models.base import utcnow
from waveline.shared.models.git import AlignAuto, RollbackWave
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.models.promotions import PromotionEvent
from waveline.shared.models.waves import WaveStatus
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

# Ids of what a failed verification does: one per (pipeline, wave, set), so a second
# failed run of the same set, or a redelivery, repeats nothing.
_VERIFIED = uuid.UUID("5f3d2a8e-41c7-4d0b-9a6e-2b8c7e1f0d93")


@dataclass
class Waves:
    runtime: Runtime
    store: Store = field(init=False)
    gate_store: GateStore = field(init=False)
    introductions: IntroductionStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = Store(lambda: self.runtime.pool)
        self.gate_store = GateStore(lambda: self.runtime.pool)
        self.introductions = IntroductionStore(lambda: self.runtime.pool)

    def _pipeline(self, name: str) -> PipelineConfig:
        pipeline = self.runtime.config.pipelines.get(name)
        if pipeline is None:
            raise PreconditionFailed(f"unknown pipeline {name!r}")
        return pipeline

    async def on_wave_status(self, status: WaveStatus) -> None:
        pipeline = self._pipeline(status.pipeline)
        if pipeline.wave(status.wave) is None:
            raise PreconditionFailed(f"pipeline {status.pipeline!r} has no wave {status.wave!r}")
        if await gates.stale(self.gate_store, status):
            return  # an old status: it neither supersedes nor blocks a newer set
        if status.state == "failing":
            # A failing wave stops promotion from it until it runs a set again.
            await self.store.block_waiting(status.pipeline, status.wave)
            logger.warning(
                "pipeline %s: wave %s failing: %s", status.pipeline, status.wave, status.reason
            )
            return
        if status.app_sha is None or status.cfg_sha is None:
            return
        await self._arrived(status)
        async with self.store.transaction() as tx:
            recorded = await tx.record_run(
                status.pipeline, status.wave, status.app_sha, status.cfg_sha, status.at
            )
            target = rules.next_wave(pipeline, status.wave)
            if target is not None:
                await self._queue(tx, pipeline, status, target)
        # Its verifications start now (once: a redelivered status starts nothing twice;
        # a set run again at another commit is verified again).
        await start_verifications(
            self.runtime.pool,
            self.runtime.config,
            status.pipeline,
            status.wave,
            status.app_sha,
            fresh=rules.verify_again(recorded, status.cfg_sha),
        )
        await self.open_gates(status.pipeline)

    async def on_verified(self, pipeline_name: str, wave: str, app_sha: str) -> None:
        """A verification run of ``app_sha`` in ``wave`` ended. Failed: the wave's
        ``on_failure`` applies (a hold of the wave, or a rollback to the previous set), as
        an action of ``verification`` recorded like an operator's; then the gates are
        looked at again (passed: the next wave's may open)."""
        pipeline = self.runtime.config.pipelines.get(pipeline_name)
        if pipeline is None:
            return  # gone from the config since: nothing to act on
        found = pipeline.wave(wave)
        state = await verification_state(
            self.runtime.pool, self.runtime.config, pipeline_name, wave, app_sha
        )
        if found is not None and state.failed:
            logger.warning("pipeline %s: wave %s failed %s", pipeline_name, wave, state.reason)
            cmd = OperatorCommand(
                event_id=uuid.uuid5(_VERIFIED, f"{pipeline_name}/{wave}/{app_sha}"),
                pipeline=pipeline_name,
                wave=wave,
                action="hold" if found.on_failure == "hold" else "rollback",
                to=None if found.on_failure == "hold" else "previous",
                actor="verification",
                detail=state.reason[:2000],
                issued_at=utcnow(),
                app_sha=app_sha,
            )
            try:
                if cmd.action == "hold":
                    await gates.hold_or_release(self.gate_store, cmd)
                else:
                    await self._rollback(pipeline, cmd)
            except PreconditionFailed as exc:  # a newer hold, or nothing to roll back to
                logger.warning(
                    "pipeline %s: %s after failed verification refused: %s",
                    pipeline_name,
                    cmd.action,
                    exc,
                )
            else:
                await record_action(self.gate_store, cmd)
        await self.open_gates(pipeline_name)

    async def _arrived(self, status: WaveStatus) -> None:
        """The wave runs the set: every promotion that brought it there is done, and older
        sets sent into it that it never ran are superseded (``rules.arrival``)."""
        assert status.app_sha is not None
        async with self.store.transaction() as tx:
            into = await tx.into_wave(
                status.pipeline, status.wave, status.app_sha, sorted(rules.IN_FLIGHT)
            )
            arrival = rules.arrival(into, status.app_sha)
            await tx.move(arrival.done, "done", only_from=sorted(rules.IN_FLIGHT))
            # Left unfinished they would be kept for ever (and their image sets with them)
            # and listed as in flight.
            await tx.move(arrival.overtaken, "superseded", only_from=sorted(rules.OVERTAKEN))
        # Those already done are announced again too: if a publish failed after the update
        # (or the process died), this redelivery is what sends it (same event id).
        strategies = await self.store.strategies(arrival.announce)
        for pid in arrival.announce:
            await publish_status(
                self.runtime,
                await self._promotion(pid),
                "done",
                strategy=strategies[pid],
                cfg_sha=status.cfg_sha,
                detail=f"{status.wave} runs it",
            )

    async def _promotion(self, pid: uuid.UUID) -> Promotion:
        found = await self.store.promotion(pid)
        if found is None:
            raise PreconditionFailed(f"no promotion {pid}")
        return found

    async def _queue(
        self, tx: Tx, pipeline: PipelineConfig, status: WaveStatus, target: str
    ) -> None:
        assert status.app_sha is not None
        into = await tx.into_wave(status.pipeline, target, status.app_sha, ["waiting"])
        await tx.move(
            rules.superseded_at_gate(into, status.app_sha), "superseded", only_from=["waiting"]
        )
        promotion = Promotion(
            promotion_id=promotion_id(status.pipeline, target, status.app_sha, "promote"),
            pipeline=status.pipeline,
            from_wave=status.wave,
            to_wave=target,
            app_sha=status.app_sha,
            images={},
            deployed_sha=status.cfg_sha,
        )
        await tx.create_promotion(promotion, "waiting", pipeline.strategy_of(target).kind)
        # Recovered from failing with the same set: promotion may continue.
        await tx.move([promotion.promotion_id], "waiting", only_from=["blocked"])

    async def open_gates(self, pipeline_name: str | None = None) -> int:
        """Send every waiting promotion whose gate is open; returns how many were sent."""
        sent = 0
        now = utcnow()
        found = await self.store.waiting(pipeline_name)
        found += await self.introductions.waiting(pipeline_name)
        for waiting in await with_gate_facts(self.runtime.pool, self.runtime.config, found):
            promotion = waiting.promotion
            pipeline = self.runtime.config.pipelines.get(promotion.pipeline)
            wave = pipeline.wave(promotion.to_wave) if pipeline else None
            if pipeline is None or wave is None:
                continue
            if not rules.gate(waiting.facts, wave, now).is_open:
                continue
            await self._send(pipeline, promotion)
            sent += 1
        return sent

    async def _send(self, pipeline: PipelineConfig, promotion: Promotion) -> None:
        await dispatch(self.runtime, pipeline, promotion)
        await self.store.mark_requested(
            promotion.promotion_id, pipeline.strategy_of(promotion.to_wave).kind
        )
        logger.info(
            "pipeline %s: promote %s %s -> %s",
            promotion.pipeline,
            promotion.app_sha[:10],
            promotion.from_wave or "(introduction)",
            promotion.to_wave,
        )

    async def on_promotion_event(self, event: PromotionEvent) -> None:
        """Mirror what the notifier (pull requests, webhooks) learnt about a promotion."""
        if event.status not in rules.MIRRORED:
            return  # ours, or nothing new for the table
        # Also when the row already has that status: a redelivery after a failed publish of
        # the align must send it.
        updated = await self.store.report_state(
            event.promotion_id, event.status, url=event.url, detail=event.detail
        )
        if updated == "pull-request" and event.status == "done":
            await self._align(self._pipeline(event.pipeline), event.promotion_id)

    async def _result(self, pipeline: PipelineConfig, cmd: OperatorCommand) -> None:
        """An external system's report on a webhook promotion: done or failed."""
        assert cmd.promotion_id is not None and cmd.result is not None
        status = rules.result_state(cmd.result)
        # A row already in that status answers too: the redelivery after a failed publish.
        strategy = await self.store.report_state(
            cmd.promotion_id,
            status,
            detail=cmd.detail,
            where=(cmd.pipeline, cmd.wave),
            replace_detail=True,
        )
        if strategy is None:
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
            strategy=strategy,
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
        if cmd.action in {"hold", "release"}:
            await gates.hold_or_release(self.gate_store, cmd)
        elif cmd.action == "result":
            await self._result(pipeline, cmd)
            return
        elif cmd.action == "approve":
            await gates.approve(self.gate_store, cmd)
        else:
            await self._rollback(pipeline, cmd)
        logger.info("pipeline %s wave %s: %s by %s", cmd.pipeline, cmd.wave, cmd.action, cmd.actor)
        await self.open_gates(cmd.pipeline)

    async def _rollback(self, pipeline: PipelineConfig, cmd: OperatorCommand) -> None:
        runs = await self.store.runs(cmd.pipeline, cmd.wave)
        target = rules.rollback_target(runs, cmd.to)
        if target is None:
            running = await self.store.running_since(cmd.pipeline, cmd.wave)
            # Retriable: the boundary waits (with backoff) for the wave status on its way.
            behind = rules.run_not_recorded_yet(runs, running, utcnow())
            raise PreconditionFailed(
                f"wave {cmd.wave!r} of {cmd.pipeline!r} never ran {cmd.to or 'an earlier set'}"
                + ("; its latest run is not recorded yet, waiting for it" if behind else ""),
                retriable=behind,
            )
        command = RollbackWave(
            command_id=uuid.uuid5(cmd.event_id, "rollback"),
            repo=pipeline.repo,
            issued_at=utcnow(),
            pipeline=cmd.pipeline,
            wave=cmd.wave,
            app_sha=target.app_sha,
            to_sha=target.cfg_sha,
        )
        rolled_back = await self.store.running_set(cmd.pipeline, cmd.wave)
        await self.store.create_rollback(command.command_id, cmd.pipeline, cmd.wave, target)
        if rolled_back is not None and rolled_back != target.app_sha:
            # Never promoted again in this pipeline until lifted (docs/gates.md).
            await quarantine_store.quarantine(
                self.runtime.pool,
                cmd.pipeline,
                rolled_back,
                wave=cmd.wave,
                actor=cmd.actor,
                reason=f"rolled back to {target.app_sha[:12]}",
            )
        await self.runtime.publish(command, self.runtime.topics.git_commands, key=pipeline.repo)

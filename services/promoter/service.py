"""promoter's Kafka side: ``waveline.images`` in, git commands and promotion events out."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from uuid import UUID

from waveline.services.promoter import rules
from waveline.services.promoter.actors import check_images, record_action
from waveline.services.promoter.dispatch import Promotion, dispatch
from waveline.services.promoter.gate_facts import introduction_facts
from waveline.services.promoter.ids import content_event_id, promotion_id
from waveline.services.promoter.store_introductions import Introduction, IntroductionStore
from waveline.services.promoter.verify import VerificationLoop
from waveline.services.promoter.waves import Waves
from waveline.shared import dora_feed
from waveline.shared.config import PipelineConfig
from waveline.shared.errors import UnknownPipeline
from waveline.shared.models.base import utcnow
from waveline.shared.models.images import ImageSetAnnounced
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.models.promotions import PromotionEvent
from waveline.shared.models.waves import WaveStatus
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)


# Bake times are checked on this period (and on every event that may open a gate).
GATE_TICK_S = 0.5


@dataclass
class Promoter:
    runtime: Runtime
    _ticker: asyncio.Task[None] | None = None
    _verifications: VerificationLoop | None = None
    _waves: Waves | None = None
    _store: IntroductionStore = field(init=False)

    def __post_init__(self) -> None:
        self._store = IntroductionStore(lambda: self.runtime.pool)

    def register(self) -> None:
        rt = self.runtime
        self._waves = waves = Waves(rt)
        dora_feed.attach(rt)  # DORA metrics: its own consumers and /metrics (docs/dora.md)
        group = "waveline-promoter"
        rt.consume_batch(
            rt.topics.images,
            group,
            self._parse_images,
            self.on_image_sets,
            title="promoter image sets",
        )
        rt.consume(
            rt.topics.waves,
            group,
            WaveStatus.model_validate_json,
            waves.on_wave_status,
            title="promoter waves",
        )
        rt.consume(
            rt.topics.operator,
            group,
            OperatorCommand.model_validate_json,
            self.on_operator,
            title="promoter operator commands",
        )
        rt.consume(
            rt.topics.promotions,
            group,
            PromotionEvent.model_validate_json,
            waves.on_promotion_event,
            title="promoter promotion outcomes",
            batched=True,
        )

    async def on_started(self) -> None:
        """Start the bake-time ticker once the broker is connected."""
        self._ticker = asyncio.create_task(self._tick(), name="promoter-gates")
        # Wave verifications: due runs measured in the background (docs/gates.md).
        rt = self.runtime
        self._verifications = VerificationLoop(
            rt.pool, rt.config, rt.secrets, on_finished=self._verified
        )
        self._verifications.start()

    async def _verified(self, pipeline: str, wave: str, app_sha: str) -> None:
        """A verification run ended: act on it. The loop hands the run over again until
        this completes, and never two at once."""
        assert self._waves is not None
        await self._waves.on_verified(pipeline, wave, app_sha)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(GATE_TICK_S)
            try:
                assert self._waves is not None
                await self._waves.open_gates()
            except Exception:
                logger.exception("promoter: gate check failed; trying again next tick")

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._verifications is not None:
            self._verifications.close()

    def _parse_images(self, body: bytes) -> ImageSetAnnounced:
        """The announcement, refused (``ImageNotAllowed``: dead-lettered) when it names an
        image outside its pipeline's ``allowed_images``, whoever produced it."""
        announced = ImageSetAnnounced.model_validate_json(body)
        check_images(self.runtime.config, announced)
        if announced.event_id is None:
            announced = announced.model_copy(update={"event_id": content_event_id(body)})
        return announced

    async def on_operator(self, cmd: OperatorCommand) -> None:
        """Carry the command out, then record it with its actor (after: a refused command
        is dead-lettered, not recorded as done)."""
        assert self._waves is not None
        await self._waves.on_operator(cmd)
        await record_action(self._waves.gate_store, cmd)

    async def on_image_sets(self, batch: list[ImageSetAnnounced]) -> None:
        """Record each set and introduce it into its pipeline's first wave, exactly once per
        set: one statement for the whole batch, then every dispatch sent together."""
        by_id: dict[UUID, tuple[PipelineConfig, Promotion, str, str | None]] = {}
        for announced in batch:
            pipeline = self.runtime.config.pipelines.get(announced.pipeline)
            if pipeline is None:
                raise UnknownPipeline(f"unknown pipeline {announced.pipeline!r}")
            first = pipeline.waves[0].name
            promotion = Promotion(
                promotion_id=promotion_id(
                    announced.pipeline, first, announced.app_sha, "introduce"
                ),
                pipeline=announced.pipeline,
                from_wave=None,
                to_wave=first,
                app_sha=announced.app_sha,
                images=announced.images,
                deployed_sha=None,
            )
            # The same set twice in one batch is introduced once.
            by_id.setdefault(
                promotion.promotion_id,
                (pipeline, promotion, str(announced.event_id), announced.actor),
            )
        todo = list(by_id.values())
        # A freeze over a first wave keeps its introductions waiting (the gate ticker sends
        # them once it ends); the first wave has no other gate.
        now = utcnow()
        facts = await introduction_facts(
            self.runtime.pool, self.runtime.config, [p for _, p, _, _ in todo], now
        )
        frozen = {
            p.promotion_id
            for (pipeline, p, _, _), f in zip(todo, facts, strict=True)
            if not rules.gate(f, pipeline.waves[0], now).is_open
        }
        await self._store.introduce(
            [
                Introduction(
                    p,
                    event_id,
                    pipeline.strategy_of(p.to_wave).kind,
                    actor,
                    "waiting" if p.promotion_id in frozen else "requested",
                )
                for pipeline, p, event_id, actor in todo
            ]
        )
        if frozen:
            # What was recorded decides, not the freeze now: one recorded requested before
            # the freeze must still be sent, one recorded waiting waits for the ticker.
            states = await self._store.states([p.promotion_id for _, p, _, _ in todo])
            todo = [t for t in todo if states.get(t[1].promotion_id) != "waiting"]
        # Dispatched on every delivery, not only the first: if we crashed after the insert
        # and before this publish, the redelivery must still send it. The ids are
        # deterministic, so git-writer and the notifier turn any repeat into a no-op.
        await asyncio.gather(*(dispatch(self.runtime, pl, p) for pl, p, _, _ in todo))
        for _, p, _, _ in todo:
            logger.info(
                "pipeline %s: image set %s -> introduce into %s (%s)",
                p.pipeline,
                p.app_sha[:10],
                p.to_wave,
                p.promotion_id,
            )

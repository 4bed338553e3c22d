"""notifier's Kafka side. It follows promotions and git events; outbound webhooks are
configured per pipeline (see the README for what is delivered today)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from faststream.kafka import KafkaMessage
from faststream.middlewares import AckPolicy

from waveline.shared.models.git import GitEvent
from waveline.shared.models.promotions import PromotionEvent
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)


@dataclass
class Notifier:
    runtime: Runtime

    def register(self) -> None:
        rt = self.runtime
        boundary = rt.boundary()
        group = rt.group("waveline-notifier")

        @rt.broker.subscriber(
            rt.topics.promotions,
            group_id=group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title="notifier promotions",
        )
        async def on_promotion(msg: KafkaMessage) -> None:
            await boundary.run(msg, PromotionEvent.model_validate_json, self.on_promotion)

        @rt.broker.subscriber(
            rt.topics.git_events,
            group_id=group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title="notifier git events",
        )
        async def on_git_event(msg: KafkaMessage) -> None:
            await boundary.run(msg, GitEvent.model_validate_json, self.on_git_event)

    async def on_promotion(self, event: PromotionEvent) -> None:
        logger.info(
            "promotion %s: %s %s -> %s",
            event.promotion_id,
            event.pipeline,
            event.app_sha[:10],
            event.status,
        )

    async def on_git_event(self, event: GitEvent) -> None:
        if event.outcome in {"rejected", "failed", "evicted"}:
            logger.warning(
                "repo %s: %s %s: %s", event.repo, event.command_kind, event.outcome, event.reason
            )

"""notifier's Kafka side. It follows promotions and git events; outbound webhooks are
configured per pipeline (see the README for what is delivered today)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from waveline.shared.models.git import GitEvent
from waveline.shared.models.promotions import PromotionEvent
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)


@dataclass
class Notifier:
    runtime: Runtime

    def register(self) -> None:
        rt = self.runtime
        group = "waveline-notifier"
        rt.consume(
            rt.topics.promotions,
            group,
            PromotionEvent.model_validate_json,
            self.on_promotion,
            title="notifier promotions",
        )
        rt.consume(
            rt.topics.git_events,
            group,
            GitEvent.model_validate_json,
            self.on_git_event,
            title="notifier git events",
        )

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

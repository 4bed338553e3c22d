"""Sending a promotion on its way, by the strategy its target wave uses (docs/architecture.md).

- ``commit``: a git command; git-writer commits on ``auto``.
- ``pull-request``: the same command naming the wave's promotion branch; git-writer pushes
  that branch and the notifier opens (or updates) the pull request.
- ``webhook``: no git command; the ``requested`` promotion event is what the notifier
  delivers to the external system, which reports the result back.

Every path publishes the ``requested`` promotion event with a deterministic id, so a
redelivered trigger sends nothing new downstream.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from waveline.shared.config import PipelineConfig, StrategyKind
from waveline.shared.models.base import utcnow
from waveline.shared.models.git import IntroduceImages, PromoteWave
from waveline.shared.models.images import ImageRef
from waveline.shared.models.promotions import PromotionEvent, PromotionStatus
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Promotion:
    promotion_id: uuid.UUID
    pipeline: str
    from_wave: str | None
    to_wave: str
    app_sha: str
    images: Mapping[str, ImageRef]
    deployed_sha: str | None  # the commit from_wave runs (None for an introduction)


def status_event_id(promotion_id: uuid.UUID, status: str) -> uuid.UUID:
    """One event id per (promotion, status), whoever publishes it."""
    return promotion_id if status == "requested" else uuid.uuid5(promotion_id, status)


async def dispatch(runtime: Runtime, pipeline: PipelineConfig, p: Promotion) -> None:
    strategy = pipeline.strategy_of(p.to_wave)
    now = utcnow()
    branch = strategy.branch_for(p.pipeline, p.to_wave) if strategy.kind == "pull-request" else None
    sends = []
    if strategy.kind != "webhook":
        command: IntroduceImages | PromoteWave
        if p.from_wave is None:
            command = IntroduceImages(
                command_id=p.promotion_id,
                repo=pipeline.repo,
                issued_at=now,
                pipeline=p.pipeline,
                wave=p.to_wave,
                app_sha=p.app_sha,
                images=dict(p.images),
                branch=branch,
            )
        else:
            assert p.deployed_sha is not None
            command = PromoteWave(
                command_id=p.promotion_id,
                repo=pipeline.repo,
                issued_at=now,
                pipeline=p.pipeline,
                from_wave=p.from_wave,
                to_wave=p.to_wave,
                app_sha=p.app_sha,
                deployed_sha=p.deployed_sha,
                branch=branch,
            )
        sends.append(runtime.publish(command, runtime.topics.git_commands, key=pipeline.repo))
    sends.append(
        publish_status(
            runtime,
            p,
            "requested",
            strategy=strategy.kind,
            cfg_sha=p.deployed_sha,
        )
    )
    # Both acknowledged before the trigger is; sent together to halve the wait.
    await asyncio.gather(*sends)


async def publish_status(
    runtime: Runtime,
    p: Promotion,
    status: PromotionStatus,
    *,
    strategy: StrategyKind,
    cfg_sha: str | None = None,
    detail: str | None = None,
    url: str | None = None,
) -> None:
    await runtime.publish(
        PromotionEvent(
            event_id=status_event_id(p.promotion_id, status),
            promotion_id=p.promotion_id,
            pipeline=p.pipeline,
            from_wave=p.from_wave,
            to_wave=p.to_wave,
            app_sha=p.app_sha,
            images=dict(p.images),
            cfg_sha=cfg_sha,
            strategy=strategy,
            status=status,
            detail=detail,
            url=url,
            at=utcnow(),
        ),
        runtime.topics.promotions,
        key=p.pipeline,
    )

"""The promoter's SQL about introductions (a new image set into its pipeline's first wave),
apart from ``store.py`` to keep each module small: recorded for a whole batch in one
statement, ``requested`` at once or ``waiting`` while a freeze covers the first wave."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from waveline.services.promoter import rules
from waveline.services.promoter.dispatch import Promotion
from waveline.services.promoter.store import Waiting, images_of
from waveline.shared.config import StrategyKind


@dataclass(frozen=True)
class Introduction:
    promotion: Promotion
    event_id: str
    strategy: StrategyKind
    actor: str | None
    state: rules.PromotionState = "requested"


@dataclass
class IntroductionStore:
    # The pool opens when the service starts, after the store is made: asked for each use.
    pool_of: Callable[[], asyncpg.Pool]

    async def introduce(self, todo: Sequence[Introduction]) -> None:
        """Record each set and its introduction into its first wave, in its ``state``
        (already recorded ones are left): one statement, so one round trip, atomic
        without a transaction."""
        columns: list[list[Any]] = [[] for _ in range(9)]
        for t in todo:
            p = t.promotion
            images = {s: r.model_dump() for s, r in p.images.items()}
            values = (
                p.pipeline,
                p.app_sha,
                json.dumps(images, sort_keys=True),
                t.event_id,
                p.promotion_id,
                p.to_wave,
                t.strategy,
                t.actor,
                t.state,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        await self.pool_of().execute(
            "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[],"
            " $4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[])"
            " AS t (pipeline, app_sha, images, event_id, promotion_id, wave, strategy, actor,"
            " status)),"
            " image_set AS (INSERT INTO image_sets (pipeline, app_sha, images, event_id, actor)"
            " SELECT pipeline, app_sha, images::jsonb, event_id, actor FROM input"
            " ON CONFLICT DO NOTHING)"
            " INSERT INTO promotions"
            " (promotion_id, pipeline, wave, app_sha, kind, status, strategy)"
            " SELECT promotion_id, pipeline, wave, app_sha, 'introduce', status, strategy"
            " FROM input ON CONFLICT DO NOTHING",
            *columns,
        )

    async def states(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, rules.PromotionState]:
        rows = await self.pool_of().fetch(
            "SELECT promotion_id, status FROM promotions WHERE promotion_id = ANY($1::uuid[])",
            list(ids),
        )
        return {r["promotion_id"]: r["status"] for r in rows}

    async def waiting(self, pipeline: str | None) -> list[Waiting]:
        """Introductions waiting out a freeze (of ``pipeline``, or all), oldest first."""
        rows = await self.pool_of().fetch(
            "SELECT p.promotion_id, p.pipeline, p.wave, p.app_sha, p.created_at, i.images"
            " FROM promotions p"
            " LEFT JOIN image_sets i ON i.pipeline = p.pipeline AND i.app_sha = p.app_sha"
            " WHERE p.status = $2 AND p.kind = 'introduce'"
            " AND ($1::text IS NULL OR p.pipeline = $1) ORDER BY p.created_at",
            pipeline,
            "waiting",
        )
        return [
            Waiting(
                Promotion(
                    promotion_id=r["promotion_id"],
                    pipeline=r["pipeline"],
                    from_wave=None,
                    to_wave=r["wave"],
                    app_sha=r["app_sha"],
                    images=images_of(r["images"]),
                    deployed_sha=None,
                ),
                rules.GateFacts(
                    app_sha=r["app_sha"],
                    from_wave="",
                    since=r["created_at"],
                    pipeline=r["pipeline"],
                    created_at=r["created_at"],
                    introduction=True,
                ),
            )
            for r in rows
        ]

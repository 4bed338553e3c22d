"""The notifier's deliveries in Postgres: queued with their exact body, claimed when due,
every attempt recorded, and a follow-up outbox.

A delivery is inserted once (its id is the CloudEvent id, derived from the triggering
event, so a redelivered Kafka message inserts nothing). Claiming pushes ``next_attempt_at``
past the attempt's timeout, so a notifier that dies mid-attempt leaves the delivery due
again later instead of lost; a delivered one is never claimed again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewDelivery:
    delivery_id: uuid.UUID
    kind: str  # promotion | notification
    target: str  # 'pipeline/wave' (promotion) or 'notification:<name>'
    pipeline: str | None
    promotion_id: uuid.UUID | None
    event_type: str
    source_topic: str
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Due(NewDelivery):
    """A queued delivery as claimed: what it is, and how far it got."""

    attempts: int
    state: str
    last_error: str | None


def _due(row: asyncpg.Record) -> Due:
    return Due(**dict(row.items()))


@dataclass
class DeliveryStore:
    pool: asyncpg.Pool

    async def enqueue(self, d: NewDelivery) -> bool:
        """Queue ``d`` unless it is already known; True when it was new."""
        inserted = await self.pool.fetchval(
            "INSERT INTO deliveries (delivery_id, kind, target, pipeline, promotion_id,"
            " event_type, source_topic, body, content_type)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
            " RETURNING true",
            d.delivery_id,
            d.kind,
            d.target,
            d.pipeline,
            d.promotion_id,
            d.event_type,
            d.source_topic,
            d.body,
            d.content_type,
        )
        return bool(inserted)

    async def claim_due(self, limit: int, lease: timedelta) -> list[Due]:
        """Pending deliveries whose time has come, leased for ``lease``."""
        rows = await self.pool.fetch(
            "UPDATE deliveries d SET next_attempt_at = now() + $2::interval"
            " FROM (SELECT delivery_id FROM deliveries"
            "  WHERE state = 'pending' AND next_attempt_at <= now()"
            "  ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due"
            " WHERE d.delivery_id = due.delivery_id RETURNING d.delivery_id, d.kind, d.target,"
            " d.pipeline, d.promotion_id, d.event_type, d.source_topic, d.body, d.content_type,"
            " d.attempts, d.state, d.last_error",
            limit,
            lease,
        )
        return [_due(r) for r in rows]

    async def record(
        self,
        due: Due,
        *,
        status_code: int | None,
        latency_ms: float,
        outcome: str,
        error: str | None,
        state: str,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Record attempt ``due.attempts + 1`` and the delivery's new state, atomically;
        False when the delivery moved on meanwhile (nothing recorded)."""
        attempt = due.attempts + 1
        async with self.pool.acquire() as conn, conn.transaction():
            # Only from the state this attempt was claimed in: an attempt that outlived its
            # lease (and was made again meanwhile) must not undo a newer outcome.
            moved = await conn.fetchval(
                "UPDATE deliveries SET attempts = $2, state = $3,"
                " next_attempt_at = coalesce($4, next_attempt_at), last_error = $5,"
                " updated_at = now()"
                " WHERE delivery_id = $1 AND state = 'pending' AND attempts = $6 RETURNING true",
                due.delivery_id,
                attempt,
                state,
                next_attempt_at,
                error,
                due.attempts,
            )
            if not moved:
                return False
            await conn.execute(
                "INSERT INTO delivery_attempts"
                " (delivery_id, attempt, status_code, latency_ms, outcome, error)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                due.delivery_id,
                attempt,
                status_code,
                latency_ms,
                outcome,
                error,
            )
            return True

    async def unannounced(self, limit: int = 50) -> list[Due]:
        rows = await self.pool.fetch(
            "SELECT delivery_id, kind, target, pipeline, promotion_id, event_type, source_topic,"
            " body, content_type, attempts, state, last_error FROM deliveries"
            " WHERE state <> 'pending' AND NOT announced ORDER BY updated_at LIMIT $1",
            limit,
        )
        return [_due(r) for r in rows]

    async def mark_announced(self, delivery_id: uuid.UUID) -> None:
        await self.pool.execute(
            "UPDATE deliveries SET announced = true WHERE delivery_id = $1", delivery_id
        )

"""GitHub delivery ids already handled (``github_deliveries``), so that a redelivery —
GitHub's own, or a captured request sent again with its ``X-GitHub-Delivery`` — is answered
200 and changes nothing (docs/security.md, Deploy reports, checks, approvals).

An id is recorded only once its delivery was handled (published, or deliberately ignored):
recorded before, a delivery whose publish failed (503) would be lost to its redelivery.
Two copies arriving at the same moment may then both be published; their event ids are
derived from their meaning, so downstream they are one. The header is not covered by the
signature: the event ids, not this table, are what make a re-sent fact one fact. The
status-tracker prunes the table (shared/retention.py).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import asyncpg

from waveline.services.ingest.responses import ApiError
from waveline.shared.outage import is_retriable

T = TypeVar("T")

MAX_ID_LENGTH = 100


def delivery_id(header: str | None) -> str | None:
    """The delivery id of a request (None: none sent); 400 when it cannot be one."""
    if header is None or not header.strip():
        return None
    value = header.strip()
    if len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise ApiError(400, "malformed", "X-GitHub-Delivery is not a delivery id")
    return value


async def db_call(call: Awaitable[T]) -> T:
    """``call``'s result; 503 when PostgreSQL is away (the sender retries)."""
    try:
        return await call
    except Exception as exc:
        if is_retriable(exc):
            raise ApiError(503, "unavailable", "PostgreSQL did not answer; retry") from exc
        raise


async def seen(pool: asyncpg.Pool, delivery: str) -> bool:
    found = await db_call(
        pool.fetchval("SELECT 1 FROM github_deliveries WHERE delivery_id = $1", delivery)
    )
    return found is not None


async def remember(pool: asyncpg.Pool, delivery: str) -> None:
    await db_call(
        pool.execute(
            "INSERT INTO github_deliveries (delivery_id) VALUES ($1) ON CONFLICT DO NOTHING",
            delivery,
        )
    )

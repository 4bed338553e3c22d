"""The git-writer's eviction records (``evictions``, migration 0012): what a retry after
eviction is decided on (attempts.py). SQL only."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg

from waveline.shared.gitengine import trailers
from waveline.shared.models.git import GitEvent


def eviction_rows(
    events: Iterable[GitEvent],
) -> list[tuple[str, str, uuid.UUID | None, str | None, str | None, str | None, int]]:
    """One row per evicted commit, from the trailers its event carries."""
    rows = []
    for event in events:
        if event.outcome != "evicted" or event.old_sha is None:
            continue
        info = trailers.Trailers(event.trailers)
        try:
            event_id = uuid.UUID(info.event_id) if info.event_id else None
        except ValueError:
            event_id = None  # not one of Waveline's ids: recorded, never matched
        rows.append(
            (
                event.repo,
                event.old_sha,
                event_id,
                info.get(trailers.PIPELINE),
                info.get(trailers.APP_SHA),
                info.get(trailers.TARGET),
                info.attempt,
            )
        )
    return rows


async def record(pool: asyncpg.Pool, events: Iterable[GitEvent]) -> None:
    """Record the evictions among ``events`` (again on redelivery: a no-op)."""
    rows = eviction_rows(events)
    if not rows:
        return
    await pool.executemany(
        "INSERT INTO evictions (repo, sha, event_id, pipeline, app_sha, wave, attempt)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (repo, sha) DO NOTHING",
        rows,
    )

"""What ingest reads of an image set before it publishes an announcement of it, in one
statement: the rollback quarantine in force (quarantine_http.py; lifted in the same statement
when the announcement is forced) and whether the promoter recorded the set (retry.py: only a
set announced before needs the retry decision's further reads). SQL only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from waveline.shared.quarantine_store import Quarantine


@dataclass(frozen=True)
class KnownImages:
    """A set the promoter recorded: its images as first announced and its newest attempt."""

    images: dict[str, Any]
    attempt: int


@dataclass(frozen=True)
class AnnounceFacts:
    in_force: Quarantine | None  # the quarantine in force (None when forced: lifted)
    lifted: Quarantine | None  # forced: the quarantine this statement lifted, if any
    known: KnownImages | None  # None: never recorded (a first announcement)


# The quarantine's rows: those in force, or (forced) those this statement lifts. A
# data-modifying CTE is run exactly once, whether or not the outer query reads it.
_IN_FORCE = (
    "SELECT wave, actor, reason, created_at FROM quarantined_sets"
    " WHERE pipeline = $1 AND app_sha = $2 AND lifted_at IS NULL"
)
_LIFT = (
    "UPDATE quarantined_sets SET lifted_at = now(), lifted_by = $3"
    " WHERE pipeline = $1 AND app_sha = $2 AND lifted_at IS NULL"
    " RETURNING wave, actor, reason, created_at"
)
_FACTS = (
    "WITH q AS ({quarantine})"
    " SELECT q.wave, q.actor, q.reason, q.created_at, s.images::text AS images,"
    " (SELECT max(a.attempt) FROM set_attempts a WHERE a.pipeline = $1 AND a.app_sha = $2)"
    " AS attempt"
    " FROM (SELECT 1) one LEFT JOIN q ON true"
    " LEFT JOIN image_sets s ON s.pipeline = $1 AND s.app_sha = $2"
)
_READ = _FACTS.format(quarantine=_IN_FORCE)
_READ_AND_LIFT = _FACTS.format(quarantine=_LIFT)


async def announce_facts(
    pool: asyncpg.Pool, pipeline: str, app_sha: str, *, lift_by: str | None = None
) -> AnnounceFacts:
    """The facts of ``app_sha`` in ``pipeline`` in one round trip (one pool connection);
    with ``lift_by``, its quarantine in force is lifted by that actor in the same statement
    (``lifted``, and nothing is in force after it)."""
    async with pool.acquire() as conn:
        if lift_by is None:
            row = await conn.fetchrow(_READ, pipeline, app_sha)
        else:
            row = await conn.fetchrow(_READ_AND_LIFT, pipeline, app_sha, lift_by)
    assert row is not None  # the outer query always has its one row
    quarantine = None
    if row["wave"] is not None:
        quarantine = Quarantine(
            pipeline, app_sha, row["wave"], row["actor"], row["reason"], row["created_at"]
        )
    known = None
    if row["images"] is not None:
        known = KnownImages(json.loads(row["images"]), row["attempt"] or 1)
    if lift_by is None:
        return AnnounceFacts(in_force=quarantine, lifted=None, known=known)
    return AnnounceFacts(in_force=None, lifted=quarantine, known=known)

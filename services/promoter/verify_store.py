"""Every SQL statement of wave verifications (table ``verification_runs``, migration 0015).

No rule is decided here: the states written come from ``verify_rules.py``. A run is claimed
under a lease (a token and an end time) and written back only by the holder of that lease, so
two promoter replicas never measure one run twice, and a replica that died mid-measurement
hands its runs over once the lease ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

from waveline.services.promoter.verify_rules import RunState
from waveline.shared.verify_config import Verification

# A pool, or a connection of one (inside the caller's transaction).
Db: TypeAlias = "asyncpg.Pool | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"


@dataclass(frozen=True)
class RunKey:
    pipeline: str
    wave: str
    app_sha: str
    name: str


@dataclass(frozen=True)
class Claimed:
    key: RunKey
    state: RunState


def _state(row: asyncpg.Record) -> RunState:
    return RunState(
        status=row["status"],
        measurements=row["measurements"],
        failures=row["failures"],
        errors=row["errors"],
        reason=row["reason"],
    )


async def start(
    db: Db,
    pipeline: str,
    wave: str,
    app_sha: str,
    *,
    verifications: Sequence[Verification],
    now: datetime,
    fresh: bool = False,
) -> int:
    """Create a running run per verification, its first measurement due after its delay;
    returns how many were created. A run that exists is left as it is, unless ``fresh``
    (the wave runs the set again, e.g. after a rollback to it): then it starts over."""
    if not verifications:
        return 0
    created = await db.fetch(
        "INSERT INTO verification_runs"
        " (pipeline, wave, app_sha, name, kind, next_at, started_at)"
        " SELECT $1, $2, $3, t.name, t.kind, t.next_at, $6"
        " FROM unnest($4::text[], $5::text[], $7::timestamptz[]) AS t (name, kind, next_at)"
        " ON CONFLICT (pipeline, wave, app_sha, name) DO UPDATE SET kind = EXCLUDED.kind,"
        " status = 'running', measurements = 0, failures = 0, errors = 0, reason = NULL,"
        " last_detail = NULL, next_at = EXCLUDED.next_at, lease_token = NULL,"
        " lease_until = NULL, started_at = EXCLUDED.started_at, finished_at = NULL,"
        " handled = false"
        " WHERE $8::boolean RETURNING name",
        pipeline,
        wave,
        app_sha,
        [v.name for v in verifications],
        [v.kind for v in verifications],
        now,
        [now + v.delay for v in verifications],
        fresh,
    )
    return len(created)


async def runs_of(db: Db, pipeline: str, wave: str, app_sha: str) -> dict[str, RunState]:
    """The runs of a set in a wave, by verification name."""
    rows = await db.fetch(
        "SELECT name, status, measurements, failures, errors, reason FROM verification_runs"
        " WHERE pipeline = $1 AND wave = $2 AND app_sha = $3 AND status <> 'cancelled'",
        pipeline,
        wave,
        app_sha,
    )
    return {row["name"]: _state(row) for row in rows}


SetKey: TypeAlias = tuple[str, str, str]  # (pipeline, wave, app_sha)


async def runs_for(db: Db, keys: Sequence[SetKey]) -> dict[SetKey, dict[str, RunState]]:
    """``runs_of`` for many sets in one round trip (a set with no run is absent)."""
    rows = await db.fetch(
        "SELECT r.pipeline, r.wave, r.app_sha, r.name, r.status, r.measurements, r.failures,"
        " r.errors, r.reason FROM verification_runs r"
        " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (pipeline, wave, app_sha)"
        " USING (pipeline, wave, app_sha) WHERE r.status <> 'cancelled'",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
    )
    found: dict[SetKey, dict[str, RunState]] = {}
    for row in rows:
        key = (row["pipeline"], row["wave"], row["app_sha"])
        found.setdefault(key, {})[row["name"]] = _state(row)
    return found


async def claim(
    pool: asyncpg.Pool, token: uuid.UUID, now: datetime, lease_until: datetime, limit: int
) -> list[Claimed]:
    """Lease up to ``limit`` running runs that are due and not leased by a live holder."""
    rows = await pool.fetch(
        "UPDATE verification_runs r SET lease_token = $1, lease_until = $3"
        " FROM (SELECT pipeline, wave, app_sha, name FROM verification_runs"
        "  WHERE status = 'running' AND next_at <= $2"
        "  AND (lease_until IS NULL OR lease_until < $2)"
        "  ORDER BY next_at LIMIT $4 FOR UPDATE SKIP LOCKED) due"
        " WHERE (r.pipeline, r.wave, r.app_sha, r.name)"
        " = (due.pipeline, due.wave, due.app_sha, due.name)"
        " RETURNING r.pipeline, r.wave, r.app_sha, r.name, r.status, r.measurements,"
        " r.failures, r.errors, r.reason",
        token,
        now,
        lease_until,
        limit,
    )
    return [
        Claimed(RunKey(r["pipeline"], r["wave"], r["app_sha"], r["name"]), _state(r)) for r in rows
    ]


async def record(
    pool: asyncpg.Pool,
    key: RunKey,
    token: uuid.UUID,
    *,
    state: RunState,
    detail: str | None,
    next_at: datetime,
    now: datetime,
    handled: bool = False,
) -> bool:
    """Write the run after a measurement and give up the lease; False (nothing written)
    when the lease was lost to another replica meanwhile. An ended run is due at once
    (``claim_ended``) unless ``handled``: nobody acts on it."""
    done = state.status != "running"
    written = await pool.fetchval(
        "UPDATE verification_runs SET status = $6, measurements = $7, failures = $8,"
        " errors = $9, reason = $10, last_detail = $11,"
        " next_at = CASE WHEN $13 THEN $14::timestamptz ELSE $12 END,"
        " lease_token = NULL, lease_until = NULL, handled = $15,"
        " finished_at = CASE WHEN $13 THEN $14::timestamptz END"
        " WHERE pipeline = $1 AND wave = $2 AND app_sha = $3 AND name = $4"
        " AND lease_token = $5 AND status = 'running' RETURNING true",
        key.pipeline,
        key.wave,
        key.app_sha,
        key.name,
        token,
        state.status,
        state.measurements,
        state.failures,
        state.errors,
        state.reason,
        detail,
        next_at,
        done,
        now,
        handled,
    )
    return bool(written)


async def claim_ended(
    pool: asyncpg.Pool, token: uuid.UUID, now: datetime, lease_until: datetime, limit: int
) -> list[RunKey]:
    """Lease up to ``limit`` ended runs nobody has acted on yet (``handled``)."""
    rows = await pool.fetch(
        "UPDATE verification_runs r SET lease_token = $1, lease_until = $3"
        " FROM (SELECT pipeline, wave, app_sha, name FROM verification_runs"
        "  WHERE status IN ('passed', 'failed') AND NOT handled AND next_at <= $2"
        "  AND (lease_until IS NULL OR lease_until < $2)"
        "  ORDER BY next_at LIMIT $4 FOR UPDATE SKIP LOCKED) due"
        " WHERE (r.pipeline, r.wave, r.app_sha, r.name)"
        " = (due.pipeline, due.wave, due.app_sha, due.name)"
        " RETURNING r.pipeline, r.wave, r.app_sha, r.name",
        token,
        now,
        lease_until,
        limit,
    )
    return [RunKey(r["pipeline"], r["wave"], r["app_sha"], r["name"]) for r in rows]


async def handled(
    pool: asyncpg.Pool, key: RunKey, token: uuid.UUID, *, retry_at: datetime | None
) -> None:
    """Give up the lease of an ended run: acted on (``retry_at`` None), or to be handed
    over again at ``retry_at``."""
    await pool.execute(
        "UPDATE verification_runs SET handled = $6::timestamptz IS NULL,"
        " next_at = coalesce($6, next_at), lease_token = NULL, lease_until = NULL"
        " WHERE pipeline = $1 AND wave = $2 AND app_sha = $3 AND name = $4"
        " AND lease_token = $5",
        key.pipeline,
        key.wave,
        key.app_sha,
        key.name,
        token,
        retry_at,
    )


async def cancel(pool: asyncpg.Pool, key: RunKey, token: uuid.UUID, now: datetime) -> None:
    """End a leased run whose verification is no longer configured."""
    await pool.execute(
        "UPDATE verification_runs SET status = 'cancelled', finished_at = $6,"
        " reason = 'no longer configured', lease_token = NULL, lease_until = NULL"
        " WHERE pipeline = $1 AND wave = $2 AND app_sha = $3 AND name = $4"
        " AND lease_token = $5",
        key.pipeline,
        key.wave,
        key.app_sha,
        key.name,
        token,
        now,
    )


async def release(pool: asyncpg.Pool, token: uuid.UUID) -> None:
    """Give up the leases of ``token`` (a pass stopped midway): its runs are due again."""
    await pool.execute(
        "UPDATE verification_runs SET lease_token = NULL, lease_until = NULL"
        " WHERE lease_token = $1",
        token,
    )

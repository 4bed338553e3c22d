"""The SQL of manual freezes and break-glass records (``freezes``, ``break_glasses``;
migration 0013). Ingest writes them (operator endpoints, ``freeze_http.py``); the promoter's
gate reads them and hands them to the pure rules of ``freeze.py``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from waveline.services.promoter.freeze import BreakGlass, FreezeScope, ManualFreeze


@dataclass(frozen=True)
class StoredFreeze:
    freeze_id: uuid.UUID
    freeze: ManualFreeze

    def to_json(self) -> dict[str, str | None]:
        f = self.freeze
        return {
            "freeze_id": str(self.freeze_id),
            "scope": f.scope,
            "pipeline": f.pipeline,
            "wave": f.wave,
            "reason": f.reason,
            "actor": f.actor,
            "created_at": f.created_at.isoformat(),
        }


def _stored(row: asyncpg.Record) -> StoredFreeze:
    return StoredFreeze(
        freeze_id=row["freeze_id"],
        freeze=ManualFreeze(
            scope=row["scope"],
            pipeline=row["pipeline"],
            wave=row["wave"],
            reason=row["reason"],
            actor=row["actor"],
            created_at=row["created_at"],
        ),
    )


def scope_of(pipeline: str | None, wave: str | None) -> FreezeScope:
    """``all`` without a pipeline, ``wave`` with a wave, else ``pipeline``."""
    if pipeline is None:
        return "all"
    return "pipeline" if wave is None else "wave"


async def freeze(
    pool: asyncpg.Pool, pipeline: str | None, wave: str | None, reason: str, actor: str
) -> StoredFreeze:
    """Record a freeze in force from now on."""
    row = await pool.fetchrow(
        "INSERT INTO freezes (freeze_id, scope, pipeline, wave, reason, actor)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " RETURNING freeze_id, scope, pipeline, wave, reason, actor, created_at",
        uuid.uuid4(),
        scope_of(pipeline, wave),
        pipeline,
        wave,
        reason,
        actor,
    )
    assert row is not None
    return _stored(row)


async def lift(
    pool: asyncpg.Pool, pipeline: str | None, wave: str | None, actor: str
) -> list[StoredFreeze]:
    """Lift the freezes in force of exactly that scope (``--all`` lifts the ``all`` ones,
    a pipeline its pipeline-wide ones, a wave its own); returns those lifted."""
    rows = await pool.fetch(
        "UPDATE freezes SET lifted_at = now(), lifted_by = $4"
        " WHERE lifted_at IS NULL AND scope = $1"
        " AND pipeline IS NOT DISTINCT FROM $2 AND wave IS NOT DISTINCT FROM $3"
        " RETURNING freeze_id, scope, pipeline, wave, reason, actor, created_at",
        scope_of(pipeline, wave),
        pipeline,
        wave,
        actor,
    )
    return [_stored(r) for r in rows]


async def in_force(pool: asyncpg.Pool, pipeline: str | None = None) -> list[StoredFreeze]:
    """The freezes not lifted: all of them, or those that may apply to ``pipeline`` (its
    own and the ``all`` ones), oldest first."""
    rows = await pool.fetch(
        "SELECT freeze_id, scope, pipeline, wave, reason, actor, created_at"
        " FROM freezes WHERE lifted_at IS NULL"
        " AND ($1::text IS NULL OR pipeline IS NULL OR pipeline = $1) ORDER BY created_at",
        pipeline,
    )
    return [_stored(r) for r in rows]


async def manual_freezes(pool: asyncpg.Pool, pipeline: str) -> list[ManualFreeze]:
    """What the gate of ``pipeline``'s waves needs: the freezes that may apply to it."""
    return [s.freeze for s in await in_force(pool, pipeline)]


async def record_break_glass(
    pool: asyncpg.Pool,
    break_glass_id: uuid.UUID,
    *,
    pipeline: str,
    wave: str,
    app_sha: str,
    reason: str,
    actor: str,
) -> BreakGlass:
    """Record a break-glass (idempotent on its id, the approve command's event id), dated
    by PostgreSQL's clock like the promotion it is compared with."""
    row = await pool.fetchrow(
        "WITH added AS (INSERT INTO break_glasses"
        " (break_glass_id, pipeline, wave, app_sha, reason, actor)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (break_glass_id) DO NOTHING"
        " RETURNING pipeline, wave, app_sha, reason, actor, created_at)"
        " SELECT * FROM added UNION ALL"
        " SELECT pipeline, wave, app_sha, reason, actor, created_at FROM break_glasses"
        " WHERE break_glass_id = $1 LIMIT 1",
        break_glass_id,
        pipeline,
        wave,
        app_sha,
        reason,
        actor,
    )
    assert row is not None
    return BreakGlass(**dict(row))


async def break_glasses(
    pool: asyncpg.Pool, pipeline: str, wave: str, app_sha: str | None = None
) -> list[BreakGlass]:
    """The break-glass records of a wave (of one set, when ``app_sha`` is given), oldest
    first: ``freeze.break_glass_for`` picks the one that counts."""
    rows = await pool.fetch(
        "SELECT pipeline, wave, app_sha, reason, actor, created_at FROM break_glasses"
        " WHERE pipeline = $1 AND wave = $2 AND ($3::text IS NULL OR app_sha = $3)"
        " ORDER BY created_at",
        pipeline,
        wave,
        app_sha,
    )
    return [BreakGlass(**dict(r)) for r in rows]

"""Rollback quarantines' SQL (table ``quarantined_sets``, migration 0018): the promoter
quarantines the set a rollback took out of a wave; ingest reads them (a re-announcement is
refused) and lifts them; the promoter's gate reads them (docs/gates.md, Rollback quarantines).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

Conn = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True)
class Quarantine:
    pipeline: str
    app_sha: str
    wave: str  # the wave the set was rolled back out of
    actor: str
    reason: str
    since: datetime


async def quarantine(
    conn: Conn, pipeline: str, app_sha: str, *, wave: str, actor: str, reason: str
) -> None:
    """Quarantine ``app_sha`` in ``pipeline`` (again, if it was lifted: the newest reason
    and actor stand)."""
    await conn.execute(
        "INSERT INTO quarantined_sets (pipeline, app_sha, wave, actor, reason)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (pipeline, app_sha) DO UPDATE SET"
        " wave = EXCLUDED.wave, actor = EXCLUDED.actor, reason = EXCLUDED.reason,"
        " created_at = now(), lifted_at = NULL, lifted_by = NULL",
        pipeline,
        app_sha,
        wave,
        actor,
        reason,
    )


async def lift(conn: Conn, pipeline: str, app_sha: str, actor: str) -> Quarantine | None:
    """End the quarantine of ``app_sha`` in ``pipeline``; returns what was lifted (None:
    none was in force)."""
    row = await conn.fetchrow(
        "UPDATE quarantined_sets SET lifted_at = now(), lifted_by = $3"
        " WHERE pipeline = $1 AND app_sha = $2 AND lifted_at IS NULL"
        " RETURNING pipeline, app_sha, wave, actor, reason, created_at",
        pipeline,
        app_sha,
        actor,
    )
    return None if row is None else _quarantine(row)


async def in_force(conn: Conn, pipeline: str, app_shas: Sequence[str]) -> dict[str, Quarantine]:
    """The quarantines in force in ``pipeline`` among ``app_shas``, by set."""
    rows = await conn.fetch(
        "SELECT pipeline, app_sha, wave, actor, reason, created_at FROM quarantined_sets"
        " WHERE pipeline = $1 AND app_sha = ANY($2::text[]) AND lifted_at IS NULL",
        pipeline,
        list(app_shas),
    )
    return {r["app_sha"]: _quarantine(r) for r in rows}


async def all_in_force(conn: Conn, pipeline: str, limit: int = 50) -> list[Quarantine]:
    """The newest ``limit`` quarantines in force in ``pipeline`` (status and dashboard)."""
    rows = await conn.fetch(
        "SELECT pipeline, app_sha, wave, actor, reason, created_at FROM quarantined_sets"
        " WHERE pipeline = $1 AND lifted_at IS NULL ORDER BY created_at DESC LIMIT $2",
        pipeline,
        limit,
    )
    return [_quarantine(r) for r in rows]


def describe(q: Quarantine) -> str:
    """Why a set is quarantined, as the gate's reason says it."""
    since = q.since.isoformat(timespec="seconds")
    return f"rolled back out of {q.wave} by {q.actor} at {since}: {q.reason}"


def _quarantine(row: asyncpg.Record) -> Quarantine:
    return Quarantine(
        row["pipeline"], row["app_sha"], row["wave"], row["actor"], row["reason"], row["created_at"]
    )

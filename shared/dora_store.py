"""The SQL of DORA metrics (docs/dora.md): the facts ``shared/dora.py`` computes from, read
from the tables that hold them, and the two facts no other table keeps, written.

Read only, besides ``dora_app_commits`` and ``dora_wave_history`` (migration 0014, written by
the promoter's DORA feed): ``image_sets`` (announcements), ``promotions`` (rollbacks), the
status-tracker's ``auto_commits`` and ``commit_checks`` (evictions), and the failed
``verification_runs`` (when that table exists).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from waveline.shared.dora import Announced, Fact, Failure, WaveRan
from waveline.shared.models.images import AnnouncedCommit
from waveline.shared.models.waves import WaveStatus


async def record_commit_times(pool: asyncpg.Pool, batch: Sequence[AnnouncedCommit]) -> None:
    """Keep the app commit time of each announcement that carries one (the first kept)."""
    sent = [a for a in batch if a.app_committed_at is not None]
    if not sent:
        return
    await pool.execute(
        "INSERT INTO dora_app_commits (pipeline, app_sha, committed_at)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])"
        " ON CONFLICT DO NOTHING",
        [a.pipeline for a in sent],
        [a.app_sha for a in sent],
        [a.app_committed_at for a in sent],
    )


async def record_wave_statuses(pool: asyncpg.Pool, batch: Sequence[WaveStatus]) -> None:
    """Keep every wave status (a redelivered one once, by its event id and time)."""
    if not batch:
        return
    await pool.execute(
        "INSERT INTO dora_wave_history (event_id, pipeline, wave, state, app_sha, at)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::timestamptz[]) ON CONFLICT DO NOTHING",
        [s.event_id for s in batch],
        [s.pipeline for s in batch],
        [s.wave for s in batch],
        [s.state for s in batch],
        [s.app_sha for s in batch],
        [s.at for s in batch],
    )


async def load_facts(
    pool: asyncpg.Pool, pipelines: Sequence[str], until: datetime | None = None
) -> list[Fact]:
    """Every fact about ``pipelines`` up to ``until`` (all of history: a window's numbers
    depend on what the waves ran before it)."""
    facts: list[Fact] = []
    async with pool.acquire() as conn:
        for row in await conn.fetch(
            "SELECT i.pipeline, i.app_sha, i.received_at, c.committed_at FROM image_sets i"
            " LEFT JOIN dora_app_commits c ON c.pipeline = i.pipeline AND c.app_sha = i.app_sha"
            " WHERE i.pipeline = ANY($1::text[])"
            " AND ($2::timestamptz IS NULL OR i.received_at <= $2)",
            list(pipelines),
            until,
        ):
            facts.append(
                Announced(row["pipeline"], row["app_sha"], row["received_at"], row["committed_at"])
            )
        for row in await conn.fetch(
            "SELECT pipeline, wave, state, app_sha, at FROM dora_wave_history"
            " WHERE pipeline = ANY($1::text[]) AND ($2::timestamptz IS NULL OR at <= $2)",
            list(pipelines),
            until,
        ):
            if row["state"] == "running" and row["app_sha"] is not None:
                facts.append(WaveRan(row["pipeline"], row["wave"], row["app_sha"], row["at"]))
            elif row["state"] == "failing":
                facts.append(
                    Failure(row["pipeline"], row["wave"], "failed", row["at"], row["app_sha"])
                )
        for row in await conn.fetch(
            "SELECT pipeline, wave, created_at FROM promotions"
            " WHERE kind = 'rollback' AND pipeline = ANY($1::text[])"
            " AND ($2::timestamptz IS NULL OR created_at <= $2)",
            list(pipelines),
            until,
        ):
            # The set rolled back from is the one the wave ran then (app_sha None).
            facts.append(Failure(row["pipeline"], row["wave"], "rollback", row["created_at"]))
        # An eviction happens when a required check turns red: its time is the red report's
        # (the commit's own time when the check is gone).
        for row in await conn.fetch(
            "SELECT a.pipeline, a.wave, a.app_sha, coalesce((SELECT max(c.reported_at)"
            " FROM commit_checks c WHERE c.repo = a.repo AND c.sha = a.sha"
            " AND c.state IN ('failure', 'error')), a.created_at) AS at"
            " FROM auto_commits a WHERE a.state = 'red' AND a.pipeline = ANY($1::text[])",
            list(pipelines),
        ):
            if row["wave"] is not None and (until is None or row["at"] <= until):
                facts.append(
                    Failure(row["pipeline"], row["wave"], "evicted", row["at"], row["app_sha"])
                )
        # Failed verifications (migration 0015's table, when the schema has it).
        if await conn.fetchval("SELECT to_regclass('verification_runs') IS NOT NULL"):
            for row in await conn.fetch(
                "SELECT pipeline, wave, app_sha, finished_at FROM verification_runs"
                " WHERE status = 'failed' AND finished_at IS NOT NULL"
                " AND pipeline = ANY($1::text[])"
                " AND ($2::timestamptz IS NULL OR finished_at <= $2)",
                list(pipelines),
                until,
            ):
                facts.append(
                    Failure(
                        row["pipeline"],
                        row["wave"],
                        "verification",
                        row["finished_at"],
                        row["app_sha"],
                    )
                )
    return facts

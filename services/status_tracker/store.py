"""The status-tracker's deploy-report and wave tables (SQL only): where commits sit on
watched, each target's last counted report, held reports, the last published state of each
wave. Each function is one round trip, whatever the number of reports or waves it is given.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]


@dataclass(frozen=True)
class Report:
    target: str
    revision: str
    phase: str
    health: str
    sync: str
    reported_at: datetime


async def record_watched(conn: Conn, commits: Sequence[tuple[str, str]]) -> None:
    """``commits``: (repo, sha) where watched pointed, oldest first (a known one keeps its
    position; ``executemany`` runs them in order, so positions follow it)."""
    if commits:
        await conn.executemany(
            "INSERT INTO watched_commits (repo, sha) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            commits,
        )


async def watched_positions(
    pool: asyncpg.Pool, commits: Collection[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The position on watched of each of ``commits`` (repo, sha) Waveline saw there."""
    if not commits:
        return {}
    pairs = sorted(commits)
    rows = await pool.fetch(
        "SELECT w.repo, w.sha, w.position FROM unnest($1::text[], $2::text[]) AS p(repo, sha)"
        " JOIN watched_commits w ON w.repo = p.repo AND w.sha = p.sha",
        [repo for repo, _ in pairs],
        [sha for _, sha in pairs],
    )
    return {(r["repo"], r["sha"]): r["position"] for r in rows}


async def last_counted(
    pool: asyncpg.Pool, targets: Collection[str]
) -> dict[str, tuple[int | None, datetime]]:
    """(position, reported_at) of the last counted report of each of ``targets`` that has
    one."""
    rows = await pool.fetch(
        "SELECT target, position, reported_at FROM target_deploys WHERE target = ANY($1::text[])",
        sorted(targets),
    )
    return {r["target"]: (r["position"], r["reported_at"]) for r in rows}


async def hold(pool: asyncpg.Pool, reports: Sequence[Report]) -> None:
    """Keep ``reports`` until their revision is known (the latest per target and revision)."""
    await pool.executemany(
        "INSERT INTO held_deploys (target, revision, phase, health, sync, reported_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (target, revision) DO UPDATE"
        " SET phase = EXCLUDED.phase, health = EXCLUDED.health, sync = EXCLUDED.sync,"
        " reported_at = EXCLUDED.reported_at"
        " WHERE held_deploys.reported_at <= EXCLUDED.reported_at",
        [(r.target, r.revision, r.phase, r.health, r.sync, r.reported_at) for r in reports],
    )


async def count(pool: asyncpg.Pool, reports: Sequence[tuple[Report, int]]) -> set[str]:
    """Make each (report, position) its target's last counted report (at most one per
    target); returns the targets whose row changed. The guard repeats the rule in SQL: held
    reports are applied from the git-events consumer, which may run beside this one."""
    rows = await pool.fetch(
        "INSERT INTO target_deploys"
        " (target, revision, phase, health, sync, reported_at, position)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::timestamptz[], $7::bigint[])"
        " ON CONFLICT (target) DO UPDATE SET revision = EXCLUDED.revision,"
        " phase = EXCLUDED.phase, health = EXCLUDED.health, sync = EXCLUDED.sync,"
        " reported_at = EXCLUDED.reported_at, position = EXCLUDED.position"
        " WHERE target_deploys.position IS NULL"
        " OR target_deploys.position < EXCLUDED.position"
        " OR (target_deploys.position = EXCLUDED.position"
        "  AND target_deploys.reported_at <= EXCLUDED.reported_at)"
        " RETURNING target",
        [r.target for r, _ in reports],
        [r.revision for r, _ in reports],
        [r.phase for r, _ in reports],
        [r.health for r, _ in reports],
        [r.sync for r, _ in reports],
        [r.reported_at for r, _ in reports],
        [position for _, position in reports],
    )
    return {r["target"] for r in rows}


async def held_on(pool: asyncpg.Pool, commits: Collection[tuple[str, str]]) -> list[asyncpg.Record]:
    """The held reports about ``commits`` (repo, sha), now known on watched, with their
    repo and position, in watched order (so the last one applied is the latest)."""
    pairs = sorted(commits)
    return await pool.fetch(
        "SELECT p.repo, h.target, h.revision, h.phase, h.health, h.sync, h.reported_at,"
        " w.position FROM unnest($1::text[], $2::text[]) AS p(repo, sha)"
        " JOIN held_deploys h ON h.revision = p.sha"
        " JOIN watched_commits w ON w.repo = p.repo AND w.sha = p.sha"
        " ORDER BY w.position, h.reported_at",
        [repo for repo, _ in pairs],
        [sha for _, sha in pairs],
    )


async def unhold(pool: asyncpg.Pool, held: Collection[tuple[str, str]]) -> None:
    """Forget the held reports (target, revision)."""
    pairs = sorted(held)
    await pool.execute(
        "DELETE FROM held_deploys h USING unnest($1::text[], $2::text[]) AS p(target, revision)"
        " WHERE h.target = p.target AND h.revision = p.revision",
        [target for target, _ in pairs],
        [revision for _, revision in pairs],
    )


async def drop_expired(pool: asyncpg.Pool, hold: timedelta) -> list[Report]:
    """Forget the held reports held for longer than ``hold``; returns them."""
    rows = await pool.fetch(
        "DELETE FROM held_deploys WHERE held_at < now() - $1::interval"
        " RETURNING target, revision, phase, health, sync, reported_at",
        hold,
    )
    return [Report(**dict(row)) for row in rows]


async def wave_reports(
    pool: asyncpg.Pool, wanted: Sequence[tuple[str, str, str]]
) -> list[asyncpg.Record]:
    """``wanted``: (target, repo, wave key ``pipeline/wave``). Each target's last counted
    report with what the wave holds at its revision (``app_sha``, NULL: not a commit of
    ours), and the key it was asked for."""
    # Planned at 10,000 targets, a join of the wanted rows to either table was a hash join
    # over all of it: ``= ANY`` takes target_deploys through its key, and a subquery per
    # row commit_waves (every commit's waves: the biggest table here) through its own.
    return await pool.fetch(
        "SELECT p.key, d.target, d.revision, d.phase, d.health, d.sync, d.reported_at,"
        " d.position, (SELECT c.waves ->> p.key FROM commit_waves c"
        "  WHERE c.repo = p.repo AND c.sha = d.revision) AS app_sha"
        " FROM target_deploys d"
        " JOIN unnest($1::text[], $2::text[], $3::text[]) AS p(target, repo, key)"
        " ON p.target = d.target WHERE d.target = ANY($1::text[])",
        [t for t, _, _ in wanted],
        [r for _, r, _ in wanted],
        [k for _, _, k in wanted],
    )


async def wave_statuses(
    pool: asyncpg.Pool, waves: Collection[tuple[str, str]]
) -> dict[tuple[str, str], asyncpg.Record]:
    """The last published state of each of ``waves`` (pipeline, wave) that has one."""
    # Every wave of the pipelines (a few each), through the key's first column: a join to
    # the wanted pairs was planned as a scan of the whole table.
    rows = await pool.fetch(
        "SELECT pipeline, wave, state, app_sha, cfg_sha, lagging FROM wave_status"
        " WHERE pipeline = ANY($1::text[])",
        sorted({p for p, _ in waves}),
    )
    return {key: r for r in rows if (key := (r["pipeline"], r["wave"])) in waves}


async def set_lagging(pool: asyncpg.Pool, rows: Sequence[tuple[str, str, list[str]]]) -> None:
    """(pipeline, wave, lagging): who a wave still waits on, its state unchanged."""
    await pool.executemany(
        "UPDATE wave_status SET lagging = $3 WHERE pipeline = $1 AND wave = $2", rows
    )


async def save_statuses(
    pool: asyncpg.Pool,
    rows: Sequence[tuple[str, str, str, str | None, str | None, datetime, list[str]]],
) -> None:
    """(pipeline, wave, state, app_sha, cfg_sha, since, lagging): each wave's published
    state."""
    await pool.executemany(
        "INSERT INTO wave_status (pipeline, wave, state, app_sha, cfg_sha, since, lagging)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (pipeline, wave) DO UPDATE SET"
        " state = EXCLUDED.state, app_sha = EXCLUDED.app_sha, cfg_sha = EXCLUDED.cfg_sha,"
        " since = EXCLUDED.since, lagging = EXCLUDED.lagging",
        rows,
    )

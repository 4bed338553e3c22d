"""Read-only SQL of the pipeline view's newer parts: where ``watched`` stands on the
``auto`` line, which sets landed in which wave, and the last promotions (the timeline).

Reads the status-tracker's ``auto_commits`` and ``watched_commits``, the git-writer's
``evictions`` and ingest's ``set_attempts``, the promoter's
``promotions`` and ``image_sets`` and the notifier's ``deliveries``; never writes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

# The timeline lists this many promotions, newest change first.
TIMELINE = 10


async def watched_mark(pool: asyncpg.Pool, repo: str) -> datetime | None:
    """When the newest ``auto`` commit of ``repo`` that ``watched`` pointed at was
    recorded (view_rules.on_watched), or None."""
    mark: datetime | None = await pool.fetchval(
        "SELECT max(a.created_at) FROM watched_commits w"
        " JOIN auto_commits a ON a.repo = w.repo AND a.sha = w.sha WHERE w.repo = $1",
        repo,
    )
    return mark


async def commits_of(
    pool: asyncpg.Pool, repo: str, pipeline: str, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], datetime]:
    """``{(wave, app_sha): when its newest live commit on auto was recorded}`` for
    ``pairs``; evicted (red) and replaced commits do not count."""
    if not pairs:
        return {}
    rows = await pool.fetch(
        "SELECT wave, app_sha, max(created_at) AS at FROM auto_commits"
        " WHERE repo = $1 AND pipeline = $2 AND state IN ('pending', 'green')"
        " AND (wave, app_sha) IN (SELECT * FROM unnest($3::text[], $4::text[]))"
        " GROUP BY wave, app_sha",
        repo,
        pipeline,
        [w for w, _ in pairs],
        [a for _, a in pairs],
    )
    return {(r["wave"], r["app_sha"]): r["at"] for r in rows}


async def recent_promotions(pool: asyncpg.Pool, pipeline: str) -> list[asyncpg.Record]:
    """The last ``TIMELINE`` promotions changed, newest first, and the newest done
    promotion of each wave (what supersedes an older one), who announced each set."""
    return await pool.fetch(
        "WITH picked AS ((SELECT promotion_id FROM promotions WHERE pipeline = $1"
        " ORDER BY updated_at DESC LIMIT $2) UNION"
        " (SELECT DISTINCT ON (wave) promotion_id FROM promotions"
        " WHERE pipeline = $1 AND status = 'done' ORDER BY wave, created_at DESC))"
        " SELECT p.promotion_id, p.wave, p.from_wave, p.app_sha, p.kind, p.status,"
        " p.strategy, p.detail, p.created_at, p.updated_at, i.actor AS announced_by"
        " FROM promotions p JOIN picked USING (promotion_id)"
        " LEFT JOIN image_sets i ON i.pipeline = p.pipeline AND i.app_sha = p.app_sha"
        " ORDER BY p.updated_at DESC",
        pipeline,
        TIMELINE,
    )


async def evictions(pool: asyncpg.Pool, pipeline: str, limit: int = 5) -> list[dict[str, Any]]:
    """The pipeline's last commits evicted from ``auto`` (a required check failed), newest
    first: the set, its wave, the attempt evicted, and the newest attempt asked for since
    (None: not retried; ``waveline retry`` or announcing the set again makes one)."""
    rows = await pool.fetch(
        "SELECT e.sha, e.app_sha, e.wave, e.attempt, e.evicted_at,"
        " (SELECT max(a.attempt) FROM set_attempts a WHERE a.pipeline = e.pipeline"
        "  AND a.app_sha = e.app_sha AND a.attempt > e.attempt) AS retried_as"
        " FROM evictions e WHERE e.pipeline = $1 ORDER BY e.evicted_at DESC LIMIT $2",
        pipeline,
        limit,
    )
    return [
        {
            "sha": r["sha"],
            "app_sha": r["app_sha"],
            "wave": r["wave"],
            "attempt": r["attempt"],
            "at": r["evicted_at"].isoformat(timespec="seconds"),
            "retried_as": r["retried_as"],
        }
        for r in rows
    ]


def timeline_entry(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A timeline row, JSON-ready (times ISO to the second)."""
    return {
        "promotion_id": str(row["promotion_id"]),
        "kind": row["kind"],
        "wave": row["wave"],
        "from_wave": row["from_wave"],
        "app_sha": row["app_sha"],
        "status": row["status"],
        "strategy": row["strategy"],
        "detail": row["detail"],
        "announced_by": row["announced_by"],
        "created_at": row["created_at"].isoformat(timespec="seconds"),
        "at": row["updated_at"].isoformat(timespec="seconds"),
    }


async def deliveries(pool: asyncpg.Pool, name: str, limit: int = 20) -> list[dict[str, Any]]:
    """The notifier's latest outbound deliveries for the pipeline, every attempt included
    (status code, latency, error)."""
    rows = await pool.fetch(
        "SELECT d.delivery_id, d.kind, d.target, d.event_type, d.state, d.attempts,"
        " d.promotion_id, d.created_at, coalesce(json_agg(json_build_object("
        " 'attempt', a.attempt, 'status_code', a.status_code, 'latency_ms', a.latency_ms,"
        " 'outcome', a.outcome, 'error', a.error, 'at', a.at) ORDER BY a.attempt)"
        " FILTER (WHERE a.attempt IS NOT NULL), '[]')::text AS tries"
        " FROM deliveries d LEFT JOIN delivery_attempts a ON a.delivery_id = d.delivery_id"
        " WHERE d.pipeline = $1 GROUP BY d.delivery_id ORDER BY d.created_at DESC LIMIT $2",
        name,
        limit,
    )
    return [
        {
            "delivery_id": str(r["delivery_id"]),
            "kind": r["kind"],
            "target": r["target"],
            "event_type": r["event_type"],
            "state": r["state"],
            "promotion_id": str(r["promotion_id"]) if r["promotion_id"] else None,
            "created_at": r["created_at"].isoformat(),
            "attempts": json.loads(r["tries"]),
        }
        for r in rows
    ]

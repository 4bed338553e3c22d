"""What ingest reads and writes to decide a retry after eviction (attempts.py): the
promoter's ``image_sets``, the git-writer's results and ``evictions``, the status-tracker's
``auto_commits`` (read only) and ingest's own ``set_attempts``. SQL only."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from waveline.services.git_writer.attempts import Place, SetFacts, command_id


@dataclass(frozen=True)
class KnownSet:
    facts: SetFacts
    images: dict[str, Any] = field(default_factory=dict)  # as first announced


async def known_set(
    pool: asyncpg.Pool, repo: str, pipeline: str, wave: str, app_sha: str, *, strategy: str
) -> KnownSet:
    """The facts of the set: its newest attempt and where that attempt is."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT images::text AS images,"
            " (SELECT max(attempt) FROM set_attempts a WHERE a.pipeline = $1 AND a.app_sha = $2)"
            " AS attempt FROM image_sets WHERE pipeline = $1 AND app_sha = $2",
            pipeline,
            app_sha,
        )
        if row is None:
            return KnownSet(SetFacts(announced=False))
        attempt = row["attempt"] or 1
        place = await _place_of(conn, repo, command_id(pipeline, wave, app_sha, attempt))
    return KnownSet(
        SetFacts(announced=True, attempt=attempt, place=place, strategy=strategy),
        json.loads(row["images"]),
    )


async def place_of(pool: asyncpg.Pool, repo: str, cid: uuid.UUID) -> Place:
    """Where the attempt whose command is ``cid`` is (a set known to be recorded, its
    newest attempt read with the announcement's facts: announce_store.py)."""
    async with pool.acquire() as conn:
        return await _place_of(conn, repo, cid)


async def _place_of(conn: Any, repo: str, cid: uuid.UUID) -> Place:
    facts = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM evictions WHERE event_id = $1) AS evicted,"
        " outcome, sha FROM (SELECT 1) one"
        " LEFT JOIN git_command_results r ON r.command_id = $1",
        cid,
    )
    assert facts is not None
    verdict = await _verdict(conn, repo, facts["sha"])
    return _place(facts["evicted"], facts["outcome"], verdict)


# Replays (an earlier commit evicted) give a commit new shas; followed this many times.
MAX_REPLAYS = 20


async def _verdict(conn: Any, repo: str, sha: str | None) -> str | None:
    """The status-tracker's verdict on ``sha`` or the commit its replay made (None: not
    judged or not seen yet)."""
    for _ in range(MAX_REPLAYS):
        if sha is None:
            return None
        # A pending commit is on watched once a later commit of auto was fast-forwarded.
        row = await conn.fetchrow(
            "SELECT CASE WHEN c.state = 'pending' AND EXISTS (SELECT 1 FROM auto_commits n"
            " WHERE n.repo = c.repo AND n.state = 'green' AND n.created_at > c.created_at)"
            " THEN 'green' ELSE c.state END AS state, c.replaced_by"
            " FROM auto_commits c WHERE c.repo = $1 AND c.sha = $2",
            repo,
            sha,
        )
        if row is None or row["state"] != "replaced":
            return None if row is None else str(row["state"])
        sha = row["replaced_by"]
    return None


def _place(evicted: bool, outcome: str | None, verdict: str | None) -> Place:
    if evicted:
        return "evicted"
    if outcome is None:
        return "requested"
    if outcome in {"rejected", "failed"}:
        return "refused"
    # Committed: the status-tracker's verdict on its commit says where it is (a no-op made
    # no commit: an earlier one holds the set, on auto or watched).
    if verdict == "green":
        return "watched"
    if verdict == "red":
        return "evicting"
    return "auto"


async def record_attempt(
    pool: asyncpg.Pool,
    pipeline: str,
    app_sha: str,
    attempt: int,
    cid: uuid.UUID,
    *,
    actor: str | None,
    source: str,
) -> None:
    await pool.execute(
        "INSERT INTO set_attempts (pipeline, app_sha, attempt, command_id, actor, source)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        pipeline,
        app_sha,
        attempt,
        cid,
        actor,
        source,
    )


@dataclass(frozen=True)
class Attempt:
    """One attempt of a set: who asked (None for the first, the announcement's), how
    (``announce``, ``retry``; ``first``), when, and when its commit was evicted."""

    attempt: int
    actor: str | None
    source: str
    requested_at: datetime | None
    evicted_at: datetime | None


async def attempts_in(
    pool: asyncpg.Pool, pipeline: str, first_wave: str, *, limit: int = 20
) -> dict[str, list[Attempt]]:
    """The attempts of the ``limit`` sets of ``pipeline`` most recently evicted from
    ``first_wave`` or retried,
    oldest attempt first, for status views (the dashboard, ``waveline status``): a set whose
    last attempt has ``evicted_at`` waits for a retry."""
    rows = await pool.fetch(
        "WITH sets AS (SELECT app_sha, max(at) AS last FROM ("
        "  SELECT app_sha, evicted_at AS at FROM evictions WHERE pipeline = $1 AND wave = $3"
        "  UNION ALL SELECT app_sha, requested_at FROM set_attempts WHERE pipeline = $1) t"
        "  GROUP BY app_sha ORDER BY last DESC LIMIT $2),"
        " tried AS (SELECT a.app_sha, a.attempt, a.actor, a.source, a.requested_at,"
        "  a.command_id FROM set_attempts a JOIN sets USING (app_sha) WHERE a.pipeline = $1)"
        " SELECT s.app_sha, e.attempt, NULL::text AS actor, 'first' AS source,"
        "  NULL::timestamptz AS requested_at, e.evicted_at, s.last FROM sets s"
        "  JOIN evictions e ON e.pipeline = $1 AND e.app_sha = s.app_sha AND e.attempt = 1"
        "  AND e.wave = $3"
        " UNION ALL SELECT t.app_sha, t.attempt, t.actor, t.source, t.requested_at,"
        "  (SELECT min(e.evicted_at) FROM evictions e WHERE e.event_id = t.command_id),"
        "  s.last FROM tried t JOIN sets s USING (app_sha)"
        " ORDER BY last DESC, app_sha, attempt",
        pipeline,
        limit,
        first_wave,
    )
    found: dict[str, list[Attempt]] = {}
    for r in rows:
        found.setdefault(r["app_sha"], []).append(
            Attempt(r["attempt"], r["actor"], r["source"], r["requested_at"], r["evicted_at"])
        )
    return found

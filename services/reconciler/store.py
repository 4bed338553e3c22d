"""The reconciler's SQL. It owns no table: it reads the status-tracker's (docs/architecture.md,
The database) to learn what still waits for a webhook. Ages are computed by PostgreSQL, on
the clock that stamped the rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from waveline.services.reconciler.rules import PendingCommit, TargetView


async def pending_commits(
    pool: asyncpg.Pool, repos: Sequence[str], older_than_s: float
) -> list[PendingCommit]:
    """Commits of ``auto`` in ``repos`` without a verdict, recorded over ``older_than_s``
    ago, and not yet on the watched branch: one made before the repo's newest green commit
    came onto it with that commit's fast-forward, so its own checks no longer matter (and
    polling them would spend the forge's rate limit for nothing)."""
    rows = await pool.fetch(
        "SELECT t.repo, t.sha, EXTRACT(EPOCH FROM now() - t.created_at)::float8 AS age"
        " FROM auto_commits t WHERE t.state = 'pending' AND t.repo = ANY($1::text[])"
        " AND t.created_at <= now() - make_interval(secs => $2)"
        # Not strictly earlier (the status-tracker records a poll's commits in one statement,
        # with one time): a sibling of the green commit may come after it on auto.
        " AND t.created_at >= coalesce((SELECT max(n.created_at) FROM auto_commits n"
        "  WHERE n.repo = t.repo AND n.state = 'green'), '-infinity')",
        list(repos),
        older_than_s,
    )
    return [PendingCommit(r["repo"], r["sha"], r["age"]) for r in rows]


async def known_checks(pool: asyncpg.Pool, repo: str, sha: str) -> dict[str, str]:
    """The status-tracker's latest state per check context of one commit."""
    rows = await pool.fetch(
        "SELECT context, state FROM commit_checks WHERE repo = $1 AND sha = $2", repo, sha
    )
    return {r["context"]: r["state"] for r in rows}


@dataclass(frozen=True)
class Tip:
    """Where Waveline last saw a repository's watched branch, how long ago, and which set
    each wave (``pipeline/wave``) holds there."""

    repo: str
    sha: str
    age_s: float
    waves: dict[str, str]


async def watched_tips(pool: asyncpg.Pool, repos: Sequence[str]) -> dict[str, Tip]:
    """The latest watched commit of each repo whose holdings are known."""
    rows = await pool.fetch(
        "SELECT DISTINCT ON (w.repo) w.repo, w.sha, c.waves,"
        " EXTRACT(EPOCH FROM now() - w.recorded_at)::float8 AS age"
        " FROM watched_commits w JOIN commit_waves c ON c.repo = w.repo AND c.sha = w.sha"
        " WHERE w.repo = ANY($1::text[]) ORDER BY w.repo, w.position DESC",
        list(repos),
    )
    return {r["repo"]: Tip(r["repo"], r["sha"], r["age"], _waves(r["waves"])) for r in rows}


async def running_sets(pool: asyncpg.Pool) -> dict[tuple[str, str], str]:
    """(pipeline, wave) → the set the status-tracker last said the wave runs."""
    rows = await pool.fetch(
        "SELECT pipeline, wave, app_sha FROM wave_status WHERE state = 'running'"
    )
    return {(r["pipeline"], r["wave"]): r["app_sha"] for r in rows}


async def target_views(
    pool: asyncpg.Pool, repo: str, pipeline: str, wave: str, targets: Sequence[str]
) -> dict[str, TargetView]:
    """Each target's last counted report, with the set ``pipeline/wave`` holds at the
    reported revision."""
    rows = await pool.fetch(
        "SELECT d.target, d.sync, d.health, c.waves ->> $3 AS app_sha"
        " FROM target_deploys d LEFT JOIN commit_waves c ON c.repo = $2 AND c.sha = d.revision"
        " WHERE d.target = ANY($1::text[])",
        list(targets),
        repo,
        f"{pipeline}/{wave}",
    )
    return {
        r["target"]: TargetView(r["target"], r["app_sha"], r["sync"], r["health"]) for r in rows
    }


def _waves(value: object) -> dict[str, str]:
    doc = json.loads(value) if isinstance(value, str) else value
    if not isinstance(doc, dict):
        return {}
    return {str(k): str(v) for k, v in doc.items() if isinstance(v, str)}

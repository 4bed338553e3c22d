"""The SQL of deliveries that change nothing: where a check's commit stands (read from the
status-tracker's ``auto_commits`` and the notifier's ``pull_requests``, never written), and
``ignored_deliveries``, the last such delivery per repository and reason (ingest writes it;
``waveline status`` reads it through ``pipeline_view``)."""

from __future__ import annotations

from typing import Any

import asyncpg

from waveline.services.ingest.deliveries import db_call
from waveline.services.ingest.ignore_rules import Ignored, clip

# What ``waveline status`` lists per pipeline, at most.
LISTED = 10


async def commit_state(pool: asyncpg.Pool, repo: str, sha: str) -> str | None:
    """``auto_commits.state`` of ``sha`` in ``repo``; ``pull_request`` for the head of a
    promotion pull request; None when Waveline does not know the commit (yet). GitHub
    names a commit by its full sha: a shorter one is not matched."""
    state: str | None = await db_call(
        pool.fetchval(
            "SELECT state FROM auto_commits WHERE repo = $1 AND sha = $2"
            " UNION ALL SELECT 'pull_request' FROM pull_requests"
            " WHERE repo = $1 AND head_sha = $2 LIMIT 1",
            repo,
            sha,
        )
    )
    return state


async def record(pool: asyncpg.Pool, ignored: Ignored, event: str) -> None:
    """Upsert ``ignored`` as the last delivery of its repository and reason."""
    repo = ignored.repo or (ignored.forge_name or "").lower()
    await db_call(
        pool.execute(
            "INSERT INTO ignored_deliveries (repo, reason, known, event, context, sha, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (repo, reason) DO UPDATE SET"
            " known = EXCLUDED.known, event = EXCLUDED.event, context = EXCLUDED.context,"
            " sha = EXCLUDED.sha, detail = EXCLUDED.detail, at = now()",
            repo,
            ignored.reason,
            ignored.repo is not None,
            clip(event, 64),
            ignored.context,
            ignored.sha,
            clip(ignored.detail, 2000),
        )
    )


def name_part(forge_name: str) -> str:
    """The repository's own name, without owner or path: ``cfg-app`` of ``acme/cfg-app``."""
    return forge_name.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git").lower()


async def latest(pool: asyncpg.Pool, repo: str, forge_name: str) -> list[dict[str, Any]]:
    """The last ignored deliveries of config repo ``repo`` (one per reason), and those about
    unknown repositories with the same own name as ``forge_name`` (a mirror's url or a
    path prefix made Waveline derive another owner/name: what ``forge_name`` fixes);
    newest first."""
    rows = await pool.fetch(
        "SELECT repo, known, reason, event, context, sha, detail, at FROM ignored_deliveries"
        " WHERE (known AND repo = $1)"
        " OR (NOT known AND lower(substring(repo FROM '[^/]*$')) = $2)"
        " ORDER BY at DESC LIMIT $3",
        repo,
        name_part(forge_name),
        LISTED,
    )
    return [
        {
            "repo": r["repo"],
            "known": r["known"],
            "reason": r["reason"],
            "event": r["event"],
            "context": r["context"],
            "sha": r["sha"],
            "detail": r["detail"],
            "at": r["at"].isoformat(),
        }
        for r in rows
    ]

"""The reconciler's reads against the real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.infra import Infra
from tests.support import fresh_schema
from waveline.services.reconciler.store import pending_commits

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    async with fresh_schema(infra.database_url) as (_, pool):
        yield pool


async def commit(pool: asyncpg.Pool, repo: str, sha: str, state: str, minutes_ago: int) -> None:
    await pool.execute(
        "INSERT INTO auto_commits (repo, sha, state, created_at) VALUES ($1, $2, $3, $4)",
        repo,
        sha,
        state,
        datetime.now(UTC) - timedelta(minutes=minutes_ago),
    )


async def test_pending_commits_already_on_watched_are_not_polled(pool: asyncpg.Pool) -> None:
    """A commit made before the repo's newest green one reached the watched branch with it:
    its checks no longer decide anything, so the reconciler does not spend the forge's rate
    limit on them. Pending ones after it, and in another repo, are polled."""
    await commit(pool, "cfg-app", "a" * 40, "pending", 10)  # older than the green: on watched
    await commit(pool, "cfg-app", "b" * 40, "green", 8)
    await commit(pool, "cfg-app", "c" * 40, "pending", 5)
    await commit(pool, "cfg-app", "d" * 40, "pending", 0)  # too young to poll yet
    await commit(pool, "other", "e" * 40, "pending", 10)  # no green commit in its repo

    found = await pending_commits(pool, ["cfg-app", "other"], older_than_s=60)

    assert sorted((c.repo, c.sha) for c in found) == [("cfg-app", "c" * 40), ("other", "e" * 40)]

"""The services' Postgres pool: a released connection goes back without the reset round
trip, and still never carries an open transaction to its next user."""

from __future__ import annotations

import asyncpg
import pytest

from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.db import create_pool
from waveline.shared.runtime import bootstrap


@pytest.mark.timeout(60)
async def test_release_sends_nothing_and_rolls_back_an_open_transaction(
    settings: Settings,
) -> None:
    pool = await create_pool(settings, min_size=1, max_size=1)
    sent: list[str] = []
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE pool_probe (n int)")
            conn.add_query_logger(lambda record: sent.append(record.query))
            await conn.execute("BEGIN")  # left open on purpose, as a crashed handler would
            await conn.execute("INSERT INTO pool_probe VALUES (1)")
        # asyncpg's cleanup rolls the open transaction back; the reset query is not sent.
        assert not any("RESET ALL" in q or "UNLISTEN" in q for q in sent), sent
        assert "ROLLBACK" in sent
        async with pool.acquire() as again:
            assert again is not None
            assert await again.fetchval("SELECT count(*) FROM pool_probe") == 0
            # Same session: the schema still comes from the connection's parameters.
            assert await again.fetchval("SHOW search_path") == settings.database_schema
        # One statement through the pool, one round trip: nothing follows it on release.
        sent.clear()
        assert await pool.fetchval("SELECT 41 + 1") == 42
        assert sent == ["SELECT 41 + 1"]
    finally:
        await pool.close()


@pytest.mark.timeout(60)
async def test_the_default_reset_would_have_sent_the_reset_query(settings: Settings) -> None:
    """What the pool above avoids: asyncpg's default release sends the reset query after
    every statement (so the first test fails if the pool loses its ``reset``)."""
    pool = await asyncpg.create_pool(
        settings.database_url.get_secret_value(), min_size=1, max_size=1
    )
    sent: list[str] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: sent.append(record.query))
            await conn.execute("SELECT 1")
        assert any("RESET ALL" in q for q in sent), sent
    finally:
        await pool.close()


@pytest.mark.timeout(60)
async def test_a_started_service_has_its_connections_open_already(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    """No image set after start waits for a backend to be forked and authenticated."""
    sized = settings.model_copy(update={"database_pool_min_size": 3, "database_pool_max_size": 4})
    runtime = bootstrap("pool-probe", sized, config, secrets)
    await runtime.start()
    try:
        # Connected, not just room for them (asyncpg counts only connected holders).
        assert (runtime.pool.get_size(), runtime.pool.get_max_size()) == (3, 4)
        assert runtime.pool.get_idle_size() == 3
    finally:
        await runtime.stop()

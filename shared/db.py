"""Postgres: one pool per process, every connection pinned to the configured schema."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg

from waveline.shared.config import Settings

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 7_402_145_031


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a pool connection gets on release besides asyncpg's own cleanup (which rolls
    back a transaction left open and drops listeners): nothing.

    By default asyncpg also sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release, and ``pool.execute``/``fetch`` await that before they
    return: two round trips per statement. Waveline's pooled code keeps no session state
    (no advisory lock, cursor outside a transaction, LISTEN or SET; the schema is a
    connection parameter), so there is nothing to reset. Code that adds such state must
    use a connection of its own, as ``migrate`` does."""
    del conn


async def create_pool(settings: Settings, *, min_size: int = 1, max_size: int = 5) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.database_url.get_secret_value(),
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": settings.database_schema},
        command_timeout=30,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def migrate(settings: Settings) -> list[str]:
    """Apply the SQL files in ``migrations/`` in order, once each; returns those applied."""
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    schema = settings.database_schema
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for path in sorted(MIGRATIONS.glob("*.sql")):
                if path.stem in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text(encoding="utf-8"))
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES ($1)", path.stem
                    )
                applied.append(path.stem)
                logger.info("applied migration %s to schema %s", path.stem, schema)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied

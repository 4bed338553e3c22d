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


async def create_pool(settings: Settings, *, min_size: int = 1, max_size: int = 5) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.database_url.get_secret_value(),
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": settings.database_schema},
        command_timeout=30,
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

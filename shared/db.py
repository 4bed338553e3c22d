"""Postgres: one pool per process, every connection pinned to the configured schema."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg

from waveline.shared.config import Settings
from waveline.shared.dbtls import VERIFYING, DatabaseTls, check_database_tls, weak_tls
from waveline.shared.errors import ConfigError

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


T = TypeVar("T")


def check_url(settings: Settings) -> DatabaseTls:
    """``ConfigError`` unless ``WAVELINE_DATABASE_URL`` may be used as it is (the rules are
    in shared/dbtls.py): a host off this machine needs an explicit ``sslmode``, and a
    ``sslrootcert`` it will load must be a file we can read."""
    tls = check_database_tls(settings.database_url.get_secret_value(), os.environ)
    # asyncpg loads it from sslmode=require up, and a missing file is FileNotFoundError, an
    # OSError: taken for an outage and waited out for ever.
    loads_ca = tls.sslmode in ("require", *VERIFYING) and tls.sslrootcert is not None
    if loads_ca and not os.access(Path(str(tls.sslrootcert)).expanduser(), os.R_OK):
        raise ConfigError(
            f"WAVELINE_DATABASE_URL: sslrootcert {tls.sslrootcert} is not a readable file"
        )
    if (warning := weak_tls(tls)) is not None:
        logger.warning("%s", warning)
    return tls


async def _first_connect(tls: DatabaseTls, connect: Callable[[], Awaitable[T]]) -> T:
    """``connect()``, with the failures no wait can mend turned into ``ConfigError``: a
    server certificate the CA does not vouch for (or one for another host name), and client
    settings asyncpg cannot use. Both are OSError or InterfaceError, which shared/outage.py
    takes for an outage; here, at start, they stop the process with the reason instead.
    Once a pool runs, the same failure on a new connection is waited out like any outage
    (the messages being handled are not at fault)."""
    try:
        return await connect()
    except ssl.SSLCertVerificationError as exc:
        raise ConfigError(
            f"PostgreSQL at {tls.where} (sslmode={tls.sslmode}): its TLS certificate was "
            f"refused: {exc.verify_message or exc.reason}. The CA in sslrootcert "
            f"({tls.sslrootcert or 'none given'}) does not vouch for it, or (verify-full) it "
            "is not for this host name; fix sslrootcert or the server's certificate"
        ) from exc
    except asyncpg.exceptions.ClientConfigurationError as exc:
        raise ConfigError(f"WAVELINE_DATABASE_URL: {exc}") from exc


async def create_pool(settings: Settings, *, min_size: int = 1, max_size: int = 5) -> asyncpg.Pool:
    """The process's pool. ``ConfigError`` for a URL the TLS rules refuse or a server
    certificate that does not verify (see ``check_url`` and ``_first_connect``)."""
    tls = check_url(settings)
    pool = await _first_connect(
        tls,
        lambda: asyncpg.create_pool(
            settings.database_url.get_secret_value(),
            min_size=min_size,
            max_size=max_size,
            server_settings={"search_path": settings.database_schema},
            command_timeout=30,
            reset=_keep_session,
        ),
    )
    assert pool is not None
    return pool


async def migrate(settings: Settings) -> list[str]:
    """Apply the SQL files in ``migrations/`` in order, once each; returns those applied.
    Refuses what ``create_pool`` refuses, the same way."""
    tls = check_url(settings)
    conn = await _first_connect(
        tls, lambda: asyncpg.connect(settings.database_url.get_secret_value())
    )
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

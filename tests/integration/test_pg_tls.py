"""PostgreSQL over TLS, through shared/db.py as the services connect: a private PostgreSQL
(never the suite's shared one) with ssl=on and a hostssl-only pg_hba, its certificate for
127.0.0.1/localhost signed by a throwaway CA made here. ``sslmode=verify-full`` with that CA
migrates and opens a pool over TLS; with another CA the start is refused at once with a
ConfigError that says why (not waited out as an outage); without TLS the server refuses.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from tests.kafka_certs import make_authority, make_leaf
from waveline.devstack import postgres
from waveline.devstack.paths import StackPaths
from waveline.shared.config import Settings
from waveline.shared.db import create_pool, migrate
from waveline.shared.errors import ConfigError
from waveline.shared.outage import is_retriable


@dataclass(frozen=True)
class TlsServer:
    port: int
    ca: Path
    wrong_ca: Path

    def url(self, sslmode: str, rootcert: Path | None = None, host: str = "127.0.0.1") -> str:
        url = f"postgresql://waveline@{host}:{self.port}/waveline?sslmode={sslmode}"
        return url + (f"&sslrootcert={rootcert}" if rootcert is not None else "")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    where = tmp_path_factory.mktemp("pg-tls")
    ca = make_authority(where / "certs", "pg")
    wrong = make_authority(where / "certs", "other")
    leaf = make_leaf(ca, where / "certs", "pg-server", hosts=("127.0.0.1", "localhost"))
    shared = StackPaths.from_env()
    paths = StackPaths(
        root=shared.root,
        run=where / "stack",
        cache=shared.cache,
        kafka_port=0,
        kafka_controller_port=0,
        pg_port=_free_port(),
        http_port=0,
    )
    postgres.start(paths, postgres.ServerTls(leaf.cert, leaf.key, hostssl_only=True))
    try:
        yield TlsServer(paths.pg_port, ca.cert, wrong.cert)
    finally:
        postgres.stop(paths)


def _settings(url: str) -> Settings:
    return Settings(database_url=SecretStr(url), database_schema=f"tls_{uuid.uuid4().hex[:12]}")


@pytest.mark.timeout(60)
async def test_verify_full_with_the_right_ca_migrates_and_pools_over_tls(
    server: TlsServer,
) -> None:
    settings = _settings(server.url("verify-full", server.ca))
    async with asyncio.timeout(30):
        applied = await migrate(settings)
        assert applied, "a fresh schema gets every migration"
        pool = await create_pool(settings, min_size=1, max_size=1)
        try:
            used_tls = await pool.fetchval(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
            assert used_tls is True
            # The pool's connections use the migrated schema, as the services' do.
            assert await pool.fetchval("SELECT count(*) FROM schema_migrations") == len(applied)
        finally:
            await pool.close()


@pytest.mark.timeout(60)
async def test_the_host_name_counts_too(server: TlsServer) -> None:
    """The certificate names 127.0.0.1 and localhost; both verify under verify-full."""
    settings = _settings(server.url("verify-full", server.ca, host="localhost"))
    async with asyncio.timeout(30):
        pool = await create_pool(settings, min_size=1, max_size=1)
        await pool.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sslmode", ["verify-full", "verify-ca"])
async def test_a_wrong_ca_is_refused_at_once_with_the_reason(
    server: TlsServer, sslmode: str
) -> None:
    settings = _settings(server.url(sslmode, server.wrong_ca))
    started = time.monotonic()
    async with asyncio.timeout(15):
        with pytest.raises(ConfigError) as pool_error:
            await create_pool(settings)
        with pytest.raises(ConfigError) as migrate_error:
            await migrate(settings)
    assert time.monotonic() - started < 10
    for info in (pool_error, migrate_error):
        message = str(info.value)
        assert "certificate" in message and "sslrootcert" in message
        assert str(server.wrong_ca) in message
        # What Runtime.start asks before waiting: this is not an outage.
        assert not is_retriable(info.value)
    # Nothing was created on the server under that schema.
    good = _settings(server.url("verify-full", server.ca))
    conn = await asyncpg.connect(good.database_url.get_secret_value())
    try:
        exists = await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", settings.database_schema
        )
    finally:
        await conn.close()
    assert exists == 0


@pytest.mark.timeout(60)
async def test_the_server_refuses_clients_without_tls(server: TlsServer) -> None:
    """The hostssl-only pg_hba of the private server: sslmode=disable gets no session, so
    the test above could not have passed without TLS."""
    async with asyncio.timeout(15):
        with pytest.raises(asyncpg.exceptions.InvalidAuthorizationSpecificationError):
            await create_pool(_settings(server.url("disable")))

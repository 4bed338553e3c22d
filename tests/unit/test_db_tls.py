"""PostgreSQL URL rules (shared/dbtls.py, shared/db.py): a host off this machine must name its
sslmode, loopback and unix sockets keep asyncpg's default, and the refusal says how to opt
out without quoting the password."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from waveline.shared.config import Settings
from waveline.shared.db import check_url, create_pool, migrate
from waveline.shared.dbtls import check_database_tls, database_tls, is_local, weak_tls
from waveline.shared.errors import ConfigError

PASSWORD = "pg-pa55-word-xyz"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://waveline@127.0.0.1:55432/waveline",
        "postgresql://waveline@127.0.0.2/waveline",
        "postgresql://waveline@localhost/waveline",
        "postgresql://waveline@LOCALHOST:5432/waveline",
        "postgresql://waveline@[::1]:5432/waveline",
        "postgresql://waveline@%2Fvar%2Frun%2Fpostgresql/waveline",
        "postgresql:///waveline?host=/var/run/postgresql",
        "postgresql:///waveline",
        "postgresql://127.0.0.1:5432,localhost:5433/waveline",
    ],
)
def test_loopback_and_sockets_need_no_sslmode(url: str) -> None:
    tls = check_database_tls(url, {})
    assert tls.remote == ()
    assert tls.sslmode is None
    assert weak_tls(tls) is None


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://waveline:{PASSWORD}@db.example.com:5432/waveline",
        f"postgres://waveline:{PASSWORD}@10.0.0.7/waveline",
        f"postgresql://waveline:{PASSWORD}@[2001:db8::1]:5432/waveline",
        # One remote host among local ones is enough to refuse.
        f"postgresql://waveline:{PASSWORD}@127.0.0.1:5432,db.example.com:5432/waveline",
        f"postgresql://waveline:{PASSWORD}@/waveline?host=db.example.com",
    ],
)
def test_a_remote_host_without_sslmode_is_refused_with_the_way_out(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_database_tls(url, {})
    message = str(info.value)
    assert "sets no sslmode" in message
    assert "sslmode=verify-full" in message
    assert "sslmode=disable" in message
    assert PASSWORD not in message
    assert not info.value.retriable


@pytest.mark.parametrize("mode", ["disable", "require", "verify-ca", "verify-full", "prefer"])
def test_an_explicit_sslmode_is_the_operators_choice(mode: str) -> None:
    url = f"postgresql://u:{PASSWORD}@db.example.com/w?sslmode={mode}&sslrootcert=/ca.pem"
    tls = check_database_tls(url, {})
    assert tls.sslmode == mode
    assert tls.sslrootcert == "/ca.pem"
    warning = weak_tls(tls)
    if mode.startswith("verify"):
        assert warning is None
    else:
        assert warning is not None and "not checked" in warning
        assert PASSWORD not in warning


def test_pgsslmode_counts_as_explicit_and_pghost_as_the_host() -> None:
    env = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/ca.pem"}
    tls = check_database_tls("postgresql://u@db.example.com/w", env)
    assert (tls.sslmode, tls.sslrootcert) == ("verify-full", "/etc/ca.pem")
    # The URL's own value wins, as in asyncpg.
    assert database_tls("postgresql://u@db.example.com/w?sslmode=require", env).sslmode == "require"
    with pytest.raises(ConfigError, match=r"db\.internal"):
        check_database_tls("postgresql:///w", {"PGHOST": "db.internal"})


def test_an_unknown_sslmode_is_refused() -> None:
    with pytest.raises(ConfigError, match="verify-full"):
        check_database_tls("postgresql://u@127.0.0.1/w?sslmode=verify_fully", {})


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("/tmp/sock", True),
        ("", True),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("db", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_is_local(host: str, local: bool) -> None:
    assert is_local(host) is local


def _settings(url: str) -> Settings:
    return Settings(database_url=SecretStr(url))


async def test_the_pool_and_migrations_refuse_before_connecting() -> None:
    """Nothing listens on db.invalid: a refusal that tried to connect would not be a
    ConfigError but a name that does not resolve."""
    settings = _settings(f"postgresql://u:{PASSWORD}@db.invalid:5432/w")
    async with asyncio.timeout(5):
        with pytest.raises(ConfigError, match="sets no sslmode") as info:
            await create_pool(settings)
        assert PASSWORD not in str(info.value)
        with pytest.raises(ConfigError, match="sets no sslmode"):
            await migrate(settings)


def test_a_missing_ca_file_is_refused_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    url = f"postgresql://u@db.example.com/w?sslmode=verify-full&sslrootcert={missing}"
    with pytest.raises(ConfigError, match="not a readable file"):
        check_url(_settings(url))
    missing.write_text("-----BEGIN CERTIFICATE-----\n")
    assert check_url(_settings(url)).sslrootcert == str(missing)


def test_a_weak_mode_for_a_remote_host_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    check_url(_settings(f"postgresql://u:{PASSWORD}@db.example.com/w?sslmode=require"))
    assert "certificate is not checked" in caplog.text
    assert PASSWORD not in caplog.text

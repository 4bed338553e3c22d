"""Whether a PostgreSQL URL may be used as it is: the TLS rules (docs/security.md,
"PostgreSQL: TLS"). Pure: a URL and the environment in, the facts or a ``ConfigError`` out;
``shared/db.py`` applies them before it connects.

A URL that names a host off this machine must say how it wants TLS (``sslmode``): asyncpg's
default, ``prefer``, takes whatever the server offers, an unencrypted session or a
certificate nobody checked. Loopback and unix sockets keep that default.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from waveline.shared.errors import ConfigError

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# The modes in which asyncpg checks the server's certificate against a CA.
VERIFYING = ("verify-ca", "verify-full")

OPT_OUT = (
    "add sslmode=verify-full&sslrootcert=/path/to/ca.pem to WAVELINE_DATABASE_URL to require "
    "TLS and check the server's certificate (sslmode=require encrypts without checking who "
    "answers; sslmode=disable opts out of TLS knowingly)"
)


@dataclass(frozen=True)
class DatabaseTls:
    """What a database URL says about TLS. ``hosts`` are as the URL names them (for
    messages: never the userinfo); ``remote`` those not on this machine."""

    hosts: tuple[str, ...]
    remote: tuple[str, ...]
    sslmode: str | None
    sslrootcert: str | None

    @property
    def where(self) -> str:
        return ", ".join(self.hosts) or "the default socket"


def is_local(host: str) -> bool:
    """A unix socket directory, ``localhost`` or a loopback address."""
    if not host or host.startswith(("/", "@")) or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hosts(hostspec: str) -> list[tuple[str, str]]:
    """``host[:port]`` items of a comma-separated list, IPv6 in brackets, %-decoded."""
    found = []
    for item in filter(None, hostspec.split(",")):
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        found.append((urllib.parse.unquote(host), port))
    return found


def database_tls(url: str, env: Mapping[str, str]) -> DatabaseTls:
    """Read a ``postgresql://`` URL as asyncpg does: hosts from the netloc, else the
    ``host`` parameter, else ``PGHOST`` (else the local default); ``sslmode`` and
    ``sslrootcert`` from the query, else ``PGSSLMODE`` and ``PGSSLROOTCERT``."""
    parsed = urllib.parse.urlsplit(url)
    query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
    hostspec = parsed.netloc.rpartition("@")[2]
    hosts = _hosts(hostspec) or _hosts(query.get("host", "")) or _hosts(env.get("PGHOST", ""))
    named = tuple(f"{h}:{p}" if p else h for h, p in hosts)
    remote = tuple(n for n, (h, _) in zip(named, hosts, strict=True) if not is_local(h))
    return DatabaseTls(
        hosts=named,
        remote=remote,
        sslmode=query.get("sslmode") or env.get("PGSSLMODE") or None,
        sslrootcert=query.get("sslrootcert") or env.get("PGSSLROOTCERT") or None,
    )


def check_database_tls(url: str, env: Mapping[str, str]) -> DatabaseTls:
    """The URL's TLS facts, or ``ConfigError`` when it names a host off this machine and
    sets no ``sslmode``, or sets one asyncpg does not know."""
    tls = database_tls(url, env)
    if tls.sslmode is not None and tls.sslmode not in SSLMODES:
        raise ConfigError(
            f"WAVELINE_DATABASE_URL: sslmode={tls.sslmode!r} is not one of {', '.join(SSLMODES)}"
        )
    if tls.remote and tls.sslmode is None:
        raise ConfigError(
            f"WAVELINE_DATABASE_URL names PostgreSQL at {', '.join(tls.remote)}, off this "
            "machine, and sets no sslmode: the connection could go unencrypted or to a server "
            f"nobody checked. Refusing to start: {OPT_OUT}."
        )
    return tls


def weak_tls(tls: DatabaseTls) -> str | None:
    """Why a URL that passed ``check_database_tls`` still deserves a warning, if it does:
    a remote host with a mode that does not check the server's certificate."""
    if not tls.remote or tls.sslmode in VERIFYING:
        return None
    return (
        f"PostgreSQL at {', '.join(tls.remote)} with sslmode={tls.sslmode}: the server's "
        "certificate is not checked (sslmode=verify-full with sslrootcert checks it)"
    )

"""Who a bearer token is and what it may do, and which images a pipeline takes: pure rules
(docs/security.md, "Tokens, roles and actors" and "Dashboard and metrics").

The adapters are ``services/ingest/auth.py`` (HTTP: headers in, 401/403 out) and the
promoter's consumer of ``waveline.images`` (``allowed_images`` on the topic). Nothing here
does I/O or logs; secrets only enter as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from pydantic import SecretStr

from waveline.shared.config import Secrets, TokenRole, WavelineConfig
from waveline.shared.models.images import ImageRef

EVERY_PIPELINE = ("*",)
# A Host header: a bracketed IPv6 address or a name, then an optional port.
_HOST = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<name>[^:\[\]]+))(?::[0-9]{1,5})?")


@dataclass(frozen=True)
class Principal:
    """A configured token's identity: its name is the actor of what it does."""

    name: str
    role: TokenRole
    pipelines: tuple[str, ...]  # pipeline names or fnmatch globs

    def covers(self, pipeline: str) -> bool:
        return any(fnmatchcase(pipeline, pattern) for pattern in self.pipelines)


@dataclass(frozen=True)
class TokenEntry:
    principal: Principal
    digest: bytes  # SHA-256 of the token: every comparison is between equal lengths


@dataclass(frozen=True)
class Refusal:
    """Why a request is not allowed: the HTTP status and a message safe to return."""

    status: int
    reason: str


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_table(config: WavelineConfig, secrets: Secrets) -> tuple[TokenEntry, ...]:
    """Every configured inbound token with its principal, in the order that names the actor
    when one value is configured twice: ``auth.tokens`` in file order, then the single-token
    shorthands (``ci``, ``operator``, ``argocd`` on every pipeline; ``result:P`` on P)."""
    entries: list[TokenEntry] = []

    def add(
        name: str, role: TokenRole, pipelines: tuple[str, ...], value: SecretStr | None
    ) -> None:
        if value is not None and value.get_secret_value():
            principal = Principal(name, role, pipelines)
            entries.append(TokenEntry(principal, _digest(value.get_secret_value())))

    for token in config.auth.tokens:
        add(token.name, token.role, token.pipelines, secrets.get(token.token_env))
    add("ci", "ci", EVERY_PIPELINE, secrets.ci_token)
    add("operator", "operator", EVERY_PIPELINE, secrets.operator_token)
    add("argocd", "argocd", EVERY_PIPELINE, secrets.argocd_token)
    for name, pipeline in config.pipelines.items():
        add(f"result:{name}", "result", (name,), secrets.get(pipeline.result_token_env))
    return tuple(entries)


def resolve(table: Sequence[TokenEntry], sent: str) -> tuple[Principal, ...]:
    """The principals whose token is ``sent``. Compared with every entry, in constant time
    per entry and without stopping at a match, so timing tells nothing about which matched."""
    digest = _digest(sent)
    matches = [(hmac.compare_digest(entry.digest, digest), entry.principal) for entry in table]
    return tuple(principal for ok, principal in matches if ok)


def authorize(
    matches: Sequence[Principal],
    roles: tuple[TokenRole, ...],
    pipelines: Collection[str],
    what: str,
) -> Principal | Refusal:
    """The first of ``matches`` with one of ``roles`` that covers every one of ``pipelines``
    (none: no pipeline is concerned); else a 403 saying what is missing. ``what`` names the
    token expected ("CI token")."""
    if not matches:
        return Refusal(403, f"unknown token: not a configured {what}")
    with_role = [m for m in matches if m.role in roles]
    if not with_role:
        found = ", ".join(f"{m.name!r} ({m.role})" for m in matches)
        return Refusal(403, f"token {found} is not a {what}")
    for principal in with_role:
        if all(principal.covers(p) for p in pipelines):
            return principal
    names = ", ".join(repr(m.name) for m in with_role)
    return Refusal(403, f"token {names} may not act on pipeline(s) {sorted(pipelines)}")


def visible_pipelines(principals: Sequence[Principal], names: Sequence[str]) -> list[str]:
    """The pipelines of ``names`` any of ``principals`` covers, in their order."""
    return [name for name in names if any(p.covers(name) for p in principals)]


def images_refused(allowed: Sequence[str], images: Mapping[str, ImageRef]) -> dict[str, str]:
    """``{service: repository}`` of the images whose repository (registry/path, without tag
    or digest) matches none of ``allowed``; empty when ``allowed`` is (any image goes)."""
    if not allowed:
        return {}
    return {
        service: ref.repository
        for service, ref in images.items()
        if not any(fnmatchcase(ref.repository, pattern) for pattern in allowed)
    }


def loopback_host(host: str | None) -> bool:
    """True when a ``Host`` header names localhost, 127.0.0.1 or [::1], with or without a
    port; anything else (another name, a trailing dot, a bad port) is False."""
    match = _HOST.fullmatch(host or "")
    if match is None:
        return False
    if match["v6"] is not None:
        return match["v6"] == "::1"
    name = match["name"]
    return name.isascii() and name.lower() in {"localhost", "127.0.0.1"}

"""Bearer tokens to principals (rules: shared/auth_rules.py). Tokens are ``SecretStr`` and
never logged; the answer to a refused token never echoes it.

401 when no bearer token was sent; 403 for a token that is no configured one, one of
another role, or one used on a pipeline outside its scope. A handler asks ``caller`` who
sends the request (role checked) and then ``Caller.on`` for the pipelines it acts on; the
principal's name is the actor it records. No client-supplied actor is ever read.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web
from pydantic import SecretStr

from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.responses import ApiError
from waveline.shared.auth_rules import (
    Principal,
    Refusal,
    authorize,
    resolve,
    token_table,
    visible_pipelines,
)
from waveline.shared.config import TokenRole


def sent_token(request: web.Request, what: str) -> str:
    """The bearer token of the request; 401 when there is none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", f"send 'Authorization: Bearer <{what}>'")
    return token.strip()


def _allowed(decided: Principal | Refusal) -> Principal:
    if isinstance(decided, Refusal):
        raise ApiError(decided.status, "forbidden", decided.reason)
    return decided


@dataclass(frozen=True)
class Caller:
    """The principals a request's token resolved to, each of an accepted role."""

    matches: tuple[Principal, ...]
    roles: tuple[TokenRole, ...]
    what: str

    def on(self, *pipelines: str) -> Principal:
        """The principal acting on every one of ``pipelines``; 403 when out of its scope."""
        return _allowed(authorize(self.matches, self.roles, pipelines, self.what))

    def visible(self, names: list[str]) -> list[str]:
        """The pipelines of ``names`` any of the principals covers (the dashboard's)."""
        return visible_pipelines(self.matches, names)


def caller(request: web.Request, *roles: TokenRole, what: str) -> Caller:
    """Who sends ``request``: 401 without a token, 403 unless it is a configured token of
    one of ``roles``."""
    sent = sent_token(request, what)
    ctx = IngestContext.of(request)
    matches = resolve(token_table(ctx.runtime.config, ctx.runtime.secrets), sent)
    wanted = roles
    _allowed(authorize(matches, wanted, (), what))
    return Caller(tuple(m for m in matches if m.role in wanted), wanted, what)


def require_bearer(request: web.Request, expected: SecretStr | None, what: str) -> None:
    """One fixed secret (the metrics token): 401 when none was sent, 403 when it is wrong or
    none is configured."""
    token = sent_token(request, what)
    if expected is None:
        raise ApiError(403, "forbidden", f"no {what} is configured on this server")
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise ApiError(403, "forbidden", f"wrong {what}")

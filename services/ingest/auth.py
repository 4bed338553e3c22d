"""Bearer-token checks in constant time. Tokens are ``SecretStr`` and never logged."""

from __future__ import annotations

import hmac

from aiohttp import web
from pydantic import SecretStr

from waveline.services.ingest.responses import ApiError


def require_bearer(request: web.Request, expected: SecretStr | None, what: str) -> None:
    """401 when no bearer token was sent, 403 when it is wrong or none is configured."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", f"send 'Authorization: Bearer <{what}>'")
    if expected is None:
        raise ApiError(403, "forbidden", f"no {what} is configured on this server")
    if not hmac.compare_digest(token.strip().encode(), expected.get_secret_value().encode()):
        raise ApiError(403, "forbidden", f"wrong {what}")

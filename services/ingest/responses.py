"""JSON error answers: ``{"error": code, "detail": …}`` with the right status
(docs/architecture.md, HTTP API)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError


class ApiError(web.HTTPException):
    """Raised by handlers; rendered as the JSON error body by the middleware."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        self.status_code = status
        super().__init__()
        self.error = error
        self.detail = detail


def error_response(status: int, error: str, detail: Any = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


def validation_detail(exc: ValidationError) -> list[dict[str, str]]:
    """Field paths and reasons, without echoing the rejected input back."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "reason": err["msg"]}
        for err in exc.errors()
    ]

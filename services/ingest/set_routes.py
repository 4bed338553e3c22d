"""What the operator routes about one image set (``/v1/pipelines/{p}/sets/{app_sha}/…``:
retry, unquarantine) read before acting: the operator token covering the pipeline (its name
is the actor), the pipeline (404), the app sha (422) and an optional body with no field."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from waveline.services.ingest.auth import caller
from waveline.services.ingest.body import read_model
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.payloads import NoFields
from waveline.services.ingest.responses import ApiError
from waveline.shared.names import check_app_sha


@dataclass(frozen=True)
class SetRequest:
    ctx: IngestContext
    pipeline: str
    app_sha: str
    actor: str


async def set_request(request: web.Request) -> SetRequest:
    """The checked request, or the ApiError (401/403/404/422) that answers it."""
    ctx = IngestContext.of(request)
    name = request.match_info["pipeline"]
    operator = caller(request, "operator", what="operator token").on(name)
    if name not in ctx.runtime.config.pipelines:
        raise ApiError(404, "unknown_pipeline", f"no pipeline named {name!r}")
    app_sha = request.match_info["app_sha"]
    try:
        check_app_sha(app_sha)
    except ValueError as exc:
        raise ApiError(422, "invalid_field", [{"field": "app_sha", "reason": str(exc)}]) from exc
    await read_model(request, NoFields, optional=True)
    return SetRequest(ctx, name, app_sha, operator.name)

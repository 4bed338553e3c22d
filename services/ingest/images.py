"""``POST /v1/images`` and ``POST /v1/pipelines/{p}/images``: CI announces an image set."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from waveline.services.ingest.auth import require_bearer
from waveline.services.ingest.body import read_json, validate
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.responses import ApiError
from waveline.shared.models.base import utcnow
from waveline.shared.models.images import ImageSetAnnounced


def _validate(ctx: IngestContext, doc: dict[str, Any]) -> ImageSetAnnounced:
    pipeline = doc.get("pipeline")
    if isinstance(pipeline, str) and pipeline not in ctx.runtime.config.pipelines:
        raise ApiError(404, "unknown_pipeline", f"no pipeline named {pipeline!r}")
    for server_field in ("event_id", "received_at", "source"):
        doc.pop(server_field, None)
    return validate(ImageSetAnnounced, doc).model_copy(
        update={"event_id": uuid.uuid4(), "received_at": utcnow(), "source": "http"}
    )


async def _accept(ctx: IngestContext, announced: ImageSetAnnounced, route: str) -> web.Response:
    assert announced.event_id is not None
    await ctx.publish(announced, ctx.runtime.topics.images, key=announced.pipeline, route=route)
    return web.json_response({"event_id": str(announced.event_id)}, status=202)


async def post_images(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    require_bearer(request, ctx.runtime.secrets.ci_token, "CI token")
    doc = await read_json(request)
    return await _accept(ctx, _validate(ctx, doc), "images")


async def post_pipeline_images(request: web.Request) -> web.Response:
    """Seed 001's bare ``{svc: {"Digest", "Tag"}}`` object, exactly as its CI script writes it."""
    ctx = IngestContext.of(request)
    require_bearer(request, ctx.runtime.secrets.ci_token, "CI token")
    pipeline = request.match_info["pipeline"]
    if pipeline not in ctx.runtime.config.pipelines:
        raise ApiError(404, "unknown_pipeline", f"no pipeline named {pipeline!r}")
    app_sha = request.query.get("app_sha")
    if not app_sha:
        raise ApiError(
            422, "invalid_field", [{"field": "app_sha", "reason": "query parameter required"}]
        )
    images = await read_json(request)
    doc: dict[str, Any] = {"pipeline": pipeline, "app_sha": app_sha, "images": images}
    return await _accept(ctx, _validate(ctx, doc), "pipeline_images")

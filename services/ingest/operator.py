"""Operator endpoints: approve, hold, release, rollback a wave; read a pipeline's state."""

from __future__ import annotations

import uuid

from aiohttp import web

from waveline.services.ingest.auth import require_bearer
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.pipeline_view import pipeline_snapshot
from waveline.services.ingest.responses import ApiError
from waveline.shared.config import PipelineConfig
from waveline.shared.models.base import utcnow
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.names import check_app_sha


def _pipeline(ctx: IngestContext, request: web.Request) -> tuple[str, PipelineConfig]:
    name = request.match_info["pipeline"]
    pipeline = ctx.runtime.config.pipelines.get(name)
    if pipeline is None:
        raise ApiError(404, "unknown_pipeline", f"no pipeline named {name!r}")
    return name, pipeline


async def wave_action(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    require_bearer(request, ctx.runtime.secrets.operator_token, "operator token")
    name, pipeline = _pipeline(ctx, request)
    wave, action = request.match_info["wave"], request.match_info["action"]
    if pipeline.wave(wave) is None:
        raise ApiError(404, "unknown_wave", f"pipeline {name!r} has no wave {wave!r}")
    to: str | None = None
    actor = request.headers.get("X-Waveline-Actor", "operator")[:100]
    if action == "rollback":
        doc = await ctx.read_json_object(request)
        to = doc.get("to")
        if not isinstance(to, str):
            raise ApiError(
                422, "invalid_field", [{"field": "to", "reason": "app_sha or 'previous'"}]
            )
        if to != "previous":
            try:
                check_app_sha(to)
            except ValueError as exc:
                raise ApiError(422, "invalid_field", [{"field": "to", "reason": str(exc)}]) from exc
    command = OperatorCommand(
        event_id=uuid.uuid4(),
        pipeline=name,
        wave=wave,
        action=action,
        to=to,
        actor=actor,
        issued_at=utcnow(),
    )
    await ctx.publish(command, ctx.runtime.topics.operator, key=name, route="operator")
    return web.json_response({"event_id": str(command.event_id)}, status=202)


async def pipeline_state(request: web.Request) -> web.Response:
    """``GET /v1/pipelines/{p}``: the snapshot of ``pipeline_view`` (operator token)."""
    ctx = IngestContext.of(request)
    require_bearer(request, ctx.runtime.secrets.operator_token, "operator token")
    name, pipeline = _pipeline(ctx, request)
    return web.json_response(await pipeline_snapshot(ctx.runtime.pool, name, pipeline))

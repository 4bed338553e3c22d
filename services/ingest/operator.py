"""Operator endpoints: approve, hold, release, rollback a wave; read a pipeline's state."""

from __future__ import annotations

import uuid

from aiohttp import web

from waveline.services.ingest.auth import caller
from waveline.services.ingest.body import read_model
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.freeze_http import read_approval, record_break_glass
from waveline.services.ingest.gate_sets import gate_subject
from waveline.services.ingest.payloads import Rollback
from waveline.services.ingest.pipeline_view import pipeline_snapshot
from waveline.services.ingest.responses import ApiError
from waveline.shared.config import PipelineConfig
from waveline.shared.models.base import utcnow
from waveline.shared.models.operator import OperatorCommand


def _pipeline(ctx: IngestContext, request: web.Request) -> tuple[str, PipelineConfig]:
    name = request.match_info["pipeline"]
    pipeline = ctx.runtime.config.pipelines.get(name)
    if pipeline is None:
        raise ApiError(404, "unknown_pipeline", f"no pipeline named {name!r}")
    return name, pipeline


async def wave_action(request: web.Request) -> web.Response:
    """approve, hold or release; a body, if sent, must be a JSON object (nothing is read)."""
    return await _command(request, None)


async def rollback(request: web.Request) -> web.Response:
    """Roll the wave back to ``to``: ``previous`` or an app sha (body required)."""
    return await _command(request, Rollback)


async def _command(request: web.Request, body: type[Rollback] | None) -> web.Response:
    ctx = IngestContext.of(request)
    # The actor is the token's name; a client-sent actor header is not read.
    operator = caller(request, "operator", what="operator token").on(request.match_info["pipeline"])
    name, pipeline = _pipeline(ctx, request)
    wave = request.match_info["wave"]
    if pipeline.wave(wave) is None:
        raise ApiError(404, "unknown_wave", f"pipeline {name!r} has no wave {wave!r}")
    actor = operator.name
    glass, hold_too = None, False
    if body is None:
        action, to = request.match_info["action"], None
        glass = await read_approval(request, action)  # approve: a break-glass, if any
    else:
        asked = await read_model(request, body)
        action, to, hold_too = "rollback", asked.to, asked.hold
    # The set (and hold) the command is about, fixed now: docs/security.md.
    subject = await gate_subject(ctx.runtime.pool, name, wave, action)
    command = OperatorCommand(
        event_id=uuid.uuid4(),
        pipeline=name,
        wave=wave,
        action=action,
        to=to,
        actor=actor,
        issued_at=utcnow(),
        app_sha=subject.app_sha,
        hold_id=subject.hold_id,
    )
    broke = None if glass is None else await record_break_glass(request, command, glass)
    await ctx.publish(command, ctx.runtime.topics.operator, key=name, route="operator")
    answer: dict[str, object] = {"event_id": str(command.event_id)}
    if hold_too:
        # After the rollback on the same key: the promoter applies them in this order.
        held = await gate_subject(ctx.runtime.pool, name, wave, "hold")
        hold = command.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "action": "hold",
                "to": None,
                "app_sha": held.app_sha,
                "hold_id": held.hold_id,
            }
        )
        await ctx.publish(hold, ctx.runtime.topics.operator, key=name, route="operator")
        answer["hold_event_id"] = str(hold.event_id)
    if broke is not None:
        answer["break_glass"] = broke
    if command.app_sha is not None:
        answer["app_sha"] = command.app_sha
    return web.json_response(answer, status=202)


async def pipeline_state(request: web.Request) -> web.Response:
    """``GET /v1/pipelines/{p}``: the snapshot of ``pipeline_view`` (operator token)."""
    ctx = IngestContext.of(request)
    caller(request, "operator", what="operator token").on(request.match_info["pipeline"])
    name, pipeline = _pipeline(ctx, request)
    forge_name = ctx.runtime.config.repos[pipeline.repo].full_name()
    snapshot = await pipeline_snapshot(ctx.runtime.pool, name, pipeline, forge_name=forge_name)
    return web.json_response(snapshot)

"""Operator endpoints of manual freezes and break-glass (docs/gates.md, Freeze windows).

``POST /v1/freeze``, ``/v1/pipelines/{p}/freeze`` and ``/v1/pipelines/{p}/waves/{w}/freeze``
(body ``{"reason"}``) stop promotions into every wave, a pipeline's or one wave until the
matching ``unfreeze`` lifts them; ``GET /v1/freezes`` lists those in force. An operator token
covering the pipelines concerned (every configured pipeline for the whole line) is required;
its name is recorded as the actor, as for approvals. A break-glass is an approval sent with
``{"break_glass": {"reason"}}`` (``operator.py``): recorded here before the command goes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from waveline.services.ingest.auth import caller
from waveline.services.ingest.body import read_model
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.deliveries import db_call
from waveline.services.ingest.payloads import Body, NoFields
from waveline.services.ingest.responses import ApiError
from waveline.services.promoter import freeze_store
from waveline.shared.auth_rules import Principal
from waveline.shared.models.operator import OperatorCommand

_REASON = Field(min_length=1, max_length=500, pattern=r"\S", description="why (recorded)")


class FreezeBody(Body):
    """``POST …/freeze``: why the line stops (required, recorded with the token's name)."""

    reason: str = _REASON


class BreakGlassBody(Body):
    reason: str = _REASON


class ApproveBody(Body):
    """``POST …/waves/{w}/approve``: ``break_glass`` lets the approved set through a freeze
    (hold and release read nothing)."""

    break_glass: BreakGlassBody | None = None


def _scope(request: web.Request) -> tuple[str | None, str | None, Principal]:
    """The pipeline and wave of the path (None, None: the whole line) and the operator
    acting on them; 404 for an unknown pipeline or wave."""
    ctx = IngestContext.of(request)
    operator = caller(request, "operator", what="operator token")
    pipelines = ctx.runtime.config.pipelines
    name = request.match_info.get("pipeline")
    if name is None:
        return None, None, operator.on(*pipelines)
    principal = operator.on(name)
    pipeline = pipelines.get(name)
    if pipeline is None:
        raise ApiError(404, "unknown_pipeline", f"no pipeline named {name!r}")
    wave = request.match_info.get("wave")
    if wave is not None and pipeline.wave(wave) is None:
        raise ApiError(404, "unknown_wave", f"pipeline {name!r} has no wave {wave!r}")
    return name, wave, principal


async def freeze(request: web.Request) -> web.Response:
    """Freeze (201, the freeze recorded)."""
    pipeline, wave, principal = _scope(request)
    body = await read_model(request, FreezeBody)
    pool = IngestContext.of(request).runtime.pool
    stored = await db_call(freeze_store.freeze(pool, pipeline, wave, body.reason, principal.name))
    return web.json_response({"freeze": stored.to_json()}, status=201)


async def unfreeze(request: web.Request) -> web.Response:
    """Lift the freezes of exactly this scope (200, those lifted, possibly none, and those
    still in force that stop some wave of it)."""
    pipeline, wave, principal = _scope(request)
    await read_model(request, NoFields, optional=True)
    pool = IngestContext.of(request).runtime.pool
    lifted = await db_call(freeze_store.lift(pool, pipeline, wave, principal.name))
    remaining = await db_call(freeze_store.in_force(pool, pipeline))
    if wave is not None:
        remaining = [s for s in remaining if s.freeze.wave in {None, wave}]
    return web.json_response(
        {
            "lifted": [s.to_json() for s in lifted],
            "in_force": [s.to_json() for s in remaining],
        }
    )


async def list_freezes(request: web.Request) -> web.Response:
    """The freezes in force that concern a pipeline the token covers (and the whole
    line's)."""
    ctx = IngestContext.of(request)
    operator = caller(request, "operator", what="operator token")
    visible = set(operator.visible(list(ctx.runtime.config.pipelines)))
    found = await db_call(freeze_store.in_force(ctx.runtime.pool))
    shown = [s for s in found if s.freeze.pipeline is None or s.freeze.pipeline in visible]
    return web.json_response({"freezes": [s.to_json() for s in shown]})


async def read_approval(request: web.Request, action: str) -> BreakGlassBody | None:
    """The optional body of approve, hold or release: an approval's break-glass, if any."""
    if action != "approve":
        await read_model(request, NoFields, optional=True)
        return None
    return (await read_model(request, ApproveBody, optional=True)).break_glass


async def record_break_glass(
    request: web.Request, command: OperatorCommand, glass: BreakGlassBody
) -> dict[str, str]:
    """Record the break-glass of ``command`` (an approval naming its set) before it is
    published: the gate may only let the set through once it is on record. A command whose
    publish then fails leaves its record (made with a valid token and a reason)."""
    assert command.app_sha is not None  # an approval names its set
    pool = IngestContext.of(request).runtime.pool
    record = await db_call(
        freeze_store.record_break_glass(
            pool,
            command.event_id,
            pipeline=command.pipeline,
            wave=command.wave,
            app_sha=command.app_sha,
            reason=glass.reason,
            actor=command.actor,
        )
    )
    return {"reason": record.reason, "actor": record.actor}


def add_routes(app: web.Application) -> None:
    for prefix in ("/v1", "/v1/pipelines/{pipeline}", "/v1/pipelines/{pipeline}/waves/{wave}"):
        app.router.add_post(f"{prefix}/freeze", freeze)
        app.router.add_post(f"{prefix}/unfreeze", unfreeze)
    app.router.add_get("/v1/freezes", list_freezes)


# --- /openapi.json --------------------------------------------------------------------------

_FREEZE = {
    "type": "object",
    "required": ["freeze_id", "scope", "pipeline", "wave", "reason", "actor", "created_at"],
    "properties": {
        "freeze_id": {"type": "string", "format": "uuid"},
        "scope": {"enum": ["all", "pipeline", "wave"]},
        "pipeline": {"type": ["string", "null"]},
        "wave": {"type": ["string", "null"]},
        "reason": {"type": "string"},
        "actor": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
_FREEZES = {"type": "array", "items": _FREEZE}


def _answer(description: str, **properties: Any) -> dict[str, Any]:
    schema = {"type": "object", "required": list(properties), "properties": properties}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def approve_body_schema() -> dict[str, Any]:
    """``ApproveBody``'s schema with its nested model inlined (the document's bodies carry
    no ``$defs``)."""
    schema = ApproveBody.model_json_schema()
    nested = schema.pop("$defs")["BreakGlassBody"]
    schema["properties"]["break_glass"] = {
        "anyOf": [nested, {"type": "null"}],
        "default": None,
        "description": "approve only: let the set through a freeze, with the reason recorded",
    }
    return schema


def openapi_paths(
    post: Any, get: Any, json_body: Any, path: Any, bearer: list[dict[str, list[str]]]
) -> dict[str, Any]:
    """The paths of these endpoints, built with ``openapi.py``'s helpers."""
    pipeline, wave = path("pipeline"), path("wave")
    scopes = {
        "/v1": ("every pipeline (a token covering every configured one)", []),
        "/v1/pipelines/{pipeline}": ("every wave of the pipeline", [pipeline]),
        "/v1/pipelines/{pipeline}/waves/{wave}": ("the wave", [pipeline, wave]),
    }
    paths: dict[str, Any] = {}
    for prefix, (what, parameters) in scopes.items():
        codes = (401, 403, 404) if parameters else (401, 403)
        paths[f"{prefix}/freeze"] = post(
            f"freeze {what}: no promotion into it starts until unfrozen (an operator token;"
            " its name is recorded with the reason)",
            json_body(FreezeBody.model_json_schema()),
            {"201": _answer("frozen", freeze=_FREEZE)},
            *codes,
            parameters=parameters or None,
        )
        paths[f"{prefix}/unfreeze"] = post(
            f"lift the freezes of {what} made at this same scope (those lifted, possibly"
            " none, and those still in force over it)",
            json_body({"type": "object", "description": "nothing is read"}, required=False),
            {"200": _answer("lifted", lifted=_FREEZES, in_force=_FREEZES)},
            *codes,
            parameters=parameters or None,
        )
    paths["/v1/freezes"] = get(
        "the manual freezes in force over the pipelines the operator token covers",
        _answer("freezes in force", freezes=_FREEZES),
        401,
        403,
        security=bearer,
    )
    return paths

"""``POST /v1/pipelines/{p}/waves/{w}/promotions/{id}/result``: an external system reports
how a webhook promotion ended.

Accepted with an operator token or a result token (the pipeline's own ``result_token_env``
or a ``result`` token of ``auth.tokens``) covering the pipeline. The promotion must
exist, belong to that pipeline and wave, and travel by webhook; a second report for a
promotion that already ended answers 409. The report goes to ``waveline.operator`` (action
``result``), where the promoter completes or fails the promotion.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from waveline.services.ingest.auth import caller
from waveline.services.ingest.body import read_model
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.payloads import PromotionResult
from waveline.services.ingest.responses import ApiError
from waveline.services.promoter.rules import is_terminal
from waveline.shared.models.base import utcnow
from waveline.shared.models.operator import OperatorCommand


async def promotion_result(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    name, wave = request.match_info["pipeline"], request.match_info["wave"]
    reporter = caller(request, "result", "operator", what="operator or result token").on(name)
    actor = reporter.name
    pipeline = ctx.runtime.config.pipelines.get(name)
    if pipeline is None:
        raise ApiError(404, "unknown_pipeline", f"no pipeline named {name!r}")
    if pipeline.wave(wave) is None:
        raise ApiError(404, "unknown_wave", f"pipeline {name!r} has no wave {wave!r}")
    try:
        pid = uuid.UUID(request.match_info["promotion"])
    except ValueError as exc:
        raise ApiError(404, "unknown_promotion", "promotion id is not a UUID") from exc
    report = await read_model(request, PromotionResult)
    result, detail = report.status, report.detail
    row = await ctx.runtime.pool.fetchrow(
        "SELECT status, strategy FROM promotions"
        " WHERE promotion_id = $1 AND pipeline = $2 AND wave = $3",
        pid,
        name,
        wave,
    )
    if row is None:
        raise ApiError(404, "unknown_promotion", f"no promotion {pid} into {name}/{wave}")
    if row["strategy"] != "webhook":
        raise ApiError(409, "conflict", f"promotion {pid} goes by {row['strategy']}, not webhook")
    if is_terminal(row["status"]):
        raise ApiError(409, "conflict", f"promotion {pid} already ended: {row['status']}")
    command = OperatorCommand(
        event_id=uuid.uuid5(pid, f"result/{result}"),
        pipeline=name,
        wave=wave,
        action="result",
        actor=actor,
        promotion_id=pid,
        result=result,
        detail=detail,
        issued_at=utcnow(),
    )
    await ctx.publish(command, ctx.runtime.topics.operator, key=name, route="result")
    return web.json_response({"event_id": str(command.event_id)}, status=202)

"""Operator endpoints: approve, hold, release, rollback a wave; read a pipeline's state."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from waveline.services.ingest.auth import require_bearer
from waveline.services.ingest.context import IngestContext
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
    ctx = IngestContext.of(request)
    require_bearer(request, ctx.runtime.secrets.operator_token, "operator token")
    name, pipeline = _pipeline(ctx, request)
    pool = ctx.runtime.pool
    status = {
        r["wave"]: r
        for r in await pool.fetch(
            "SELECT wave, state, app_sha, cfg_sha, since FROM wave_status WHERE pipeline = $1", name
        )
    }
    held = {
        r["wave"]
        for r in await pool.fetch("SELECT wave FROM wave_gates WHERE pipeline = $1 AND held", name)
    }
    promotions = await pool.fetch(
        "SELECT p.promotion_id, p.wave, p.from_wave, p.app_sha, p.status, p.cfg_sha, r.since,"
        " a.promotion_id IS NOT NULL AS approved, i.images"
        " FROM promotions p"
        " LEFT JOIN wave_runs r ON r.pipeline = p.pipeline AND r.wave = p.from_wave"
        "  AND r.app_sha = p.app_sha"
        " LEFT JOIN approvals a ON a.promotion_id = p.promotion_id"
        " LEFT JOIN image_sets i ON i.pipeline = p.pipeline AND i.app_sha = p.app_sha"
        " WHERE p.pipeline = $1 AND p.status IN ('waiting', 'requested', 'blocked')"
        " ORDER BY p.created_at",
        name,
    )
    now = utcnow()
    waves: list[dict[str, Any]] = []
    for wave in pipeline.waves:
        row = status.get(wave.name)
        gate: dict[str, Any] = {"held": wave.name in held}
        pending = [p for p in promotions if p["wave"] == wave.name]
        for p in pending:
            if p["status"] == "waiting" and p["since"] is not None:
                remaining = (p["since"] + wave.gate.bake - now).total_seconds()
                gate["bake_remaining_s"] = max(0.0, round(remaining, 1))
                gate["awaiting_approval"] = wave.gate.approval and not p["approved"]
        waves.append(
            {
                "name": wave.name,
                "targets": list(wave.targets),
                "state": row["state"] if row else "unknown",
                "app_sha": row["app_sha"] if row else None,
                "cfg_commit": row["cfg_sha"] if row else None,
                "since": row["since"].isoformat() if row else None,
                "gate": gate,
                "promotions": [
                    {
                        "promotion_id": str(p["promotion_id"]),
                        "from_wave": p["from_wave"],
                        "app_sha": p["app_sha"],
                        "status": p["status"],
                        "images": json.loads(p["images"]) if p["images"] else None,
                    }
                    for p in pending
                ],
            }
        )
    commits = await pool.fetch(
        "SELECT a.sha, a.wave, a.app_sha, a.state,"
        " coalesce(json_object_agg(c.context, c.state) FILTER (WHERE c.context IS NOT NULL),"
        " '{}')::text AS checks"
        " FROM auto_commits a LEFT JOIN commit_checks c ON c.repo = a.repo AND c.sha = a.sha"
        " WHERE a.repo = $1 AND a.state = 'pending' GROUP BY a.sha, a.wave, a.app_sha, a.state,"
        " a.created_at ORDER BY a.created_at",
        pipeline.repo,
    )
    return web.json_response(
        {
            "pipeline": name,
            "repo": pipeline.repo,
            "waves": waves,
            "pending_commits": [
                {
                    "sha": c["sha"],
                    "wave": c["wave"],
                    "app_sha": c["app_sha"],
                    "checks": json.loads(c["checks"]),
                }
                for c in commits
            ],
        }
    )

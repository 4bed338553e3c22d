"""Liveness, readiness (Kafka and Postgres reachable) and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from waveline.services.ingest.auth import require_bearer
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.openapi import document
from waveline.shared.health import dependencies


async def healthz(request: web.Request) -> web.Response:
    del request
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await dependencies(IngestContext.of(request).runtime)
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics; with ``WAVELINE_METRICS_TOKEN`` set, only for that bearer token."""
    ctx = IngestContext.of(request)
    if ctx.runtime.settings.metrics_token is not None:
        require_bearer(request, ctx.runtime.settings.metrics_token, "metrics token")
    body = generate_latest(ctx.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    del request
    return web.json_response(document())

"""Liveness, readiness (Kafka and Postgres reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.openapi import document


async def healthz(request: web.Request) -> web.Response:
    del request
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    checks: dict[str, str] = {}
    try:
        kafka_ok = await ctx.runtime.broker.ping(timeout=2.0)
        checks["kafka"] = "ok" if kafka_ok else "unreachable"
    except Exception as exc:  # readiness reports any failure rather than raising it
        checks["kafka"] = f"error: {type(exc).__name__}"
    try:
        async with asyncio.timeout(2.0):
            await ctx.runtime.pool.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    body = generate_latest(ctx.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    del request
    return web.json_response(document())

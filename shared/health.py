"""The consumers' health endpoint: ``/healthz`` (liveness), ``/readyz``, ``/metrics``.

Served on ``WAVELINE_HEALTH_HOST:WAVELINE_HEALTH_PORT`` when the port is set (ingest serves
the same paths on its API port). Liveness fails only when a part of the service is stuck
(``Runtime.add_live_check``): an orchestrator restarting the process is then the cure.
Readiness fails while Kafka or PostgreSQL do not answer, a consumer does not hold its
partitions yet (``joining``: its group's join or a rebalance) or waits out an outage, and
says what it waits for and since when: restarting does not cure that, so liveness stays
green meanwhile.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

RUNTIME_KEY = web.AppKey("runtime", Runtime)
STARTED_KEY = web.AppKey("started", asyncio.Event)
PING_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    stuck = request.app[RUNTIME_KEY].not_live()
    if stuck:
        return web.json_response({"live": False, "stuck": stuck}, status=503)
    return web.json_response({"live": True})


async def dependencies(runtime: Runtime) -> dict[str, str]:
    """Whether Kafka and PostgreSQL answer now."""
    checks: dict[str, str] = {}
    try:
        ok = await runtime.broker.ping(timeout=PING_TIMEOUT_S)
        checks["kafka"] = "ok" if ok else "unreachable"
    except Exception as exc:  # readiness reports any failure rather than raising it
        checks["kafka"] = f"error: {type(exc).__name__}"
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await runtime.pool.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"error: {type(exc).__name__}"
    return checks


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    checks = await dependencies(runtime)
    waiting = runtime.waits.current()
    started = request.app[STARTED_KEY].is_set()
    joining = runtime.joining()
    ready = started and not waiting and not joining and all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {
        "ready": ready,
        "started": started,
        "joining": joining,
        "checks": checks,
        "waiting": waiting,
    }
    return web.json_response(body, status=200 if ready else 503)


def metrics_refusal(request: web.Request, token: SecretStr | None) -> web.Response | None:
    """None when ``request`` may read the metrics: no token is configured, or it sends it
    as its bearer token (compared in constant time); else the 401 or 403 answer."""
    if token is None:
        return None
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not sent.strip():
        return web.json_response(
            {"error": "unauthorized", "detail": "send 'Authorization: Bearer <metrics token>'"},
            status=401,
        )
    if not hmac.compare_digest(sent.strip().encode(), token.get_secret_value().encode()):
        return web.json_response(
            {"error": "forbidden", "detail": "wrong metrics token"}, status=403
        )
    return None


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    refused = metrics_refusal(request, runtime.settings.metrics_token)
    if refused is not None:
        return refused
    body = generate_latest(runtime.waits.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start(runtime: Runtime, started: asyncio.Event) -> web.AppRunner | None:
    """Serve the health endpoint when ``settings.health_port`` is set; the caller cleans the
    returned runner up."""
    port = runtime.settings.health_port
    if port is None:
        return None
    app = web.Application()
    app[RUNTIME_KEY] = runtime
    app[STARTED_KEY] = started
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, runtime.settings.health_host, port).start()
    logger.info("%s health on http://%s:%d", runtime.service, runtime.settings.health_host, port)
    return runner

"""``GET /``: the dashboard page of the waves (docs/security.md, Dashboard and metrics).

One self-contained HTML page (inline CSS, no scripts, no external assets; built in
``dashboard_html``) listing every pipeline of the config: its waves as stages (state, image
set with tags and digests, config commit, why the gate is closed and until when), the last
promotions, and Waveline's commits on ``auto`` still awaiting checks. It refreshes itself
every 5 seconds. Every value that comes from data is passed through ``html.escape``.

Access: an operator token (the page shows the pipelines it covers). Without one, only when
``WAVELINE_DASHBOARD_OPEN=loopback``, and then only for a request from a loopback address
that carries no proxy header and whose ``Host`` names localhost, 127.0.0.1 or [::1]: a
reverse proxy on the same host connects from loopback, so without the proxy check it would
make every outside request "local"; and a page of another site that a browser on this host
reaches by DNS rebinding names that site's host, so the Host check refuses it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from typing import Any

import asyncpg
from aiohttp import web

from waveline.services.ingest.auth import Caller, caller
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.dashboard_html import render_page
from waveline.services.ingest.pipeline_view import pipeline_snapshot
from waveline.services.ingest.responses import ApiError
from waveline.shared.auth_rules import loopback_host
from waveline.shared.dora_view import pipeline_dora
from waveline.shared.models.base import utcnow

logger = logging.getLogger(__name__)

_PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Nothing but our own inline style may load or run, and no one may frame the page.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
}


def is_local(request: web.Request) -> bool:
    """True when the peer is a loopback address and no proxy header says it relays someone."""
    if any(h in request.headers for h in _PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def authorize(request: web.Request) -> Caller | None:
    """The operator the page is for (401/403 for no or a wrong token), or None for an open
    loopback request (every pipeline)."""
    if "Authorization" in request.headers:
        return caller(request, "operator", what="operator token")
    settings = IngestContext.of(request).runtime.settings
    # The Host header as sent: aiohttp's request.host falls back to this machine's name.
    host = request.headers.get("Host")
    if settings.dashboard_open == "loopback" and is_local(request) and loopback_host(host):
        return None
    hint = (
        " or open it as http://localhost:<port>/ on this host"
        if settings.dashboard_open == "loopback"
        else ""
    )
    raise ApiError(401, "unauthorized", f"send 'Authorization: Bearer <operator token>'{hint}")


async def index(request: web.Request) -> web.Response:
    operator = authorize(request)
    ctx = IngestContext.of(request)
    pool = ctx.runtime.pool
    pipelines = ctx.runtime.config.pipelines
    names = list(pipelines) if operator is None else operator.visible(list(pipelines))
    snapshots = [await pipeline_snapshot(pool, name, pipelines[name]) for name in names]
    for snapshot in snapshots:
        snapshot["dora"] = await _dora(ctx, snapshot["pipeline"])
    images = await running_images(pool, snapshots)
    page = render_page(snapshots, images, utcnow())
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=_HEADERS)


# DORA numbers read the pipeline's whole history: computed at most every DORA_TTL_S per
# pipeline (and database), not on every 5-second refresh of every open page.
DORA_TTL_S = 60.0
# By pipeline name: the pool it was read from (the same name in another database, as in
# tests, is another pipeline), when, and the numbers.
_dora_cache: dict[str, tuple[asyncpg.Pool, float, dict[str, Any] | None]] = {}


async def _dora(ctx: IngestContext, name: str) -> dict[str, Any] | None:
    """The pipeline's DORA numbers of the last 30 days (shared/dora_view.py), cached."""
    pool = ctx.runtime.pool
    cached = _dora_cache.get(name)
    if cached is not None and cached[0] is pool and time.monotonic() - cached[1] < DORA_TTL_S:
        return cached[2]
    numbers = await pipeline_dora(pool, ctx.runtime.config, name)
    _dora_cache[name] = (pool, time.monotonic(), numbers)
    return numbers


async def running_images(
    pool: asyncpg.Pool, snapshots: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(pipeline, app_sha): {service: {"Tag", "Digest"}}}`` for the sets the waves run."""
    wanted = {(s["pipeline"], w["app_sha"]) for s in snapshots for w in s["waves"] if w["app_sha"]}
    if not wanted:
        return {}
    rows = await pool.fetch(
        "SELECT pipeline, app_sha, images FROM image_sets"
        " WHERE (pipeline, app_sha) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [p for p, _ in wanted],
        [a for _, a in wanted],
    )
    return {(r["pipeline"], r["app_sha"]): json.loads(r["images"]) for r in rows}

"""``GET /``: the dashboard page of the waves (docs/security.md, Dashboard and metrics).

One self-contained HTML page (inline CSS, no scripts, no external assets) listing every
pipeline of the config with its waves — state, image set (tags and digests), config commit,
gate — and Waveline's commits on ``auto`` still awaiting checks. It refreshes itself every
5 seconds. Every value that comes from data is passed through ``html.escape``.

Access: an operator token (the page shows the pipelines it covers). Without one, only when
``WAVELINE_DASHBOARD_OPEN=loopback``, and then only for a request from a loopback address
that carries no proxy header and whose ``Host`` names localhost, 127.0.0.1 or [::1]: a
reverse proxy on the same host connects from loopback, so without the proxy check it would
make every outside request "local"; and a page of another site that a browser on this host
reaches by DNS rebinding names that site's host, so the Host check refuses it.
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from waveline.services.ingest.auth import Caller, caller
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.pipeline_view import pipeline_snapshot
from waveline.services.ingest.responses import ApiError
from waveline.shared.auth_rules import loopback_host
from waveline.shared.models.base import utcnow

logger = logging.getLogger(__name__)

REFRESH_S = 5
_PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Nothing but our own inline style may load or run, and no one may frame the page.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
}
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}code{font-size:.9em}
.running{color:#176b17}.failing{color:#b00020;font-weight:bold}.unknown{color:#888}
.muted{color:#888}
"""


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
    images = await running_images(pool, snapshots)
    page = render_page(snapshots, images, utcnow())
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=_HEADERS)


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


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _short(sha: object, n: int = 12) -> str:
    if not sha:
        return '<span class="muted">-</span>'
    return f'<code title="{_e(sha)}">{_e(str(sha)[:n])}</code>'


def _images(images: Mapping[str, Any] | None) -> str:
    if not images:
        return '<span class="muted">-</span>'
    lines = []
    for service, value in sorted(images.items()):
        ref: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
        lines.append(
            f"<b>{_e(service)}</b> <code>{_e(ref.get('Tag'))}</code><br>"
            f'<code class="muted">{_e(ref.get("Digest"))}</code>'
        )
    return "<br>".join(lines)


def _announced(wave: Mapping[str, Any]) -> str:
    by = wave.get("announced_by")
    return f' <span class="muted">announced by {_e(by)}</span>' if by else ""


def _gate(wave: Mapping[str, Any]) -> str:
    gate = wave.get("gate") or {}
    notes = []
    if gate.get("held"):
        by = f" by {_e(gate['held_by'])}" if gate.get("held_by") else ""
        notes.append(f"<b>held</b>{by}")
    if gate.get("bake_remaining_s"):
        notes.append(f"bake {_e(gate['bake_remaining_s'])} s left")
    if gate.get("awaiting_approval"):
        notes.append("awaiting approval")
    for p in wave.get("promotions") or []:
        source = _e(p.get("from_wave") or "CI")
        who = "".join(
            f' <span class="muted">{what} by {_e(p[key])}</span>'
            for what, key in (("announced", "announced_by"), ("approved", "approved_by"))
            if p.get(key)
        )
        notes.append(f"{_e(p.get('status'))} {_short(p.get('app_sha'))} from {source}{who}")
    for a in wave.get("actions") or []:
        detail = f" {_e(a['detail'])}" if a.get("detail") else ""
        notes.append(
            f'<span class="muted">{_e(a.get("action"))}{detail} by {_e(a.get("actor"))}'
            f" at {_e(a.get('at'))}</span>"
        )
    return "<br>".join(notes) or '<span class="muted">open</span>'


def _pipeline(snapshot: Mapping[str, Any], images: Mapping[tuple[str, str], Any]) -> str:
    name = snapshot["pipeline"]
    rows = []
    for wave in snapshot["waves"]:
        state = str(wave.get("state") or "unknown")
        css = state if state in {"running", "failing"} else "unknown"
        rows.append(
            "<tr>"
            f"<td><b>{_e(wave['name'])}</b><br><span class='muted'>"
            f"{_e(', '.join(wave.get('targets') or []))}</span></td>"
            f'<td class="{css}">{_e(state)}<br><span class="muted">{_e(wave.get("since"))}</span>'
            "</td>"
            f"<td>{_short(wave.get('app_sha'))}{_announced(wave)}<br>"
            f"{_images(images.get((name, wave.get('app_sha') or '')))}</td>"
            f"<td>{_short(wave.get('cfg_commit'))}</td>"
            f"<td>{_gate(wave)}</td>"
            "</tr>"
        )
    commits = [
        "<tr>"
        f"<td>{_short(c.get('sha'))}</td><td>{_e(c.get('wave'))}</td>"
        f"<td>{_short(c.get('app_sha'))}</td><td>"
        + (
            ", ".join(f"{_e(k)}: {_e(v)}" for k, v in sorted((c.get("checks") or {}).items()))
            or '<span class="muted">no checks yet</span>'
        )
        + "</td></tr>"
        for c in snapshot.get("pending_commits") or []
    ]
    pending = (
        "<table><tr><th>commit</th><th>wave</th><th>image set</th><th>checks</th></tr>"
        + "".join(commits)
        + "</table>"
        if commits
        else '<p class="muted">no commits awaiting checks</p>'
    )
    return (
        f'<h2>pipeline {_e(name)} <span class="muted">repo {_e(snapshot.get("repo"))}</span></h2>'
        "<table><tr><th>wave</th><th>state</th><th>image set</th><th>config commit</th>"
        "<th>gate</th></tr>" + "".join(rows) + "</table>"
        f"<h3>pending commits on auto</h3>{pending}"
    )


def render_page(
    snapshots: list[dict[str, Any]],
    images: Mapping[tuple[str, str], Any],
    now: datetime,
) -> str:
    """The whole HTML document for ``snapshots`` (``pipeline_snapshot`` results)."""
    body = "".join(_pipeline(s, images) for s in snapshots) or "<p>no pipelines configured</p>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        "<title>Waveline</title>"
        f"<style>{_CSS}</style></head><body>"
        f'<h1>Waveline <span class="muted">{_e(now.isoformat(timespec="seconds"))}</span></h1>'
        f"{body}</body></html>"
    )

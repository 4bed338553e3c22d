"""The dashboard's HTML (``GET /``, services/ingest/dashboard.py): one self-contained page
(inline CSS, no scripts, no external assets), every value from data passed through
``html.escape``.

Per pipeline: its waves as a row of stages (state and since when, the set and who announced
it, its images, the config commit, why the gate is closed and until when, the promotions
in flight, superseded ones named so, and the last operator actions), the last promotions as
a timeline, the DORA numbers when the view carries them, and the commits on ``auto``
awaiting checks. Times read "3 min ago" with the exact time on hover. At phone width the
stages stack and each table scrolls inside its own box: nothing runs off the screen.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from waveline.services.ingest.view_rules import ago, dora_figures, exact, parse, quorum_text

REFRESH_S = 5
_CSS = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;padding:1em;color:#222;max-width:1400px}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.15em;margin:1.6em 0 .4em}
h3{font-size:1em;margin:1em 0 .3em}
code{font-size:.9em;overflow-wrap:anywhere;word-break:break-all}
.muted{color:#777}span.running{color:#176b17}span.failing{color:#b00020;font-weight:bold}
span.unknown{color:#777}
.stages{display:flex;flex-wrap:wrap;gap:.6em;list-style:none;padding:0;margin:0}
.stage{flex:1 1 14em;min-width:0;border:1px solid #ccc;border-radius:6px;padding:.5em .7em;
position:relative;overflow-wrap:anywhere}
.stage.st-running{border-top:4px solid #2e8b2e}.stage.st-failing{border-top:4px solid #b00020}
.stage.st-unknown{border-top:4px solid #bbb}
.stage h4{margin:0;font-size:1.05em;color:#222}.stage p{margin:.3em 0}
.gate{margin:.3em 0;padding:0;list-style:none}
.gate li{background:#fff4d6;border-left:3px solid #d19a00;padding:.15em .4em;margin:.2em 0}
.gate li.open{background:#eaf6ea;border-color:#2e8b2e}
.flights{margin:.3em 0;padding-left:1.1em}.superseded{color:#777;text-decoration:line-through}
.quorum{color:#8a5a00}
.timeline{list-style:none;padding:0;margin:0;border-left:2px solid #ccc}
.timeline li{padding:.15em .6em;overflow-wrap:anywhere}
.dora{display:flex;flex-wrap:wrap;gap:.6em;margin:0;padding:0}
.dora div{border:1px solid #ccc;border-radius:6px;padding:.3em .6em}
.dora dt{font-size:.85em;color:#777}.dora dd{margin:0;font-weight:bold}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.2em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _short(sha: object, n: int = 12) -> str:
    if not sha:
        return '<span class="muted">-</span>'
    return f'<code title="{_e(sha)}">{_e(str(sha)[:n])}</code>'


def _time(value: object, now: datetime, *, prefix: str = "") -> str:
    """``<time title="exact">3 min ago</time>``; a value that is not an ISO time is shown
    as it is."""
    if not value:
        return ""
    try:
        when = parse(str(value))
    except ValueError:
        return f"{prefix} {_e(value)}"
    if when is None:
        return ""
    return (
        f' <time datetime="{_e(exact(when))}" title="{_e(exact(when))}">{_e(ago(when, now))}</time>'
    )


def _images(images: Mapping[str, Any] | None) -> str:
    if not images:
        return ""
    lines = []
    for service, value in sorted(images.items()):
        ref: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
        lines.append(
            f"<b>{_e(service)}</b> <code>{_e(ref.get('Tag'))}</code><br>"
            f'<code class="muted">{_e(ref.get("Digest"))}</code>'
        )
    return "<p>" + "<br>".join(lines) + "</p>"


def _verdicts(gate: Mapping[str, Any], now: datetime) -> str:
    """Why the gate is closed, each verdict the same way whatever its kind: what it waits
    for, why, and when it opens by itself if known."""
    verdicts = gate.get("verdicts")
    if verdicts is None:  # a snapshot from before verdicts: the hold only
        items = []
        if gate.get("held"):
            by = f" by {_e(gate['held_by'])}" if gate.get("held_by") else ""
            items.append(f"<li><b>held</b>{by}</li>")
        return f'<ul class="gate">{"".join(items)}</ul>' if items else ""
    closed = [v for v in verdicts if not v.get("open")]
    if not closed:
        return '<ul class="gate"><li class="open">gate open</li></ul>'
    items = [
        f'<li class="{_e(v.get("waiting_for"))}"><b>{_e(v.get("waiting_for"))}</b>:'
        f" {_e(v.get('reason'))}"
        + (f", opens{_time(v['until'], now)}" if v.get("until") else "")
        + "</li>"
        for v in closed
    ]
    return f'<ul class="gate">{"".join(items)}</ul>'


def _promotion(p: Mapping[str, Any], *, into: str | None = None) -> str:
    status = str(p.get("status"))
    newer = f" by {_short(p['superseded_by'])}" if p.get("superseded_by") else ""
    target = f" into <b>{_e(into)}</b>" if into else ""
    if p.get("kind") == "rollback":
        source = " (rollback)"
    else:
        source = f" from {_e(p.get('from_wave') or 'CI')}"
    who = "".join(
        f' <span class="muted">{what} by {_e(p[key])}</span>'
        for what, key in (("announced", "announced_by"), ("approved", "approved_by"))
        if p.get(key)
    )
    css = ' class="superseded"' if status == "superseded" else ""
    return f"<span{css}>{_e(status)}</span> {_short(p.get('app_sha'))}{newer}{target}{source}{who}"


def _stage(
    name: str, wave: Mapping[str, Any], images: Mapping[tuple[str, str], Any], now: datetime
) -> str:
    state = str(wave.get("state") or "unknown")
    css = state if state in {"running", "failing"} else "unknown"
    by = wave.get("announced_by")
    announced = f' <span class="muted">announced by {_e(by)}</span>' if by else ""
    flights = "".join(f"<li>{_promotion(p)}</li>" for p in wave.get("promotions") or [])
    count = quorum_text(wave.get("quorum"), state)
    actions = "".join(
        f'<li class="muted">{_e(a.get("action"))}'
        + (f" {_e(a['detail'])}" if a.get("detail") else "")
        + f" by {_e(a.get('actor'))}{_time(a.get('at'), now, prefix=' at')}</li>"
        for a in wave.get("actions") or []
    )
    return (
        f'<li class="stage st-{css}"><h4>{_e(wave["name"])}</h4>'
        f'<p class="muted">{_e(_targets(wave.get("targets") or []))}</p>'
        f'<p><span class="{css}">{_e(state)}</span>{_time(wave.get("since"), now)}</p>'
        + (f'<p class="quorum">{_e(count)}</p>' if count else "")
        + f"<p>set {_short(wave.get('app_sha'))}{announced}</p>"
        f"{_images(images.get((name, wave.get('app_sha') or '')))}"
        f"<p>config {_short(wave.get('cfg_commit'))}</p>"
        f"{_verdicts(wave.get('gate') or {}, now)}"
        + (f'<ul class="flights">{flights}</ul>' if flights else "")
        + (f'<ul class="flights">{actions}</ul>' if actions else "")
        + "</li>"
    )


def _targets(names: Sequence[str], shown: int = 6) -> str:
    """The wave's targets; a long list (a 200-cluster wave) is cut, with how many more."""
    if len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[: shown - 1]) + f" and {len(names) - shown + 1} more"


def _timeline(entries: Sequence[Mapping[str, Any]], now: datetime) -> str:
    if not entries:
        return ""
    items = "".join(
        f"<li>{_time(t.get('at'), now)} {_promotion(t, into=t.get('wave'))}</li>" for t in entries
    )
    return f'<h3>last promotions</h3><ol class="timeline">{items}</ol>'


def _evictions(rows: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """The last commits evicted from ``auto``, and whether their set was tried again."""
    if not rows:
        return ""
    items = "".join(
        f"<li>{_time(r.get('at'), now)} evicted {_short(r.get('sha'))} (set"
        f" {_short(r.get('app_sha'))} into {_e(r.get('wave'))}, attempt {_e(r.get('attempt'))}): "
        + (
            f"retried as attempt {_e(r['retried_as'])}"
            if r.get("retried_as")
            else "not retried (waveline retry, or announce the set again)"
        )
        + "</li>"
        for r in rows
    )
    return f'<h3>evicted from auto</h3><ol class="timeline">{items}</ol>'


def _quarantined(rows: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """The sets a rollback quarantined (never promoted again until lifted)."""
    if not rows:
        return ""
    items = "".join(
        f"<li>{_short(r.get('app_sha'))} rolled back out of {_e(r.get('wave'))} by"
        f" {_e(r.get('actor'))} {_time(r.get('since'), now)}: {_e(r.get('reason'))}</li>"
        for r in rows
    )
    return f'<h3>quarantined sets</h3><ol class="timeline">{items}</ol>'


def _dora(numbers: Mapping[str, Any] | None) -> str:
    """The pipeline's DORA numbers (``PipelineDora.to_json()``) when the view carries them."""
    if not numbers:
        return ""
    cells = "".join(
        f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in dora_figures(numbers).items()
    )
    return f'<h3>DORA</h3><dl class="dora">{cells}</dl>'


def _pending(commits: Sequence[Mapping[str, Any]]) -> str:
    if not commits:
        return '<p class="muted">no commits awaiting checks</p>'
    rows = "".join(
        "<tr>"
        f"<td>{_short(c.get('sha'))}</td><td>{_e(c.get('wave'))}</td>"
        f"<td>{_short(c.get('app_sha'))}</td><td>"
        + (
            ", ".join(f"{_e(k)}: {_e(v)}" for k, v in sorted((c.get("checks") or {}).items()))
            or '<span class="muted">no checks yet</span>'
        )
        + "</td></tr>"
        for c in commits
    )
    return (
        '<div class="scroll"><table><tr><th>commit</th><th>wave</th><th>image set</th>'
        f"<th>checks</th></tr>{rows}</table></div>"
    )


def _pipeline(
    snapshot: Mapping[str, Any], images: Mapping[tuple[str, str], Any], now: datetime
) -> str:
    name = snapshot["pipeline"]
    stages = "".join(_stage(name, w, images, now) for w in snapshot["waves"])
    return (
        f'<section><h2>pipeline {_e(name)} <span class="muted">repo'
        f" {_e(snapshot.get('repo'))}</span></h2>"
        f'<ol class="stages">{stages}</ol>'
        f"{_timeline(snapshot.get('timeline') or [], now)}"
        f"{_evictions(snapshot.get('evictions') or [], now)}"
        f"{_quarantined(snapshot.get('quarantined') or [], now)}"
        f"{_dora(snapshot.get('dora'))}"
        f"<h3>pending commits on auto</h3>{_pending(snapshot.get('pending_commits') or [])}"
        "</section>"
    )


def render_page(
    snapshots: list[dict[str, Any]],
    images: Mapping[tuple[str, str], Any],
    now: datetime,
) -> str:
    """The whole HTML document for ``snapshots`` (``pipeline_snapshot`` results) at
    ``now`` (relative times count from it)."""
    body = "".join(_pipeline(s, images, now) for s in snapshots) or "<p>no pipelines configured</p>"
    stamp = exact(now)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        "<title>Waveline</title>"
        f"<style>{_CSS}</style></head><body>"
        f'<h1>Waveline <span class="muted"><time datetime="{_e(stamp)}">{_e(stamp)}</time>'
        f"</span></h1>{body}</body></html>"
    )

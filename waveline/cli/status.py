"""``waveline status PIPELINE``: the pipeline view (``GET /v1/pipelines/{p}``) as text.

One line per wave (state and since when, the set it runs and who announced it, the config
commit, then why its gate is closed and the promotions into it, superseded ones named as
such), the commits on ``auto`` still awaiting checks, the last promotions, the last
evictions and whether their set was retried, the notifier's
last deliveries and the deliveries ingest ignored. Times are relative to the server's
clock (the view's ``now``), so a laptop's clock does not skew them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from waveline.services.ingest.view_rules import ago, parse, quorum_text
from waveline.shared.models.base import utcnow

TIMELINE = 5


def format_status(doc: dict[str, Any]) -> str:
    """The text of ``waveline status`` for the view ``doc``."""
    now = parse(doc.get("now")) or utcnow()
    lines = [f"pipeline {doc['pipeline']} (repo {doc['repo']})"]
    for wave in doc["waves"]:
        app = (wave.get("app_sha") or "-")[:12]
        cfg = (wave.get("cfg_commit") or "-")[:12]
        count = quorum_text(wave.get("quorum"), wave["state"])
        notes = ([count] if count else []) + _gate_notes(wave.get("gate", {}), now)
        notes.extend(_promotion(p) for p in wave.get("promotions", []))
        if wave.get("actions"):
            last = wave["actions"][0]
            notes.append(f"last {last['action']} by {last['actor']}{_when(last.get('at'), now)}")
        by = f" by {wave['announced_by']}" if wave.get("announced_by") else ""
        since = _when(wave.get("since"), now, prefix=" since")
        lines.append(
            f"  {wave['name']:<12} {wave['state']:<9} app {app:<12}{by} cfg {cfg:<12}{since} "
            + "; ".join(notes)
        )
    for commit in doc.get("pending_commits", []):
        checks = ", ".join(f"{k}={v}" for k, v in commit["checks"].items()) or "no checks yet"
        lines.append(f"  pending {commit['sha'][:12]} ({commit['wave']}): {checks}")
    for entry in doc.get("timeline", [])[:TIMELINE]:
        lines.append(f"  promotion{_when(entry.get('at'), now)}: {_promotion(entry, wave=True)}")
    for e in doc.get("evictions", []):
        retried = f"retried as attempt {e['retried_as']}" if e.get("retried_as") else "not retried"
        lines.append(
            f"  evicted{_when(e.get('at'), now)}: {e['sha'][:12]} (set {e['app_sha'][:12]} into"
            f" {e['wave']}, attempt {e['attempt']}): {retried}"
        )
    for q in doc.get("quarantined", []):
        lines.append(
            f"  quarantined{_when(q.get('since'), now)}: {q['app_sha'][:12]} (rolled back out"
            f" of {q['wave']} by {q['actor']}: {q['reason']}); waveline unquarantine"
            f" {doc['pipeline']} {q['app_sha']}"
        )
    for d in doc.get("deliveries", [])[:5]:
        last = d["attempts"][-1] if d["attempts"] else {}
        lines.append(
            f"  delivery {d['event_type']} to {d['target']}: {d['state']} after"
            f" {len(d['attempts'])} attempt(s)"
            + (f", last {last.get('status_code') or last.get('error')}" if last else "")
        )
    lines.extend(_ignored_lines(doc.get("ignored_deliveries", [])))
    return "\n".join(lines)


def _when(value: str | None, now: datetime, *, prefix: str = "") -> str:
    """`` 3 min ago`` for an ISO time (a value that is not one is shown as it is)."""
    if not value:
        return ""
    try:
        when = parse(value)
    except ValueError:
        return f"{prefix} {value}"
    return f"{prefix} {ago(when, now)}" if when else ""


def _gate_notes(gate: dict[str, Any], now: datetime) -> list[str]:
    """Why the gate is closed: the view's verdicts (what it waits for, why, until when),
    or the older fields of an ingest that sends none."""
    verdicts = gate.get("verdicts")
    if verdicts is not None:
        return [_verdict(v, now) for v in verdicts if not v.get("open")]
    notes = []
    if gate.get("held"):
        notes.append(f"held by {gate['held_by']}" if gate.get("held_by") else "held")
    if gate.get("awaiting_approval"):
        notes.append("awaiting approval")
    if gate.get("bake_remaining_s"):
        notes.append(f"bake {gate['bake_remaining_s']}s left")
    return notes


def _verdict(v: dict[str, Any], now: datetime) -> str:
    """``waiting for bake: <reason>, opens in 3 min`` (any gate kind the same way)."""
    until = parse(v.get("until"))
    opens = f", opens {ago(until, now)}" if until else ""
    return f"waiting for {v.get('waiting_for')}: {v.get('reason')}{opens}"


def _promotion(p: dict[str, Any], *, wave: bool = False) -> str:
    via = f" by {p['strategy']}" if p.get("strategy", "commit") != "commit" else ""
    url = f" {p['url']}" if p.get("url") else ""
    who = "".join(
        f" {what} by {p[key]}"
        for what, key in (("announced", "announced_by"), ("approved", "approved_by"))
        if p.get(key)
    )
    newer = f" by {p['superseded_by'][:12]}" if p.get("superseded_by") else ""
    into = f" into {p['wave']}" if wave else ""
    rollback = p.get("kind") == "rollback"
    source = " (rollback)" if rollback else f" from {p.get('from_wave') or 'CI'}"
    return f"{p['status']} {p['app_sha'][:12]}{newer}{into}{source}{via}{url}{who}"


def _ignored_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The last GitHub delivery per reason that changed nothing (docs/security.md, A
    delivery that changes nothing says why): when, what, why."""
    lines = []
    for row in rows:
        about = "" if row.get("known", True) else f" about unknown repository {row['repo']}"
        lines.append(
            f"  ignored {row['event']}{about} at {row['at'][:19]}Z ({row['reason']}):"
            f" {row['detail']}"
        )
    return lines

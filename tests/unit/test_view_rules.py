"""The pipeline view's rules (services/ingest/view_rules.py) and what ``waveline status``
and the dashboard make of them: commits on ``watched`` are never pending, an overtaken
request is superseded, gate verdicts of any kind, relative times with the exact one kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from waveline.cli.status import format_status
from waveline.services.ingest.dashboard_html import render_page
from waveline.services.ingest.view_rules import (
    Flight,
    ago,
    dora_figures,
    exact,
    gate_verdicts,
    on_watched,
    quorum,
    quorum_text,
    span,
    superseded,
)
from waveline.services.promoter import rules
from waveline.services.promoter.rules import PromotionFacts
from waveline.shared.config import WaveConfig

NOW = datetime(2026, 12, 7, 9, 0, 0, 123456, tzinfo=UTC)
A, B, C = "a" * 40, "b" * 40, "c" * 40


def flight(
    app_sha: str, minute: int, status: Any, *, landed: bool, wave: str = "staging"
) -> Flight:
    facts = PromotionFacts(
        promotion_id=uuid.uuid5(uuid.NAMESPACE_OID, f"{wave}/{app_sha}"),
        app_sha=app_sha,
        kind="introduce",
        state=status,
        created_at=NOW + timedelta(minutes=minute),
    )
    return Flight(facts=facts, wave=wave, landed=landed)


def test_a_commit_at_or_before_where_watched_stands_is_on_watched() -> None:
    assert on_watched(NOW, NOW) and on_watched(NOW - timedelta(seconds=1), NOW)
    assert not on_watched(NOW + timedelta(seconds=1), NOW)
    assert not on_watched(NOW, None)  # watched never seen on one of our commits


def test_an_older_request_is_superseded_by_the_newest_landed_set() -> None:
    a = flight(A, 0, "requested", landed=True)  # on watched too: B is on top of it
    b = flight(B, 1, "requested", landed=True)
    c = flight(C, 2, "requested", landed=False)  # newer, but not on watched yet
    other = flight(A, 0, "requested", landed=False, wave="production")
    found = superseded([a, b, c, other])
    assert found == {a.facts.promotion_id: B}


def test_nothing_is_superseded_before_a_newer_set_lands() -> None:
    assert (
        superseded([flight(A, 0, "requested", landed=False), flight(B, 1, "waiting", landed=False)])
        == {}
    )
    # a done promotion has ended: never shown superseded
    assert superseded([flight(A, 0, "done", landed=True), flight(B, 1, "done", landed=True)]) == {}


def test_gate_verdicts_hold_freeze_bake_and_approval() -> None:
    wave = WaveConfig.model_validate(
        {"name": "production", "targets": ["prod-us"], "gate": {"bake": "10m", "approval": True}}
    )
    waiting = [rules.GateFacts(app_sha=A, from_wave="internal", since=NOW)]
    later = NOW + timedelta(minutes=3)
    frozen = rules.closed("freeze", "frozen by ops: release weekend")
    verdicts = gate_verdicts(
        wave, held=True, held_by="ops", frozen=frozen, waiting=waiting * 2, now=later
    )
    # Each reason once, even with two promotions sharing it; the hold and freeze first.
    assert [v["waiting_for"] for v in verdicts] == ["hold", "freeze", "bake", "approval"]
    assert verdicts[0]["reason"] == "production is held by ops"
    assert verdicts[1]["reason"] == "frozen by ops: release weekend"
    assert verdicts[2]["until"].startswith("2026-12-07T09:10:00")
    approved = [rules.GateFacts(app_sha=A, from_wave="internal", since=NOW, approved=True)]
    an_hour_on = NOW + timedelta(hours=1)
    opened = gate_verdicts(
        wave, held=False, held_by=None, frozen=rules.OPEN, waiting=approved, now=an_hour_on
    )
    assert opened == []
    # held or frozen with nothing waiting: still closed
    alone = gate_verdicts(wave, held=False, held_by=None, frozen=frozen, waiting=[], now=NOW)
    assert [v["waiting_for"] for v in alone] == ["freeze"]


def test_a_quorum_wave_shows_its_count_and_the_targets_not_counted() -> None:
    targets = [f"cluster-{i}" for i in range(200)]
    wave = WaveConfig.model_validate({"name": "edge", "targets": targets, "min_healthy": "90%"})
    q = quorum(wave, ["cluster-7", "cluster-9"])
    assert q == {"required": 180, "targets": 200, "lagging": ["cluster-7", "cluster-9"]}
    assert (
        quorum_text(q, "running")
        == "198/200 healthy (needs 180), not counted: cluster-7, cluster-9"
    )
    assert quorum_text(q, "unknown") == "needs 180 of 200 healthy"
    every = WaveConfig.model_validate({"name": "all", "targets": ["a", "b"]})
    assert quorum(every, []) is None and quorum_text(None, "running") == ""
    page = render_page(
        [{**snapshot(), "waves": [{**snapshot()["waves"][0], "targets": targets, "quorum": q}]}],
        {},
        NOW,
    )
    assert "198/200 healthy (needs 180), not counted: cluster-7, cluster-9" in page
    assert "cluster-4 and 195 more" in page and "cluster-5," not in page


def test_relative_times() -> None:
    assert ago(NOW, NOW + timedelta(seconds=2)) == "just now"
    assert ago(NOW, NOW + timedelta(seconds=42)) == "42 s ago"
    assert ago(NOW, NOW + timedelta(minutes=3, seconds=59)) == "3 min ago"
    assert ago(NOW, NOW + timedelta(hours=2, minutes=5)) == "2 h ago"
    assert ago(NOW, NOW + timedelta(days=5)) == "5 d ago"
    assert ago(NOW + timedelta(minutes=7), NOW) == "in 7 min"
    assert exact(NOW) == "2026-12-07T09:00:00+00:00"


def snapshot() -> dict[str, Any]:
    since = exact(NOW - timedelta(minutes=3))
    bake = {
        "open": False,
        "waiting_for": "bake",
        "reason": "baking in staging",
        "until": exact(NOW + timedelta(minutes=7, seconds=30)),
    }
    return {
        "pipeline": "app",
        "repo": "cfg-app",
        "now": exact(NOW),
        "waves": [
            {
                "name": "staging",
                "targets": ["staging-us"],
                "state": "running",
                "app_sha": B,
                "announced_by": "ci",
                "cfg_commit": C,
                "since": since,
                "quorum": {"required": 1, "targets": 1, "lagging": []},
                "gate": {"held": False, "verdicts": []},
                "promotions": [
                    {"app_sha": A, "from_wave": None, "status": "superseded", "superseded_by": B},
                ],
                "actions": [],
            },
            {
                "name": "production",
                "targets": ["prod-us"],
                "state": "unknown",
                "app_sha": None,
                "cfg_commit": None,
                "since": None,
                "gate": {"held": False, "verdicts": [bake]},
                "promotions": [],
                "actions": [],
            },
        ],
        "pending_commits": [],
        "evictions": [
            {"sha": C, "app_sha": A, "wave": "staging", "attempt": 1, "at": since, "retried_as": 2}
        ],
        "timeline": [
            {
                "kind": "introduce",
                "wave": "staging",
                "from_wave": None,
                "app_sha": B,
                "status": "done",
                "at": since,
            },
        ],
    }


def test_status_text_tells_the_truth() -> None:
    lines = format_status(snapshot()).splitlines()
    assert "since 3 min ago" in lines[1]
    assert f"superseded {A[:12]} by {B[:12]} from CI" in lines[1]
    assert "1/1 healthy (needs 1)" in lines[1]
    assert "waiting for bake: baking in staging, opens in 7 min" in lines[2]
    assert lines[3] == f"  promotion 3 min ago: done {B[:12]} into staging from CI"
    assert lines[4] == (
        f"  evicted 3 min ago: {C[:12]} (set {A[:12]} into staging, attempt 1):"
        " retried as attempt 2"
    )
    assert not any("no checks yet" in line or "requested" in line for line in lines)


def test_page_shows_relative_times_with_the_exact_one_on_hover() -> None:
    page = render_page([snapshot()], {}, NOW)
    assert (
        '<time datetime="2026-12-07T08:57:00+00:00" title="2026-12-07T08:57:00+00:00">'
        "3 min ago</time>" in page
    )
    assert "<b>bake</b>: baking in staging, opens" in page and ">in 7 min</time>" in page
    assert '<span class="superseded">superseded</span>' in page
    assert "retried as attempt 2" in page
    assert ".123456" not in page  # no microseconds anywhere
    assert "gate open" in page  # staging: nothing closed
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_dora_numbers_for_people() -> None:
    numbers = {
        "since": exact(NOW - timedelta(days=30)),
        "until": exact(NOW),
        "deployments_per_day": 1.5,
        "lead_time": {"count": 4, "median_s": 750.0, "p90_s": 900.0},
        "change_failure_rate": 0.25,
        "time_to_restore": {"count": 0, "median_s": None, "p90_s": None},
    }
    figures = {
        "deployments per day": "1.50",
        "lead time (median)": "12 min",
        "change failure rate": "25 %",
        "time to restore (median)": "-",
        "window": "last 30 d",
    }
    assert dora_figures(numbers) == figures
    assert [span(s) for s in (42, 5400, 3 * 86400)] == ["42 s", "1.5 h", "3.0 d"]
    page = render_page([{**snapshot(), "dora": numbers}], {}, NOW)
    assert "<dt>change failure rate</dt><dd>25 %</dd>" in page
    assert "DORA" not in render_page([snapshot()], {}, NOW)  # no numbers: no slot

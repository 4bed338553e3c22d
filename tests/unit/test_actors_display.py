"""Who did what, as ``waveline trace``, ``waveline status`` and the dashboard show it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from waveline.cli.ops import format_status
from waveline.cli.timeline import Observed, build_timeline, render
from waveline.services.ingest.dashboard_html import render_page
from waveline.shared.models.images import ImageRef, ImageSetAnnounced
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.models.promotions import PromotionEvent

SET, OTHER = "a" * 40, "b" * 40
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
T0 = int(NOW.timestamp() * 1000)


def announce(app_sha: str, actor: str | None) -> ImageSetAnnounced:
    ref = ImageRef(tag=f"reg.example.com/api:{app_sha[:8]}", digest="sha256:" + "ab" * 32)
    return ImageSetAnnounced(pipeline="app", app_sha=app_sha, images={"api": ref}, actor=actor)


def command(action: Any, wave: str, actor: str, **fields: Any) -> OperatorCommand:
    return OperatorCommand(
        event_id=uuid.uuid4(),
        pipeline="app",
        wave=wave,
        action=action,
        actor=actor,
        issued_at=NOW,
        **fields,
    )


def promotion(status: Any, to_wave: str, pid: uuid.UUID) -> PromotionEvent:
    return PromotionEvent(
        event_id=uuid.uuid4(),
        promotion_id=pid,
        pipeline="app",
        from_wave="internal" if to_wave == "production" else None,
        to_wave=to_wave,
        app_sha=SET,
        status=status,
        at=NOW,
    )


def test_trace_names_who_announced_and_who_acted_on_the_set() -> None:
    pid = uuid.uuid4()
    observed: list[Observed] = [
        (T0, "waveline.images", announce(SET, "team-b-ci")),
        (T0 + 10, "waveline.operator", command("hold", "production", "team-b-ops")),
        (T0 + 20, "waveline.operator", command("approve", "production", "team-b-ops", app_sha=SET)),
        # an approval naming another set is not about this one
        (T0 + 25, "waveline.operator", command("approve", "production", "x", app_sha=OTHER)),
        (T0 + 30, "waveline.promotions", promotion("requested", "production", pid)),
        (T0 + 40, "waveline.promotions", promotion("done", "production", pid)),
        # after the set reached production, that wave's holds are about other sets
        (T0 + 50, "waveline.operator", command("hold", "production", "someone-else")),
        # another pipeline's command never shows
        (
            T0 + 60,
            "waveline.operator",
            command("hold", "staging", "x").model_copy(update={"pipeline": "web"}),
        ),
        (T0 + 70, "waveline.operator", command("rollback", "staging", "ops", to=SET)),
        (T0 + 80, "waveline.operator", command("rollback", "staging", "ops", to=OTHER)),
    ]
    timeline = build_timeline(SET, observed)
    assert timeline is not None
    names = [h.name for h in timeline.hops if h.kind in {"announce", "operator"}]
    assert names == [
        "announced in app (1 service) by team-b-ci",
        "hold production by team-b-ops",
        "approve production by team-b-ops",
        f"rollback to {SET} staging by ops",
    ]
    assert "by team-b-ci" in render(timeline)


def test_trace_of_a_set_produced_without_actor_says_nothing_of_one() -> None:
    timeline = build_timeline(SET, [(T0, "waveline.images", announce(SET, None))])
    assert timeline is not None
    assert timeline.hops[0].name == "announced in app (1 service)"


SNAPSHOT: dict[str, Any] = {
    "pipeline": "app",
    "repo": "cfg-app",
    "waves": [
        {
            "name": "staging",
            "targets": ["staging-us"],
            "state": "running",
            "app_sha": SET,
            "announced_by": "team-b-ci",
            "cfg_commit": "c" * 40,
            "since": NOW.isoformat(),
            "gate": {"held": False},
            "promotions": [],
            "actions": [],
        },
        {
            "name": "production",
            "targets": ["prod-us"],
            "state": "running",
            "app_sha": OTHER,
            "announced_by": None,
            "cfg_commit": "d" * 40,
            "since": NOW.isoformat(),
            "gate": {"held": True, "held_by": "<team-b-ops>"},
            "promotions": [
                {
                    "promotion_id": str(uuid.uuid4()),
                    "from_wave": "staging",
                    "app_sha": SET,
                    "status": "waiting",
                    "strategy": "commit",
                    "url": None,
                    "announced_by": "team-b-ci",
                    "approved_by": "team-b-ops",
                }
            ],
            "actions": [
                {"action": "hold", "actor": "<team-b-ops>", "detail": None, "at": "t2"},
                {"action": "approve", "actor": "team-b-ops", "detail": None, "at": "t1"},
            ],
        },
    ],
    "pending_commits": [],
    "deliveries": [],
}


def test_status_shows_the_actors() -> None:
    text = format_status(SNAPSHOT)
    staging, production = text.splitlines()[1:3]
    assert "by team-b-ci" in staging
    assert "held by <team-b-ops>" in production
    assert "announced by team-b-ci approved by team-b-ops" in production
    assert "last hold by <team-b-ops>" in production


def test_dashboard_shows_the_actors_escaped() -> None:
    page = render_page([SNAPSHOT], {}, NOW)
    assert "announced by team-b-ci" in page
    assert "approved by team-b-ops" in page
    assert "<b>held</b> by &lt;team-b-ops&gt;" in page
    assert "hold by &lt;team-b-ops&gt; at t2" in page
    assert "<team-b-ops>" not in page

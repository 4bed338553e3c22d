"""``waveline trace``: the pure timeline over (timestamp, topic, message) tuples."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from tests.support import APP_SHA, make_config
from waveline.cli.timeline import (
    Observed,
    build_timeline,
    format_delta,
    render,
    resolve_app_sha,
    to_json,
    waves_of_targets,
)
from waveline.shared.models.checks import CheckReported
from waveline.shared.models.deploys import DeployReported
from waveline.shared.models.git import Evict, FastForward, GitEvent, IntroduceImages, PromoteWave
from waveline.shared.models.images import ImageRef, ImageSetAnnounced
from waveline.shared.models.promotions import PromotionEvent
from waveline.shared.models.waves import WaveStatus

OTHER = "1111111111111111111111111111111111111111"
C1, C2, C9 = "c1" * 20, "c2" * 20, "c9" * 20
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
T0 = int(NOW.timestamp() * 1000)
TARGETS = waves_of_targets(make_config("file:///nowhere.git"))


def _id() -> uuid.UUID:
    return uuid.uuid4()


def images(app_sha: str) -> dict[str, ImageRef]:
    digest = "sha256:" + "ab" * 32
    return {"api": ImageRef(tag=f"reg.example.com/api:{app_sha}", digest=digest)}


def announce(app_sha: str, pipeline: str = "app") -> ImageSetAnnounced:
    return ImageSetAnnounced(pipeline=pipeline, app_sha=app_sha, images=images(app_sha))


def committed(cmd: IntroduceImages | PromoteWave, sha: str, waves: dict[str, str]) -> GitEvent:
    wave = cmd.wave if isinstance(cmd, IntroduceImages) else cmd.to_wave
    return GitEvent(
        event_id=_id(),
        command_id=cmd.command_id,
        command_kind=cmd.kind,
        repo="cfg-app",
        outcome="committed",
        branch="auto",
        sha=sha,
        wave_apps={sha: {f"app/{w}": a for w, a in waves.items()}},
        pipeline=cmd.pipeline,
        wave=wave,
        app_sha=cmd.app_sha,
        at=NOW,
    )


def git(cmd: FastForward | Evict, outcome: Any, **fields: Any) -> GitEvent:
    return GitEvent(
        event_id=_id(),
        command_id=cmd.command_id,
        command_kind=cmd.kind,
        repo="cfg-app",
        outcome=outcome,
        at=NOW,
        **fields,
    )


def check(sha: str, state: Any) -> CheckReported:
    return CheckReported(
        event_id=_id(), repo="cfg-app", sha=sha, context="ci/validate", state=state, reported_at=NOW
    )


def deploy(app: str, sha: str) -> DeployReported:
    return DeployReported(
        event_id=_id(),
        app=app,
        revision=sha,
        phase="Succeeded",
        health="Healthy",
        sync="Synced",
        reported_at=NOW,
    )


def wave(name: str, app_sha: str, cfg: str) -> WaveStatus:
    return WaveStatus(
        event_id=_id(),
        pipeline="app",
        wave=name,
        state="running",
        app_sha=app_sha,
        cfg_sha=cfg,
        at=NOW,
    )


def promotion(app_sha: str, to: str, source: str | None = None) -> PromotionEvent:
    return PromotionEvent(
        event_id=_id(),
        promotion_id=_id(),
        pipeline="app",
        from_wave=source,
        to_wave=to,
        app_sha=app_sha,
        status="requested",
        at=NOW,
    )


def journey(t0: int = T0) -> list[tuple[int, str, BaseModel]]:
    """APP_SHA from announce to running in internal, with another set's traffic around it."""
    intro = IntroduceImages(
        command_id=_id(),
        repo="cfg-app",
        issued_at=NOW,
        pipeline="app",
        wave="staging",
        app_sha=APP_SHA,
        images=images(APP_SHA),
    )
    ff1 = FastForward(command_id=_id(), repo="cfg-app", issued_at=NOW, sha=C1)
    promote = PromoteWave(
        command_id=_id(),
        repo="cfg-app",
        issued_at=NOW,
        pipeline="app",
        from_wave="staging",
        to_wave="internal",
        app_sha=APP_SHA,
        deployed_sha=C1,
    )
    ff2 = FastForward(command_id=_id(), repo="cfg-app", issued_at=NOW, sha=C2)
    other = IntroduceImages(
        command_id=_id(),
        repo="cfg-app",
        issued_at=NOW,
        pipeline="app",
        wave="staging",
        app_sha=OTHER,
        images=images(OTHER),
    )
    steps: list[tuple[int, str, BaseModel]] = [
        (0, "waveline.images", announce(APP_SHA)),
        (4, "waveline.promotions", promotion(APP_SHA, "staging")),
        (5, "waveline.git.commands", intro),
        (45, "waveline.git.events", committed(intro, C1, {"staging": APP_SHA})),
        (1_000, "waveline.checks", check(C1, "pending")),
        (2_000, "waveline.checks", check(C1, "success")),
        (2_010, "waveline.git.commands", ff1),
        (2_060, "waveline.git.events", git(ff1, "fast_forwarded", branch="master", sha=C1)),
        (5_000, "waveline.deploys", deploy("staging-us", C1)),
        (5_100, "waveline.deploys", deploy("prod-us", C1)),  # prod does not run it at C1
        (5_200, "waveline.deploys", deploy("staging-eu", C1)),
        (5_300, "waveline.waves", wave("staging", APP_SHA, C1)),
        (6_300, "waveline.promotions", promotion(APP_SHA, "internal", "staging")),
        (6_301, "waveline.git.commands", promote),
        (6_340, "waveline.git.events", committed(promote, C2, {"internal": APP_SHA})),
        (7_000, "waveline.images", announce(OTHER)),
        (
            7_050,
            "waveline.git.events",
            committed(other, C9, {"staging": OTHER, "internal": APP_SHA}),
        ),
        (7_400, "waveline.checks", check(C9, "success")),  # another set's commit
        (8_000, "waveline.checks", check(C2, "success")),
        (8_010, "waveline.git.commands", ff2),
        (8_050, "waveline.git.events", git(ff2, "fast_forwarded", branch="master", sha=C2)),
        (9_000, "waveline.deploys", deploy("staging-us", C9)),  # staging runs OTHER at C9
        (9_500, "waveline.deploys", deploy("internal-us", C9)),  # internal still runs it
        (10_000, "waveline.waves", wave("internal", APP_SHA, C9)),
        (11_000, "waveline.waves", wave("staging", OTHER, C9)),
    ]
    return [(t0 + dt, topic, m) for dt, topic, m in steps]


def names(observed: list[Observed], app_sha: str = APP_SHA, **kw: Any) -> list[str]:
    timeline = build_timeline(app_sha, observed, target_waves=TARGETS, **kw)
    assert timeline is not None
    return [h.name for h in timeline.hops]


def test_hops_in_order_with_only_this_sets_traffic() -> None:
    assert names(journey()) == [
        "announced in app (1 service)",
        "introduce into staging requested",
        "introduce command → staging",
        f"committed on auto {C1[:10]} (staging)",
        f"check ci/validate pending on {C1[:10]}",
        f"check ci/validate success on {C1[:10]}",
        f"fast-forward command for {C1[:10]}",
        f"watched master fast-forwarded to {C1[:10]}",
        f"staging-us Synced/Healthy at {C1[:10]}",
        f"staging-eu Synced/Healthy at {C1[:10]}",
        f"wave staging runs it at {C1[:10]}",
        "promote staging→internal requested",
        "promote command staging→internal",
        f"committed on auto {C2[:10]} (internal)",
        f"check ci/validate success on {C2[:10]}",
        f"fast-forward command for {C2[:10]}",
        f"watched master fast-forwarded to {C2[:10]}",
        f"internal-us Synced/Healthy at {C9[:10]}",
        f"wave internal runs it at {C9[:10]}",
        f"wave staging moved on to {OTHER[:10]}",
    ]


def test_deltas_and_summary() -> None:
    timeline = build_timeline(APP_SHA, list(reversed(journey())), target_waves=TARGETS)
    assert timeline is not None
    doc = to_json(timeline)
    hops = {h["hop"]: h for h in doc["hops"]}
    assert doc["announced"] is True and doc["pipelines"] == ["app"]
    assert hops[f"committed on auto {C1[:10]} (staging)"]["since_announce_ms"] == 45
    assert hops[f"committed on auto {C1[:10]} (staging)"]["since_previous_ms"] == 40
    assert hops[f"wave staging runs it at {C1[:10]}"]["since_previous_ms"] == 100
    assert doc["hops"][0]["at"] == "2026-11-21T09:00:00.000Z"
    assert dict(timeline.summary) == {
        "announce → committed on auto (staging)": 45,
        "staging: committed → watched": 2_015,
        "staging: watched → healthy": 3_240,
        "staging healthy → internal committed": 1_040,
        "internal: committed → watched": 1_710,
        "internal: watched → healthy": 1_950,
        "announce → internal healthy (total)": 10_000,
    }
    text = render(timeline)
    assert f"image set {APP_SHA} (app)" in text
    assert "+45 ms" in text and "+5.30 s" in text and "+10.00 s" in text
    assert text.index("announced") < text.index("introduce command") < text.index("summary:")


def test_not_found_pipeline_filter_and_prefix() -> None:
    assert build_timeline("0" * 40, journey()) is None
    assert build_timeline(APP_SHA, journey(), pipeline="other", target_waves=TARGETS) is None
    assert resolve_app_sha(APP_SHA[:8], journey()) == APP_SHA
    assert resolve_app_sha("abcdef0", journey()) == "abcdef0"


def test_without_config_deploys_match_the_sets_commits() -> None:
    found = [n for n in names_without_targets() if "Synced" in n]
    assert found == [
        f"{t} Synced/Healthy at {C1[:10]}" for t in ("staging-us", "prod-us", "staging-eu")
    ]


def names_without_targets() -> list[str]:
    timeline = build_timeline(APP_SHA, journey())
    assert timeline is not None
    return [h.name for h in timeline.hops]


def test_follows_an_eviction_replay() -> None:
    """A red commit below ours is evicted: ours is replayed as C2 and judged on its own."""
    red = "ee" * 20
    intro = IntroduceImages(
        command_id=_id(),
        repo="cfg-app",
        issued_at=NOW,
        pipeline="app",
        wave="staging",
        app_sha=APP_SHA,
        images=images(APP_SHA),
    )
    evict = Evict(command_id=_id(), repo="cfg-app", issued_at=NOW, sha=red)
    ff = FastForward(command_id=_id(), repo="cfg-app", issued_at=NOW, sha=C2)
    evicted = git(evict, "evicted", branch="auto", sha=C2, old_sha=red, replayed={C1: C2})
    observed: list[Observed] = [
        (T0, "waveline.images", announce(APP_SHA)),
        (T0 + 10, "waveline.git.events", committed(intro, C1, {"staging": APP_SHA})),
        (T0 + 500, "waveline.git.commands", evict),  # not ours: no hop
        (T0 + 600, "waveline.git.events", evicted),
        (T0 + 900, "waveline.checks", check(C2, "success")),
        (T0 + 950, "waveline.git.commands", ff),
        (T0 + 1_000, "waveline.git.events", git(ff, "fast_forwarded", branch="master", sha=C2)),
    ]
    timeline = build_timeline(APP_SHA, observed)
    assert timeline is not None
    assert [h.name for h in timeline.hops][2:] == [
        f"{C1[:10]} replayed as {C2[:10]} on auto",
        f"check ci/validate success on {C2[:10]}",
        f"fast-forward command for {C2[:10]}",
        f"watched master fast-forwarded to {C2[:10]}",
    ]
    assert dict(timeline.summary)["staging: committed → watched"] == 990


def test_format_delta() -> None:
    assert [format_delta(ms) for ms in (0, 830, 2_414, 725_000, 10_920_000, -40)] == [
        "+0 ms",
        "+830 ms",
        "+2.41 s",
        "+12m05s",
        "+3h02m",
        "-40 ms",
    ]

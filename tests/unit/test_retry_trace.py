"""``waveline trace`` of a set retried after eviction: each attempt's command, commit and
eviction are hops, the later attempts named."""

from __future__ import annotations

from tests.support import APP_SHA
from tests.unit.test_trace import C1, C2, NOW, T0, _id, announce, check, committed, git, images
from waveline.cli.timeline import Observed, build_timeline
from waveline.services.git_writer.attempts import command_id
from waveline.shared.gitengine import trailers
from waveline.shared.models.git import Evict, FastForward, IntroduceImages


def intro(attempt: int) -> IntroduceImages:
    return IntroduceImages(
        command_id=command_id("app", "staging", APP_SHA, attempt),
        repo="cfg-app",
        issued_at=NOW,
        pipeline="app",
        wave="staging",
        app_sha=APP_SHA,
        images=images(APP_SHA),
        attempt=attempt,
    )


def test_attempts_are_hops_of_the_trace() -> None:
    first, second = intro(1), intro(2)
    evict = Evict(command_id=_id(), repo="cfg-app", issued_at=NOW, sha=C1)
    ff = FastForward(command_id=_id(), repo="cfg-app", issued_at=NOW, sha=C2)
    evicted = git(
        evict,
        "evicted",
        branch="auto",
        sha="00" * 20,
        old_sha=C1,
        trailers={trailers.EVENT_ID: str(first.command_id), trailers.APP_SHA: APP_SHA},
    )
    made = committed(second, C2, {"staging": APP_SHA}).model_copy(
        update={"trailers": {trailers.ATTEMPT: "2", trailers.EVENT_ID: str(second.command_id)}}
    )
    observed: list[Observed] = [
        (T0, "waveline.images", announce(APP_SHA)),
        (T0 + 5, "waveline.git.commands", first),
        (T0 + 10, "waveline.git.events", committed(first, C1, {"staging": APP_SHA})),
        (T0 + 400, "waveline.checks", check(C1, "failure")),
        (T0 + 500, "waveline.git.commands", evict),
        (T0 + 600, "waveline.git.events", evicted),
        (T0 + 5_000, "waveline.images", announce(APP_SHA)),
        (T0 + 5_010, "waveline.git.commands", second),
        (T0 + 5_020, "waveline.git.events", made),
        (T0 + 6_000, "waveline.checks", check(C2, "success")),
        (T0 + 6_010, "waveline.git.commands", ff),
        (T0 + 6_020, "waveline.git.events", git(ff, "fast_forwarded", branch="master", sha=C2)),
    ]
    timeline = build_timeline(APP_SHA, observed)
    assert timeline is not None
    assert [h.name for h in timeline.hops] == [
        "announced in app (1 service)",
        "introduce command → staging",
        f"committed on auto {C1[:10]} (staging)",
        f"check ci/validate failure on {C1[:10]}",
        f"evict command for {C1[:10]}",
        f"evicted {C1[:10]} from auto",
        "announced in app (1 service)",
        "introduce command → staging (attempt 2)",
        f"committed on auto {C2[:10]} (staging) (attempt 2)",
        f"check ci/validate success on {C2[:10]}",
        f"fast-forward command for {C2[:10]}",
        f"watched master fast-forwarded to {C2[:10]}",
    ]

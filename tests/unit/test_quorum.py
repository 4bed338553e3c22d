"""Quorum waves: the count a wave needs, and the status-tracker's verdict with it."""

from __future__ import annotations

import pytest

from waveline.services.status_tracker.decide import TargetReport, wave_verdict
from waveline.shared.quorum import required_healthy

FIVE = ["t1", "t2", "t3", "t4", "t5"]


def report(
    target: str, app: str | None, *, health: str = "Healthy", sync: str = "Synced", pos: int = 1
) -> TargetReport:
    phase = "Failed" if health == "Degraded" else "Succeeded"
    return TargetReport(target, f"c{pos}", phase, health, sync, app, float(pos), pos)


@pytest.mark.parametrize(
    ("targets", "spec", "need"),
    [(5, None, 5), (5, 4, 4), (200, "95%", 190), (5, "95%", 5), (3, "50%", 2), (1, "1%", 1)],
)
def test_required_healthy(targets: int, spec: int | str | None, need: int) -> None:
    assert required_healthy(targets, spec) == need


@pytest.mark.parametrize("spec", [0, 6, "0%", "101%", "95", "x%", True])
def test_required_healthy_refuses(spec: int | str) -> None:
    with pytest.raises(ValueError, match="min_healthy"):
        required_healthy(5, spec)


def test_four_of_five_runs_with_one_silent_target_listed() -> None:
    reports = {t: report(t, "X") for t in FIVE[:4]}
    assert wave_verdict(FIVE, reports).state == "deploying"  # every target by default
    result = wave_verdict(FIVE, reports, need=4)
    assert (result.state, result.app_sha, result.lagging) == ("running", "X", ("t5",))


def test_below_the_quorum_says_how_far() -> None:
    reports = {t: report(t, "X") for t in FIVE[:3]} | {"t4": report("t4", "X", sync="OutOfSync")}
    result = wave_verdict(FIVE, reports, need=4)
    assert result.state == "deploying"
    assert result.reason == "3/4 targets healthy on one set (of 5); lagging: ['t4', 't5']"


def test_a_degraded_target_fails_a_quorum_wave_unless_tolerated() -> None:
    reports = {t: report(t, "X") for t in FIVE[:4]} | {"t5": report("t5", "X", health="Degraded")}
    failing = wave_verdict(FIVE, reports, need=4)
    assert (failing.state, failing.reason) == ("failing", "t5: phase Failed, health Degraded")
    tolerated = wave_verdict(FIVE, reports, need=4, tolerate_degraded=True)
    assert (tolerated.state, tolerated.lagging) == ("running", ("t5",))
    # Tolerated but not enough healthy without it: still deploying, never running.
    assert wave_verdict(FIVE, reports, tolerate_degraded=True).state == "deploying"


def test_the_newest_set_wins_when_two_reach_the_quorum() -> None:
    reports = {
        "t1": report("t1", "OLD", pos=1),
        "t2": report("t2", "OLD", pos=1),
        "t3": report("t3", "NEW", pos=2),
        "t4": report("t4", "NEW", pos=2),
        "t5": report("t5", None, pos=3),  # a revision whose wave files are not a known set
    }
    result = wave_verdict(FIVE, reports, need=2)
    assert (result.state, result.app_sha, result.cfg_sha) == ("running", "NEW", "c2")
    assert result.lagging == ("t1", "t2", "t5")
    assert result.cfg_position == 3

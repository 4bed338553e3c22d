"""The status-tracker's rules, without I/O."""

from __future__ import annotations

from waveline.services.status_tracker.decide import TargetReport, verdict, wave_verdict

REQ = ["ci/validate", "lint"]


def test_commit_verdicts() -> None:
    assert verdict(REQ, {"ci/validate": "success", "lint": "success"}) == "green"
    assert verdict(REQ, {"ci/validate": "success", "lint": "pending"}) == "pending"
    assert verdict(REQ, {"ci/validate": "success"}) == "pending"
    assert verdict(REQ, {"ci/validate": "failure", "lint": "pending"}) == "red"
    assert verdict(REQ, {"ci/validate": "error", "lint": "success"}) == "red"
    # Contexts that are not required do not count either way.
    assert (
        verdict(REQ, {"ci/validate": "success", "lint": "success", "other": "failure"}) == "green"
    )
    assert verdict([], {}) == "green"


def report(
    target: str,
    app: str | None,
    *,
    health: str = "Healthy",
    sync: str = "Synced",
    phase: str = "Succeeded",
    at: float = 1.0,
    revision: str = "c1",
) -> TargetReport:
    return TargetReport(target, revision, phase, health, sync, app, at)


def test_wave_runs_when_every_target_is_healthy_on_the_same_set() -> None:
    targets = ["us", "eu"]
    assert wave_verdict(targets, {"us": report("us", "X")}).state == "deploying"
    both = {"us": report("us", "X", at=1), "eu": report("eu", "X", at=2, revision="c2")}
    result = wave_verdict(targets, both)
    assert (result.state, result.app_sha, result.cfg_sha) == ("running", "X", "c2")
    mixed = {"us": report("us", "X"), "eu": report("eu", "Y")}
    assert wave_verdict(targets, mixed).state == "deploying"
    unknown = {"us": report("us", None), "eu": report("eu", None)}
    assert wave_verdict(targets, unknown).state == "deploying"
    syncing = {"us": report("us", "X", sync="OutOfSync"), "eu": report("eu", "X")}
    assert wave_verdict(targets, syncing).state == "deploying"


def test_a_degraded_or_failed_target_marks_the_wave_failing() -> None:
    targets = ["us", "eu"]
    degraded = {"us": report("us", "X", health="Degraded"), "eu": report("eu", "X")}
    result = wave_verdict(targets, degraded)
    assert result.state == "failing"
    assert result.reason is not None and "us" in result.reason
    failed = {"us": report("us", "X", phase="Failed", health="Progressing")}
    assert wave_verdict(targets, failed).state == "failing"

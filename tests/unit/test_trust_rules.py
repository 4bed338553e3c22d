"""The rules that decide which deploy reports, checks, wave statuses and operator commands
count (docs/security.md, Deploy reports, checks, approvals), without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from waveline.services.promoter.trust import (
    Gate,
    approval_refusal,
    hold_refusal,
    release_refusal,
    stale_status,
)
from waveline.services.status_tracker.decide import (
    ChangeLog,
    TargetReport,
    report_fate,
    trusted_reporter,
    watched_tips,
    wave_verdict,
)
from waveline.shared.config import RepoConfig, RequiredCheck
from waveline.shared.models.git import GitEvent
from waveline.shared.models.operator import OperatorCommand

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
A, B, C, D = (c * 40 for c in "abcd")


# -- required checks and their reporters -------------------------------------------------


def test_required_checks_take_strings_and_objects() -> None:
    repo = RepoConfig(
        url="file:///r.git",
        required_checks=[
            "ci/any",
            {"name": "ci/validate", "app": "github-actions"},
            {"name": "ci/sign", "user": "release-bot"},
        ],
    )
    assert repo.required_check_names() == ("ci/any", "ci/validate", "ci/sign")
    assert repo.required_checks[0] == RequiredCheck(name="ci/any")
    with pytest.raises(ValidationError, match="an app or a user, not both"):
        RepoConfig(url="file:///r.git", required_checks=[{"name": "x", "app": "a", "user": "b"}])
    with pytest.raises(ValidationError):
        RepoConfig(url="file:///r.git", required_checks=[{"name": "x", "team": "a"}])


def test_a_required_check_counts_only_from_the_reporter_it_names() -> None:
    required = (
        RequiredCheck(name="ci/any"),
        RequiredCheck(name="ci/validate", app="github-actions"),
        RequiredCheck(name="ci/sign", user="release-bot"),
    )
    assert trusted_reporter(required, "ci/any", None, None)
    assert trusted_reporter(required, "ci/any", "evil-app", "mallory")
    assert trusted_reporter(required, "ci/validate", "github-actions", None)
    assert trusted_reporter(required, "ci/validate", "GitHub-Actions", "github-actions[bot]")
    assert not trusted_reporter(required, "ci/validate", "evil-app", None)
    assert not trusted_reporter(required, "ci/validate", None, "github-actions")
    assert not trusted_reporter(required, "ci/validate", None, None)
    assert trusted_reporter(required, "ci/sign", None, "Release-Bot")
    assert not trusted_reporter(required, "ci/sign", "release-bot", "mallory")
    # Not a required check: whoever reports it, it decides nothing.
    assert trusted_reporter(required, "other", "evil-app", "mallory")
    # The same context listed for two reporters: either counts.
    two = (RequiredCheck(name="ci", app="a"), RequiredCheck(name="ci", user="u"))
    assert trusted_reporter(two, "ci", "a", None)
    assert trusted_reporter(two, "ci", None, "u")
    assert not trusted_reporter(two, "ci", "b", "v")


# -- deploy reports ------------------------------------------------------------------------


def test_a_report_counts_only_on_watched_and_never_goes_back() -> None:
    later = T0 + timedelta(seconds=5)
    # Not known on watched: held until its commit is recorded.
    assert report_fate(None, T0, None, None) == "hold"
    assert report_fate(None, later, 7, T0) == "hold"
    # First report, or one after reports counted before positions existed.
    assert report_fate(3, T0, None, None) == "apply"
    assert report_fate(3, T0, None, later) == "apply"
    # A later position, whenever it arrives.
    assert report_fate(8, T0, 7, later) == "apply"
    # The same revision: the latest report of it wins; an older one is stale.
    assert report_fate(7, later, 7, T0) == "apply"
    assert report_fate(7, T0, 7, T0) == "apply"
    assert report_fate(7, T0, 7, later) == "stale"
    # An earlier revision, even reported after the newer one: stale.
    assert report_fate(6, later, 7, T0) == "stale"


def _event(**fields: object) -> GitEvent:
    base: dict[str, object] = {
        "event_id": uuid.uuid4(),
        "command_id": uuid.uuid4(),
        "repo": "cfg-app",
        "at": T0,
    }
    return GitEvent.model_validate({**base, **fields})


def test_what_a_git_event_says_watched_pointed_at() -> None:
    ff = _event(
        command_kind="fast_forward", outcome="fast_forwarded", branch="master", sha=B, old_sha=A
    )
    assert watched_tips(ff, "master") == [A, B]
    done = _event(command_kind="fast_forward", outcome="noop", branch="master", sha=B)
    assert watched_tips(done, "master") == [B]
    # An alignment reports auto's tip, its replayed commits and watched's tip.
    replayed = _event(
        command_kind="align",
        outcome="aligned",
        branch="auto",
        sha=D,
        replayed={A: C, B: D},
        wave_apps={D: {}, C: {}, B: {}},
    )
    assert watched_tips(replayed, "master") == [B]
    reset = _event(command_kind="align", outcome="aligned", branch="auto", sha=C, wave_apps={C: {}})
    assert watched_tips(reset, "master") == [C]
    ahead = _event(
        command_kind="align", outcome="noop", branch="auto", sha=D, wave_apps={D: {}, A: {}}
    )
    assert watched_tips(ahead, "master") == [A]
    # Commits on auto, refusals and failures say nothing about watched.
    committed = _event(command_kind="introduce", outcome="committed", branch="auto", sha=C)
    assert watched_tips(committed, "master") == []
    rejected = _event(command_kind="fast_forward", outcome="rejected", sha=C, old_sha=A)
    assert watched_tips(rejected, "master") == []
    odd = _event(command_kind="align", outcome="aligned", sha=D, wave_apps={D: {}, A: {}, B: {}})
    assert watched_tips(odd, "master") == []


def _report(target: str, app: str | None, position: int | None, **kw: object) -> TargetReport:
    fields: dict[str, object] = {
        "phase": "Succeeded",
        "health": "Healthy",
        "sync": "Synced",
        "reported_at": 1.0,
        "revision": f"r{position}",
    }
    fields.update(kw)
    return TargetReport(
        target,
        str(fields["revision"]),
        str(fields["phase"]),
        str(fields["health"]),
        str(fields["sync"]),
        app,
        float(str(fields["reported_at"])),
        position,
    )


def test_a_waves_position_is_its_latest_revision_on_watched_not_the_last_to_arrive() -> None:
    # eu reported last, but about an earlier commit holding the same set.
    reports = {
        "us": _report("us", "X", 9, reported_at=1.0),
        "eu": _report("eu", "X", 8, reported_at=2.0),
    }
    result = wave_verdict(["us", "eu"], reports)
    assert (result.state, result.cfg_sha, result.cfg_position) == ("running", "r9", 9)
    failing = {"us": _report("us", "X", 9), "eu": _report("eu", "X", 8, health="Degraded")}
    result = wave_verdict(["us", "eu"], failing)
    assert (result.state, result.cfg_sha, result.cfg_position) == ("failing", "r8", 9)


def test_refusals_log_once_per_change() -> None:
    log = ChangeLog(limit=2)
    assert log.changed("t1", "stale")
    assert not log.changed("t1", "stale")
    assert log.changed("t1", None)
    assert not log.changed("t1", None)
    assert not log.changed("t2", None)  # an unseen key is fine until it is not
    assert log.changed("t2", "not_on_watched")
    log.changed("t3", "x")
    log.changed("t4", "x")
    assert log.changed("t2", "not_on_watched")  # forgotten: bounded


# -- the promoter --------------------------------------------------------------------------


def test_a_wave_status_about_an_earlier_position_is_stale() -> None:
    assert not stale_status(5, None)
    assert not stale_status(None, None)
    assert not stale_status(5, 5)
    assert not stale_status(6, 5)
    assert stale_status(4, 5)
    assert stale_status(None, 5)


def test_an_approval_counts_only_for_a_set_still_waiting() -> None:
    assert approval_refusal(A, "waiting", approved=False) is None
    assert approval_refusal(A, "blocked", approved=False) is None
    superseded = approval_refusal(A, "superseded", approved=False)
    assert superseded is not None and "needs its own approval" in superseded
    assert approval_refusal(A, "requested", approved=False) is not None
    assert approval_refusal(A, None, approved=False) is not None
    # The approval that counted, delivered again: nothing new, nothing refused.
    assert approval_refusal(A, "done", approved=True) is None


def test_a_replayed_hold_or_release_changes_nothing() -> None:
    hold_1, hold_2 = uuid.uuid4(), uuid.uuid4()
    held = Gate(True, hold_1, T0)
    released = Gate(False, None, T0 + timedelta(minutes=1))
    # A first hold, a newer one, and a redelivery of the one in force apply.
    assert hold_refusal(None, hold_1, T0) is None
    assert hold_refusal(Gate(False, None, None), hold_1, T0) is None
    assert hold_refusal(released, hold_2, T0 + timedelta(minutes=2)) is None
    assert hold_refusal(held, hold_1, T0) is None
    # The first hold replayed after its release: refused.
    assert hold_refusal(released, hold_1, T0) is not None
    # A release ends only the hold it names.
    later = T0 + timedelta(minutes=5)
    assert release_refusal(held, hold_1, later) is None
    assert release_refusal(held, hold_2, later) is not None
    assert release_refusal(Gate(True, hold_2, T0), hold_1, later) is not None
    assert release_refusal(released, hold_1, later) is not None
    assert release_refusal(None, hold_1, later) is not None
    # ... and its own redelivery, once the gate is open, changes nothing.
    assert release_refusal(released, hold_1, released.changed_at or T0) is None


def test_approvals_and_releases_without_what_they_name_are_refused() -> None:
    base = {
        "event_id": uuid.uuid4(),
        "pipeline": "app",
        "wave": "production",
        "issued_at": T0,
    }
    with pytest.raises(ValidationError, match="names the image set it approves"):
        OperatorCommand.model_validate({**base, "action": "approve"})
    with pytest.raises(ValidationError, match="names the hold it ends"):
        OperatorCommand.model_validate({**base, "action": "release"})
    # A hold without a set is fine: nothing may have waited, and holding never advances.
    assert OperatorCommand.model_validate({**base, "action": "hold"}).app_sha is None
    approve = OperatorCommand.model_validate({**base, "action": "approve", "app_sha": A})
    assert approve.app_sha == A

"""The reconciler's rules and GitHub/Argo CD readings, without I/O (docs/reconcile.md)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from waveline.services.reconciler import rules
from waveline.services.reconciler.checks import Gate
from waveline.services.reconciler.rules import PendingCommit, PollState, TargetView
from waveline.shared.argocd_api import ArgoCdError, application_report
from waveline.shared.config import RequiredCheck
from waveline.shared.forge.base import ForgeError
from waveline.shared.forge.github_checks import (
    CommitCheck,
    RateLimit,
    RateLimited,
    parse_check_runs,
    parse_check_suites,
    parse_statuses,
)
from waveline.shared.reconcile_config import ReconcileSettings

SHA = "a" * 40


def test_backoff_doubles_from_the_first_delay_up_to_the_cap() -> None:
    delays = [rules.next_delay(n, 2.0, 30.0) for n in range(7)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert rules.next_delay(10_000, 2.0, 30.0) == 30.0  # no overflow
    state = rules.after_poll(None, 100.0, 2.0, 30.0)
    assert state == PollState(1, 102.0)
    assert not rules.due(state, 101.9)
    assert rules.due(state, 102.0)
    assert rules.after_poll(state, 102.0, 2.0, 30.0) == PollState(2, 106.0)
    assert rules.due(None, 0.0)


def test_commits_wait_their_delay_then_their_backoff_oldest_first() -> None:
    young = PendingCommit("r", "1" * 40, 10.0)
    old = PendingCommit("r", "2" * 40, 90.0)
    older = PendingCommit("r", "3" * 40, 300.0)
    polls = {("r", older.sha): PollState(1, 50.0)}
    assert rules.commits_due([young, old, older], polls, 40.0, 60.0) == [old]
    assert rules.commits_due([young, old, older], polls, 50.0, 60.0) == [older, old]
    assert rules.commits_due([young], {}, 0.0, 5.0) == [young]


def test_budget_keeps_the_others_share_then_waits_for_the_reset() -> None:
    now = 1_000.0
    # 5000/h, 4000 left, share 0.5: 1500 more calls may go at once.
    rate = RateLimit(limit=5000, remaining=4000, reset_at=now + 1000)
    assert rules.budget_wait(rate, 0.5, now) == 0.0
    assert rules.budget_wait(RateLimit(5000, 2501, now + 600), 0.5, now) == 0.0
    # At the others' reserve (what they spent counts too): wait for the reset.
    low = RateLimit(limit=5000, remaining=2500, reset_at=now + 600)
    assert rules.budget_wait(low, 0.5, now) == pytest.approx(600)
    assert rules.budget_wait(low, 0.9, now) == 0.0
    assert rules.budget_wait(RateLimit(8, 4, now + 2), 0.5, now) == pytest.approx(2)
    # Retry-After wins; missing headers: no wait.
    assert rules.budget_wait(RateLimit(retry_after_s=7), 0.5, now) == 7
    assert rules.budget_wait(RateLimit(), 0.5, now) == 0.0
    # A reset already past never waits a negative time.
    assert rules.budget_wait(RateLimit(5000, 0, now - 5), 0.5, now) == 0.0


def test_a_refusal_waits_what_github_asked_or_a_minute() -> None:
    now = 0.0
    assert rules.refusal_wait(12.0, RateLimit(), 0.5, now) == 12.0
    assert rules.refusal_wait(None, RateLimit(), 0.5, now) == 60.0
    reset_far = RateLimit(limit=60, remaining=0, reset_at=now + 900)
    assert rules.refusal_wait(None, reset_far, 0.5, now) == 900.0


def test_rate_limit_headers_are_read_leniently() -> None:
    rate = RateLimit.from_headers(
        {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "4999",
            "X-RateLimit-Reset": "1700000000",
            "Retry-After": "30",
        }
    )
    assert rate == RateLimit(5000, 4999, 1_700_000_000.0, 30.0)
    bad = RateLimit.from_headers({"X-RateLimit-Remaining": "lots", "Retry-After": "-1"})
    assert bad == RateLimit()


REQUIRED = (
    RequiredCheck(name="ci/validate"),
    RequiredCheck(name="build", app="ci-app"),
    RequiredCheck(name="sign", user="release-bot"),
)


def check(context: str, state: str, app: str | None = None, user: str | None = None) -> CommitCheck:
    return CommitCheck(context, state, "status", app, user)  # type: ignore[arg-type]


def test_verdicts_take_the_newest_from_a_trusted_reporter_and_skip_pending() -> None:
    checks = [  # newest first, as the forge lists them
        check("build", "failure", app="intruder"),
        check("build", "success", app="ci-app"),
        check("ci/validate", "pending", user="someone"),
        check("ci/validate", "failure", user="someone"),
        check("sign", "success", user="mallory"),
        check("docs", "failure"),
    ]
    found = rules.verdicts(REQUIRED, checks)
    # build: the trusted App's; ci/validate: the newest is pending, which decides nothing
    # (an older failure must not stand in for it); sign: nobody trusted; docs: not required.
    assert found == {"build": check("build", "success", app="ci-app")}
    assert rules.verdicts(REQUIRED, [check("sign", "failure", user="Release-Bot")]) == {
        "sign": check("sign", "failure", user="Release-Bot")
    }


def test_learned_is_what_the_status_tracker_does_not_hold() -> None:
    found = {
        "build": check("build", "success", app="ci-app"),
        "ci/validate": check("ci/validate", "failure"),
    }
    assert rules.learned(found, {"build": "success", "ci/validate": "pending"}) == [
        found["ci/validate"]
    ]
    assert rules.learned(found, {}) == [found["build"], found["ci/validate"]]
    assert rules.learned(found, {"build": "success", "ci/validate": "failure"}) == []
    assert rules.needs_suites((RequiredCheck(name="check_suite:ci-app"),))
    assert not rules.needs_suites(REQUIRED)


def view(target: str, app: str | None, sync: str = "Synced", health: str = "Healthy") -> TargetView:
    return TargetView(target, app, sync, health)


def test_waiting_targets_are_those_not_healthy_on_the_set_the_tip_holds() -> None:
    targets = ["us", "eu", "ap"]
    reports = {"us": view("us", "X"), "eu": view("eu", "X", health="Progressing")}

    def waiting(expected: str | None, running: str | None, age: float) -> list[str]:
        return rules.waiting_targets(
            targets, expected, running, tip_age_s=age, after_s=30.0, reports=reports
        )

    assert waiting("X", None, 31.0) == ["eu", "ap"]
    assert waiting("X", None, 29.0) == []  # not waited long enough
    assert waiting("X", "X", 999.0) == []  # the wave runs what it holds
    assert waiting(None, None, 999.0) == []  # the wave holds nothing at the tip
    # A new set at the tip: every target, healthy on the old set or not, is waited for.
    assert waiting("Y", "X", 31.0) == ["us", "eu", "ap"]


def test_statuses_name_their_creator_as_a_webhook_sender() -> None:
    doc = [
        {
            "state": "success",
            "context": "build",
            "creator": {"login": "ci-app[bot]", "type": "Bot"},
        },
        {
            "state": "failure",
            "context": "sign",
            "creator": {"login": "release-bot", "type": "User"},
        },
        {"state": "pending", "context": "lint", "creator": None},
        {"state": "weird", "context": "x"},
        {"state": "success", "context": ""},
    ]
    assert parse_statuses(doc) == (
        CommitCheck("build", "success", "status", "ci-app", "ci-app[bot]"),
        CommitCheck("sign", "failure", "status", None, "release-bot"),
        CommitCheck("lint", "pending", "status", None, None),
    )
    with pytest.raises(ForgeError):
        parse_statuses({"statuses": []})


def test_check_runs_and_suites_read_as_their_webhooks() -> None:
    runs = {
        "total_count": 3,
        "check_runs": [
            {"name": "build", "status": "completed", "conclusion": "success",
             "completed_at": "2026-01-01T00:00:01Z", "app": {"slug": "ci-app"},
             "check_suite": {"head_branch": "auto"}},
            {"name": "build", "status": "completed", "conclusion": "failure",
             "completed_at": "2026-01-01T00:00:09Z", "app": {"slug": "ci-app"}},
            {"name": "lint", "status": "in_progress", "conclusion": None,
             "started_at": "2026-01-01T00:00:05Z", "app": {"slug": "ci-app"}},
            {"name": "skip", "status": "completed", "conclusion": "skipped"},
        ],
    }  # fmt: skip
    assert parse_check_runs(runs) == (
        CommitCheck("build", "failure", "check_run", "ci-app"),
        CommitCheck("lint", "pending", "check_run", "ci-app"),
        CommitCheck("build", "success", "check_run", "ci-app", None, "auto"),
        CommitCheck("skip", "success", "check_run"),
    )
    suites = {
        "check_suites": [
            {"status": "completed", "conclusion": "neutral", "app": {"slug": "ci-app"},
             "head_branch": "auto", "updated_at": "2026-01-01T00:00:01Z"},
            {"status": "queued", "conclusion": None, "app": {"name": "Other"}},
        ]
    }  # fmt: skip
    assert parse_check_suites(suites) == (
        CommitCheck("check_suite:ci-app", "success", "check_suite", "ci-app", None, "auto"),
        CommitCheck("check_suite:Other", "pending", "check_suite"),
    )
    with pytest.raises(ForgeError):
        parse_check_runs([])


def application(**status: object) -> dict[str, object]:
    return {"metadata": {"name": "staging-us"}, "spec": {}, "status": status}


def test_an_application_reads_as_its_notification() -> None:
    report = application_report(
        "staging-us",
        application(
            sync={"status": "Synced", "revision": SHA},
            health={"status": "Healthy"},
            operationState={"phase": "Succeeded", "syncResult": {"revision": SHA}},
        ),
    )
    assert report is not None
    assert (report.app, report.revision, report.phase, report.health, report.sync) == (
        "staging-us",
        SHA,
        "Succeeded",
        "Healthy",
        "Synced",
    )
    # Nothing synced yet, a multi-source Application, a chart version: no single revision.
    assert application_report("a", application(sync={"status": "OutOfSync"})) is None
    multi = application(sync={"status": "Synced", "revisions": [SHA, SHA]})
    assert application_report("a", multi) is None
    assert application_report("a", application(sync={"revision": "1.2.3"})) is None
    # No operation yet: an empty phase.
    bare = application_report("a", application(sync={"revision": SHA}))
    assert bare is not None and (bare.phase, bare.health, bare.sync) == ("", "", "")
    with pytest.raises(ArgoCdError) as refused:
        application_report("a", {"metadata": {}})
    assert not refused.value.retriable
    assert ArgoCdError("x", status=503).retriable and not ArgoCdError("x", status=403).retriable


def test_argocd_address_needs_its_token_and_keeps_it_off_plain_http() -> None:
    token = SecretStr("argocd-api-token-x")
    ok = ReconcileSettings(argocd_api_url="https://argocd.example/", argocd_api_token=token)
    assert ok.argocd_configured() and ok.argocd_api_url == "https://argocd.example"
    assert ReconcileSettings(argocd_api_url="http://127.0.0.1:8080", argocd_api_token=token)
    with pytest.raises(ValidationError, match="needs WAVELINE_ARGOCD_API_TOKEN"):
        ReconcileSettings(argocd_api_url="https://argocd.example")
    assert not ReconcileSettings(argocd_api_token=token).argocd_configured()
    with pytest.raises(ValidationError, match="in clear"):
        ReconcileSettings(argocd_api_url="http://argocd-server.argocd.svc", argocd_api_token=token)
    insecure = ReconcileSettings(
        argocd_api_url="http://argocd-server.argocd.svc",
        argocd_api_token=token,
        argocd_api_allow_insecure_http=True,
    )
    assert insecure.argocd_configured()
    with pytest.raises(ValidationError):
        ReconcileSettings(reconcile_budget_share=0)


def test_a_gate_pauses_calls_on_a_refusal_and_after_the_share_is_spent() -> None:
    gate = Gate(share=0.5)
    assert gate.delay(100.0) == 0.0
    gate.answered(RateLimit(limit=10, remaining=6, reset_at=130.0), 100.0)
    assert gate.delay(100.0) == 0.0
    gate.answered(RateLimit(limit=10, remaining=5, reset_at=130.0), 101.0)
    assert gate.delay(101.0) == pytest.approx(29.0)
    refusal = RateLimited("limited", status=429, rate=RateLimit(), wait_s=3.0)
    gate.refused(refusal, 200.0)
    assert gate.delay(201.0) == pytest.approx(2.0) and gate.delay(203.0) == 0.0

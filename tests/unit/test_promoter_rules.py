"""The promoter's rules (services/promoter/rules.py) without Kafka or PostgreSQL: promotion
states, each gate case and when it opens, the next wave, supersession, the rollback target."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest

from waveline.services.promoter import rules
from waveline.services.promoter.freeze import BreakGlass, ManualFreeze
from waveline.services.promoter.rules import (
    OPEN,
    GateFacts,
    PromotionFacts,
    WaveRun,
    arrival,
    closed_gates,
    gate,
    next_wave,
    rollback_target,
    superseded_at_gate,
)
from waveline.services.promoter.verify_rules import RunState
from waveline.shared.config import PipelineConfig, WaveConfig
from waveline.shared.freeze_config import FreezeWindows
from waveline.shared.models.promotions import TERMINAL as EVENT_TERMINAL
from waveline.shared.models.promotions import PromotionStatus
from waveline.shared.verify_config import Verification

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
A, B, C = (c * 40 for c in "abc")


def _wave(bake: str = "0s", approval: bool = False, name: str = "prod") -> WaveConfig:
    return WaveConfig.model_validate(
        {"name": name, "targets": ["t"], "gate": {"bake": bake, "approval": approval}}
    )


def _pipeline(*names: str) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"repo": "r", "waves": [{"name": n, "targets": [f"{n}-t"]} for n in names]}
    )


def _facts(**kw: object) -> GateFacts:
    base: dict[str, object] = {"app_sha": A, "from_wave": "staging", "since": T0}
    return GateFacts(**(base | kw))  # type: ignore[arg-type]


def _p(
    app_sha: str, state: rules.PromotionState, minute: int, kind: str = "promote"
) -> PromotionFacts:
    return PromotionFacts(
        uuid.uuid5(uuid.NAMESPACE_URL, f"{app_sha}/{state}/{minute}/{kind}"),
        app_sha,
        kind,  # type: ignore[arg-type]
        state,
        T0 + timedelta(minutes=minute),
    )


# -- states ---------------------------------------------------------------------------------


def test_the_states_are_the_events_states_plus_the_promoters_own() -> None:
    assert set(rules.STATES) == set(get_args(PromotionStatus)) | {"waiting", "blocked"}
    assert rules.TERMINAL == EVENT_TERMINAL
    # Every state is in exactly one group: at the gate, in flight, or ended.
    groups = (rules.AT_GATE, rules.IN_FLIGHT, rules.TERMINAL)
    for state in rules.STATES:
        assert sum(state in g for g in groups) == 1, state
    assert rules.is_terminal("superseded") and not rules.is_terminal("opened")
    assert {"waiting", "blocked"} == rules.APPROVABLE
    # An open pull request is the notifier's to supersede, not overtaken by an arrival.
    assert {"requested", "committed", "delivered"} == rules.OVERTAKEN
    assert "requested" not in rules.MIRRORED and "committed" not in rules.MIRRORED
    assert {"opened", "delivered", "done", "failed", "cancelled"} <= rules.MIRRORED


def test_reports_end_a_promotion() -> None:
    assert rules.result_state("succeeded") == "done"
    assert rules.result_state("failed") == "failed"
    assert rules.pull_request_end(merged=True) == "done"
    assert rules.pull_request_end(merged=False) == "cancelled"


# -- the gate -------------------------------------------------------------------------------


def test_no_gate_configured_is_open() -> None:
    assert gate(_facts(), _wave(), T0) == OPEN
    assert OPEN.is_open and OPEN.to_json() == {
        "open": True,
        "waiting_for": None,
        "reason": "open",
        "until": None,
    }


def test_bake_waits_until_the_set_ran_long_enough_in_the_source_wave() -> None:
    wave = _wave(bake="10m")
    verdict = gate(_facts(), wave, T0 + timedelta(minutes=4))
    assert verdict.waiting_for == "bake"
    assert verdict.until == T0 + timedelta(minutes=10)
    assert "staging" in verdict.reason
    assert verdict.to_json()["until"] == "2026-12-07T12:10:00+00:00"
    # Open at the exact end of the bake, not a tick later.
    assert gate(_facts(), wave, T0 + timedelta(minutes=10)).is_open


def test_approval_waits_for_one_naming_the_set_and_has_no_until() -> None:
    wave = _wave(approval=True)
    verdict = gate(_facts(), wave, T0)
    assert verdict.waiting_for == "approval" and verdict.until is None
    assert A[:12] in verdict.reason
    assert gate(_facts(approved=True), wave, T0).is_open


def test_a_hold_shuts_the_gate_whatever_else_is_open() -> None:
    verdict = gate(_facts(held=True, held_by="alice", approved=True), _wave(), T0)
    assert verdict.waiting_for == "hold" and "alice" in verdict.reason
    assert verdict.until is None
    assert gate(_facts(held=True), _wave(), T0).reason == "prod is held"


def test_the_first_closed_gate_wins_in_the_documented_order() -> None:
    wave = _wave(bake="1h", approval=True)
    facts = _facts(held=True)
    now = T0 + timedelta(minutes=1)
    assert [v.waiting_for for v in closed_gates(facts, wave, now)] == ["hold", "bake", "approval"]
    assert gate(facts, wave, now).waiting_for == "hold"
    assert gate(_facts(), wave, now).waiting_for == "bake"
    assert gate(_facts(), wave, T0 + timedelta(hours=1)).waiting_for == "approval"
    assert closed_gates(_facts(approved=True), wave, T0 + timedelta(hours=1)) == []
    assert [c.__name__ for c in rules.GATE_ORDER] == [
        "hold_gate",
        "quarantine_gate",
        "freeze_gate",
        "verification_gate",
        "bake_gate",
        "approval_gate",
    ]


def _ready(attempts: int = 3) -> Verification:
    return Verification.model_validate(
        {"name": "ready", "http": {"url": "http://svc/healthz"}, "attempts": attempts}
    )


def test_verification_of_the_source_wave_closes_the_gate_until_passed() -> None:
    checks = (_ready(),)
    running = gate(_facts(verifications=checks), _wave(), T0)
    assert running.waiting_for == "verification" and running.until is None
    assert "verifying ready" in running.reason
    one_in = {"ready": RunState(measurements=1)}
    assert "1/3" in gate(_facts(verifications=checks, verification_runs=one_in), _wave(), T0).reason
    failed = {"ready": RunState(status="failed", reason="status 503, expected 200")}
    verdict = gate(_facts(verifications=checks, verification_runs=failed), _wave(), T0)
    assert verdict.waiting_for == "verification" and verdict.reason.startswith("failed: ")
    passed = {"ready": RunState(status="passed", measurements=1)}
    assert gate(_facts(verifications=checks, verification_runs=passed), _wave(), T0).is_open
    # Before bake: a set still verifying shows that, not the bake, as what it waits for.
    baking = gate(_facts(verifications=checks), _wave(bake="1h"), T0)
    assert baking.waiting_for == "verification"


def _manual(scope: str = "all", wave: str | None = None) -> ManualFreeze:
    return ManualFreeze(scope, "shop" if scope != "all" else None, wave, "release week", "ops", T0)  # type: ignore[arg-type]


def test_a_freeze_window_closes_the_gate_until_it_ends() -> None:
    window = FreezeWindows.model_validate(
        {"windows": [{"cron": "0 12 * * *", "duration": "2h", "reason": "lunch deploys"}]}
    )
    facts = _facts(pipeline="shop", freeze_windows=(window,))
    verdict = gate(facts, _wave(), T0 + timedelta(minutes=30))
    assert verdict.waiting_for == "freeze" and verdict.reason == "lunch deploys"
    assert verdict.until == T0 + timedelta(hours=2)
    assert gate(facts, _wave(), T0 + timedelta(hours=2)).is_open
    # A freeze comes before bake and approval, after a hold.
    wave = _wave(bake="1h", approval=True)
    assert gate(facts, wave, T0).waiting_for == "freeze"
    assert (
        gate(_facts(pipeline="shop", freeze_windows=(window,), held=True), wave, T0).waiting_for
        == "hold"
    )


def test_a_manual_freeze_has_no_end_and_break_glass_lets_one_promotion_through() -> None:
    facts = _facts(pipeline="shop", manual_freezes=(_manual(),), created_at=T0)
    verdict = gate(facts, _wave(), T0 + timedelta(days=3))
    assert verdict.waiting_for == "freeze" and verdict.until is None
    assert "ops" in verdict.reason and "release week" in verdict.reason
    # Another wave's freeze does not apply.
    other = _facts(pipeline="shop", manual_freezes=(_manual("wave", "dev"),))
    assert gate(other, _wave(), T0).is_open
    glass = BreakGlass("shop", "prod", A, "hotfix", "ops", T0 + timedelta(minutes=1))
    assert gate(replace(facts, break_glasses=(glass,)), _wave(), T0 + timedelta(hours=1)).is_open
    # A break-glass of another set, or made before this promotion, does not count.
    for stale in (replace(glass, app_sha=B), replace(glass, created_at=T0 - timedelta(1))):
        assert not gate(replace(facts, break_glasses=(stale,)), _wave(), T0 + timedelta(1)).is_open


def test_a_quarantined_set_waits_whatever_else_is_open_and_names_the_way_out() -> None:
    wave = _wave()
    why = "rolled back out of prod by alice at 2026-12-07T10:00:00+00:00: rolled back to 1111"
    facts = _facts(approved=True, pipeline="shop", quarantined=why)
    verdict = gate(facts, wave, T0 + timedelta(hours=1))
    assert verdict.waiting_for == "quarantine"
    assert why in verdict.reason
    assert f"waveline unquarantine shop {facts.app_sha}" in verdict.reason
    assert verdict.until is None  # only an operator ends it
    # After a hold, before everything else; and an introduction of it waits too.
    held = replace(facts, held=True)
    assert [v.waiting_for for v in closed_gates(held, wave, T0)] == ["hold", "quarantine"]
    intro = replace(facts, from_wave="", introduction=True)
    assert gate(intro, wave, T0).waiting_for == "quarantine"
    assert gate(replace(facts, quarantined=None), wave, T0).is_open


def test_an_introduction_waits_for_a_freeze_only() -> None:
    window = FreezeWindows.model_validate(
        {"ranges": [{"start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()}]}
    )
    intro = _facts(
        from_wave="", pipeline="shop", introduction=True, freeze_windows=(window,), held=True
    )
    # The first wave has no gate: a hold, a bake or an approval does not stop it.
    first = _wave(bake="1h", approval=True, name="dev")
    assert [v.waiting_for for v in closed_gates(intro, first, T0)] == ["freeze"]
    assert gate(intro, first, T0 + timedelta(hours=1)).is_open
    # introductions: allowed -> only a manual freeze of that very wave stops them.
    allowed = replace(intro, introductions_allowed=True, manual_freezes=(_manual(),))
    assert gate(allowed, first, T0).is_open
    named = replace(allowed, manual_freezes=(_manual("wave", "dev"),))
    assert gate(named, first, T0).waiting_for == "freeze"


# -- next wave ----------------------------------------------------------------------------


def test_next_wave_and_the_last_one() -> None:
    pipeline = _pipeline("dev", "staging", "prod")
    assert next_wave(pipeline, "dev") == "staging"
    assert next_wave(pipeline, "staging") == "prod"
    assert next_wave(pipeline, "prod") is None
    assert next_wave(_pipeline("only"), "only") is None
    with pytest.raises(ValueError):
        next_wave(pipeline, "qa")


# -- supersession -------------------------------------------------------------------------


def test_a_newer_set_supersedes_the_one_waiting_at_the_gate_only() -> None:
    waiting_a = _p(A, "waiting", 1)
    blocked_b = _p(B, "blocked", 2)
    requested_b = _p(B, "requested", 3)
    rollback = _p(B, "waiting", 4, kind="rollback")
    into = [waiting_a, blocked_b, requested_b, rollback]
    assert superseded_at_gate(into, C) == [waiting_a.promotion_id]
    # Its own promotion (a redelivery) is never superseded by itself.
    assert superseded_at_gate(into, A) == []
    assert superseded_at_gate([], C) == []


def test_arrival_finishes_the_sets_promotions_and_supersedes_older_ones() -> None:
    old_committed = _p(A, "committed", 1)
    old_open_pr = _p(A, "opened", 2)
    old_waiting = _p(A, "waiting", 3)
    mine_done_before = _p(B, "done", 4, kind="introduce")
    mine = _p(B, "delivered", 5)
    newer = _p(C, "requested", 6)
    result = arrival([old_committed, old_open_pr, old_waiting, mine_done_before, mine, newer], B)
    assert result.done == (mine.promotion_id,)
    # Done ones are announced again: a redelivery sends what a failed publish did not.
    assert set(result.announce) == {mine.promotion_id, mine_done_before.promotion_id}
    # Older than the set's first promotion into the wave, in flight, not an open PR.
    assert result.overtaken == (old_committed.promotion_id,)


def test_arrival_of_a_set_never_sent_there_overtakes_nothing() -> None:
    # A rollback recorded under another id, or a wave moved outside Waveline.
    result = arrival([_p(A, "committed", 1)], B)
    assert result == rules.Arrival((), (), ())


def test_a_set_superseded_while_baking_is_not_sent_when_its_bake_ends() -> None:
    # A waiting at prod's gate, baking; B arrives in staging and is queued: A superseded.
    into = [_p(A, "waiting", 1)]
    assert superseded_at_gate(into, B) == [into[0].promotion_id]
    # Superseded is final: no later report moves it, no arrival marks it done.
    assert rules.is_terminal("superseded")
    later = arrival([_p(A, "superseded", 1)], A)
    assert later.done == () and later.announce == ()


# -- rollback target ------------------------------------------------------------------------


def _run(app_sha: str, minute: int) -> WaveRun:
    return WaveRun(app_sha, f"cfg-{app_sha[0]}", T0 + timedelta(minutes=minute))


def test_rollback_goes_to_the_previous_run_or_the_named_set() -> None:
    runs = [_run(A, 1), _run(C, 3), _run(B, 2)]  # any order in
    assert rollback_target(runs, None) == _run(B, 2)
    assert rollback_target(runs, "previous") == _run(B, 2)
    assert rollback_target(runs, A) == _run(A, 1)
    assert rollback_target(runs, "f" * 40) is None


def test_a_rollback_waits_only_for_a_run_the_tracker_reported_moments_ago() -> None:
    """The e2e race this guards: staging shown running B (the tracker's wave status), the
    operator asks for "previous", and the promoter has not read that status yet."""
    waits = rules.run_not_recorded_yet
    only_a = [_run(A, 1)]
    started = T0 + timedelta(minutes=2)
    assert waits(only_a, (B, started), started + timedelta(seconds=1))
    assert waits(only_a, (B, started), started + rules.RUN_RECORD_GRACE - timedelta(seconds=1))
    # Too long ago to be in flight: a real refusal.
    assert not waits(only_a, (B, started), started + rules.RUN_RECORD_GRACE)
    # Recorded already (the rollback found no target for another reason), or nothing runs.
    assert not waits([*only_a, _run(B, 2)], (B, started), started)
    assert not waits(only_a, None, started)
    assert not waits(only_a, (A, T0), T0)


def test_a_set_run_again_at_another_commit_is_verified_again() -> None:
    assert not rules.verify_again(None, "c1")  # first run: started, not over again
    assert not rules.verify_again("c1", "c1")  # a redelivered status
    assert rules.verify_again("c1", "c2")  # a rollback to it


def test_rollback_without_history() -> None:
    assert rollback_target([], None) is None
    assert rollback_target([], A) is None
    assert rollback_target([_run(A, 1)], "previous") is None
    assert rollback_target([_run(A, 1)], A) == _run(A, 1)

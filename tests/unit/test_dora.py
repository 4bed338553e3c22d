"""DORA numbers of a scripted history, against values computed by hand (shared/dora.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from waveline.shared.dora import Announced, Durations, Fact, Failure, WaveRan, compute
from waveline.shared.models.images import ImageSetAnnounced

T0 = datetime(2026, 12, 1, tzinfo=UTC)
WAVES = {"app": ["staging", "prod"]}


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def history() -> list[Fact]:
    """Two days of one pipeline (hours from T0):

    before the window, s0 runs in both waves;
    A1: committed -1, announced 0, staging 1, prod 3;
    A2: announced 10, its commit into staging evicted at 10h10;
    A3: announced 12, staging 13, staging failing 14, recovered on A3 at 14h30, prod 16,
        its verification fails in prod at 17, prod rolled back at 17h10 and runs A1 at 17h40;
    A4: committed 19, announced 20, staging 21, prod 25;
    A5: announced 30, staging 31, staging failing 40 (never restored);
    after the window (50), prod runs A5: ignored.
    """
    return [
        Announced("app", "s0", h(-2)),
        WaveRan("app", "staging", "s0", h(-1)),
        WaveRan("app", "prod", "s0", h(-0.5)),
        Announced("app", "A1", h(0), committed_at=h(-1)),
        WaveRan("app", "staging", "A1", h(1)),
        WaveRan("app", "prod", "A1", h(3)),
        Announced("app", "A2", h(10)),
        Failure("app", "staging", "evicted", h(10 + 10 / 60), "A2"),
        Announced("app", "A3", h(12)),
        WaveRan("app", "staging", "A3", h(13)),
        Failure("app", "staging", "failed", h(14), "A3"),
        WaveRan("app", "staging", "A3", h(14.5)),
        WaveRan("app", "prod", "A3", h(16)),
        Failure("app", "prod", "verification", h(17), "A3"),
        Failure("app", "prod", "rollback", h(17 + 10 / 60)),
        WaveRan("app", "prod", "A1", h(17 + 40 / 60)),
        Announced("app", "A4", h(20), committed_at=h(19)),
        WaveRan("app", "staging", "A4", h(21)),
        WaveRan("app", "prod", "A4", h(25)),
        Announced("app", "A5", h(30)),
        WaveRan("app", "staging", "A5", h(31)),
        Failure("app", "staging", "failed", h(40), "A5"),
        WaveRan("app", "prod", "A5", h(50)),
    ]


def test_the_scripted_history_over_two_days() -> None:
    [app] = compute(history(), WAVES, since=h(0), until=h(48))
    staging, prod = app.waves
    # staging: A1, A3, A4, A5 (A3's recovery is no new deployment); failed: A2 evicted,
    # A3 and A5 failing; restored once in 30 min; A5's failure still open.
    assert (staging.deployments, staging.deployments_per_day) == (4, 2.0)
    assert (staging.failed_changes, staging.change_failure_rate) == (3, 0.75)
    assert staging.time_to_restore == Durations(1, 1800.0, 1800.0)
    assert staging.open_failures == 1
    # prod: A1, A3, A1 again (the rollback), A4; A3 failed its verification and was
    # rolled back (one failed change); restored 40 min after the failed verification.
    assert (prod.deployments, prod.deployments_per_day) == (4, 2.0)
    assert (prod.failed_changes, prod.change_failure_rate) == (1, 0.25)
    assert prod.time_to_restore == Durations(1, 2400.0, 2400.0)
    assert prod.open_failures == 0
    # Lead times to prod: A1 from its commit (-1 -> 3: 4 h), A3 from its announcement
    # (12 -> 16: 4 h), A4 from its commit (19 -> 25: 6 h); A1's return is no new change.
    assert app.deployments == 4
    assert app.deployments_per_day == 2.0
    assert app.lead_time == Durations(3, 4 * 3600.0, 6 * 3600.0)
    assert (app.failed_changes, app.all_deployments, app.change_failure_rate) == (4, 8, 0.5)
    assert app.time_to_restore == Durations(2, 2100.0, 2400.0)
    assert app.open_failures == 1
    assert app.failures_by_kind == {"evicted": 1, "failed": 2, "rollback": 1, "verification": 1}


def test_a_later_window_keeps_the_state_it_starts_from() -> None:
    [app] = compute(history(), WAVES, since=h(16.5), until=h(48))
    staging, prod = app.waves
    # staging ran A3 before the window: A4 and A5 only; A3's failure and restore are before.
    assert (staging.deployments, staging.failed_changes) == (2, 1)
    assert staging.time_to_restore == Durations(0, None, None)
    # prod: the rollback to A1 and A4; A3 was running when the window opened and failed in it.
    assert (prod.deployments, prod.failed_changes, prod.change_failure_rate) == (2, 1, 0.5)
    assert prod.time_to_restore.count == 1
    # Only A4 first reached prod in the window (A1 had been there before).
    assert app.lead_time == Durations(1, 6 * 3600.0, 6 * 3600.0)
    assert app.deployments_per_day == pytest.approx(2 / ((48 - 16.5) / 24))


def test_no_deployment_means_no_rate_and_an_unknown_pipeline_is_all_zero() -> None:
    [app, other] = compute(
        [Failure("app", "staging", "evicted", h(1), "A9")],
        {"app": ["staging", "prod"], "other": ["only"]},
        since=h(0),
        until=h(24),
    )
    assert app.change_failure_rate is None
    assert app.failed_changes == 1
    assert app.time_to_restore == Durations(0, None, None)
    assert app.open_failures == 0  # an eviction never reached the wave
    assert (other.deployments, other.lead_time.count, other.waves[0].wave) == (0, 0, "only")


def test_a_retried_announcement_keeps_the_first_time_and_ci_commit_time() -> None:
    facts: list[Fact] = [
        Announced("app", "A1", h(2)),
        Announced("app", "A1", h(1), committed_at=h(0.5)),
        WaveRan("app", "prod", "A1", h(3)),
    ]
    [app] = compute(facts, {"app": ["prod"]}, since=h(0), until=h(4))
    assert app.lead_time == Durations(1, 2.5 * 3600, 2.5 * 3600)


def test_durations_median_and_nearest_rank_p90() -> None:
    assert Durations.of([4.0, 1.0, 3.0, 2.0]) == Durations(4, 2.5, 4.0)
    assert Durations.of([float(s) for s in range(1, 11)]) == Durations(10, 5.5, 9.0)
    assert Durations.of([]) == Durations(0, None, None)


def test_until_must_follow_since() -> None:
    with pytest.raises(ValueError):
        compute([], WAVES, since=h(1), until=h(1))


def test_ci_sends_the_app_commit_time_with_an_offset() -> None:
    body = {
        "pipeline": "app",
        "app_sha": "7d1043473d55bfa90e8530d35801d4e381bc69f0",
        "images": {
            "service1": {
                "Tag": "r.example/s1:v1",
                "Digest": "r.example/s1@sha256:" + "a" * 64,
            }
        },
    }
    sent = ImageSetAnnounced.model_validate(
        {**body, "app_committed_at": "2026-12-01T10:00:00+02:00"}
    )
    assert sent.app_committed_at == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert ImageSetAnnounced.model_validate(body).app_committed_at is None
    with pytest.raises(ValidationError, match="offset"):
        ImageSetAnnounced.model_validate({**body, "app_committed_at": "2026-12-01T10:00:00"})

"""Retry after eviction's rule (services/git_writer/attempts.py) and the eviction records'
rows (services/git_writer/evictions.py), without Kafka, PostgreSQL or git."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from waveline.services.git_writer.attempts import SetFacts, command_id, decide
from waveline.services.git_writer.evictions import eviction_rows
from waveline.services.promoter.ids import promotion_id
from waveline.shared.gitengine import trailers
from waveline.shared.models.git import GitEvent

SHA = "7d1043473d55bfa90e8530d35801d4e381bc69f0"


def test_a_set_never_announced_is_unknown() -> None:
    decision = decide(SetFacts(announced=False))
    assert decision.outcome == "unknown"
    assert not decision.retries


@pytest.mark.parametrize("attempt", [1, 2, 7])
def test_an_evicted_attempt_makes_the_next_one(attempt: int) -> None:
    decision = decide(SetFacts(announced=True, attempt=attempt, place="evicted"))
    assert decision.retries
    assert decision.outcome == "new_attempt"
    assert decision.attempt == attempt + 1
    assert f"attempt {attempt} was evicted" in decision.why


@pytest.mark.parametrize(
    ("place", "outcome", "words"),
    [
        ("auto", "pending", "on auto"),
        ("requested", "pending", "not committed yet"),
        ("evicting", "pending", "being evicted"),
        ("watched", "on_watched", "on watched"),
        ("refused", "not_retriable", "refused"),
    ],
)
def test_a_live_attempt_is_left_alone(place: str, outcome: str, words: str) -> None:
    decision = decide(SetFacts(announced=True, attempt=2, place=place))  # type: ignore[arg-type]
    assert not decision.retries
    assert decision.outcome == outcome
    assert decision.attempt == 2
    assert words in decision.why


def test_only_the_commit_strategy_evicts() -> None:
    facts = SetFacts(announced=True, place="evicted", strategy="pull-request")
    decision = decide(facts)
    assert decision.outcome == "not_retriable"
    assert "pull-request" in decision.why


def test_attempt_ids_are_the_promotion_then_their_own_and_deterministic() -> None:
    first = command_id("app", "staging", SHA, 1)
    assert first == promotion_id("app", "staging", SHA, "introduce")
    ids = {command_id("app", "staging", SHA, n) for n in range(1, 5)}
    assert len(ids) == 4
    assert command_id("app", "staging", SHA, 3) == command_id("app", "staging", SHA, 3)
    assert command_id("other", "staging", SHA, 2) != command_id("app", "staging", SHA, 2)


def _event(outcome: str, info: dict[str, str], old_sha: str | None = "a" * 40) -> GitEvent:
    return GitEvent(
        event_id=uuid.uuid4(),
        command_id=uuid.uuid4(),
        command_kind="evict",
        repo="cfg-app",
        outcome=outcome,
        sha="b" * 40,
        old_sha=old_sha,
        trailers=info,
        at=datetime.now(UTC),
    )


def test_eviction_rows_come_from_the_evicted_commits_trailers() -> None:
    cid = command_id("app", "staging", SHA, 2)
    info = {
        trailers.PIPELINE: "app",
        trailers.APP_SHA: SHA,
        trailers.TARGET: "staging",
        trailers.EVENT_ID: str(cid),
        trailers.ATTEMPT: "2",
    }
    rows = eviction_rows(
        [
            _event("evicted", info),
            _event("noop", info),  # not evicted: no row
            _event("evicted", {trailers.EVENT_ID: "not-a-uuid"}, old_sha="c" * 40),
        ]
    )
    assert rows == [
        ("cfg-app", "a" * 40, cid, "app", SHA, "staging", 2),
        ("cfg-app", "c" * 40, None, None, None, None, 1),
    ]


def test_the_attempt_trailer_reads_as_a_number() -> None:
    assert trailers.Trailers({}).attempt == 1
    assert trailers.Trailers({trailers.ATTEMPT: "3"}).attempt == 3
    assert trailers.Trailers({trailers.ATTEMPT: "x"}).attempt == 1
    assert trailers.Trailers({trailers.ATTEMPT: "0"}).attempt == 1

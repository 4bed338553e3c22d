"""Retry after eviction in the git-writer's applier, against a real bare remote: an evicted
set's next attempt is a new commit with its own Event-Id and ``Waveline-Attempt``; while a
commit of the set is on auto or watched it is a no-op, also after a restart (the index
rebuilt from the trailers)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from tests.integration.test_gitengine import applier_for, introduce, push
from tests.support import APP_SHA, branch_log
from waveline.services.git_writer.attempts import command_id
from waveline.shared.gitengine import trailers
from waveline.shared.models.git import Evict, FastForward, IntroduceImages


def attempt(n: int) -> IntroduceImages:
    cmd = introduce(APP_SHA, command_id("app", "staging", APP_SHA, n))
    return cmd.model_copy(update={"attempt": n})


def test_attempts_after_eviction(remote: Path, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    w = applier_for(remote, tmp_path / "a")
    first = push(w, attempt(1))
    assert first.outcome == "committed" and first.sha
    assert trailers.ATTEMPT not in trailers.parse(branch_log(str(remote), "auto")[0].message).values
    evicted = push(w, Evict(command_id=uuid.uuid4(), repo="cfg-app", issued_at=now, sha=first.sha))
    assert evicted.outcome == "evicted"
    # The eviction names what it removed: the record a retry is decided on.
    assert evicted.trailers[trailers.EVENT_ID] == str(command_id("app", "staging", APP_SHA, 1))
    assert evicted.trailers[trailers.APP_SHA] == APP_SHA

    second = push(w, attempt(2))
    assert second.outcome == "committed", second.reason
    head = branch_log(str(remote), "auto")[0]
    info = trailers.parse(head.message)
    assert str(head.id) == second.sha
    assert info.get(trailers.ATTEMPT) == "2"
    assert (
        info.event_id
        == str(command_id("app", "staging", APP_SHA, 2))
        != first.trailers.get(trailers.EVENT_ID)
    )

    # A third attempt while the second is on auto: nothing changes.
    third = push(w, attempt(3))
    assert third.outcome == "noop"
    assert third.reason == "attempt 2 is on auto, waiting for its required checks"
    assert branch_log(str(remote), "auto")[0].id == head.id

    assert second.sha
    ff = FastForward(command_id=uuid.uuid4(), repo="cfg-app", issued_at=now, sha=second.sha)
    assert push(w, ff).outcome == "fast_forwarded"
    # Restarted: a new clone, whose index is rebuilt from the branches' trailers.
    restarted = applier_for(remote, tmp_path / "b")
    again = push(restarted, attempt(3))
    assert again.outcome == "noop"
    assert again.reason == "attempt 2 is already on watched"
    assert len(branch_log(str(remote), "auto")) == 2

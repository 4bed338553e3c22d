"""Facts rebuilt from a config repository's trailers and the topics (shared/dora_git.py),
on a small repository built here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pygit2
from pydantic import BaseModel

from waveline.shared.dora import Announced, Failure, WaveRan
from waveline.shared.dora_git import rebuild
from waveline.shared.gitengine import trailers
from waveline.shared.models.git import GitEvent
from waveline.shared.models.images import ImageRef, ImageSetAnnounced
from waveline.shared.models.waves import WaveStatus

A, B, C = "a" * 40, "b" * 40, "c" * 40
T = 1_796_000_000  # a commit time (s)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T + seconds, UTC)


def commit(
    repo: pygit2.Repository,
    parent: pygit2.Oid | None,
    when: int,
    pipeline: str,
    app_sha: str,
    *,
    reason: str = "new images published",
) -> pygit2.Oid:
    """A commit writing ``app_sha`` into staging, ``when`` seconds after T."""
    sig = pygit2.Signature("waveline", "w@example.com", T + when, 0)
    said = {
        trailers.PIPELINE: pipeline,
        trailers.APP_SHA: app_sha,
        trailers.TARGET: "staging",
        trailers.REASON: reason,
    }
    message = trailers.format_message("auto", "", said)
    tree = repo.TreeBuilder().write()
    return repo.create_commit(None, sig, sig, message, tree, [parent] if parent else [])


def test_rollbacks_introductions_and_evictions(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "cfg.git"), bare=True)
    a = commit(repo, None, 0, "app", A)
    c = commit(repo, a, 10, "app", C)
    other = commit(repo, c, 15, "other", B)
    r = commit(repo, other, 20, "app", A, reason=f"rollback to {A}")
    repo.references.create("refs/heads/master", r)
    # B's commit was evicted: its object is still in the clone, off every branch.
    b = commit(repo, c, 12, "app", B)
    gone = "0" * 40  # an evicted commit the clone no longer has: the event's trailers
    image = {"s": ImageRef(tag="r.example/s:1", digest="r.example/s@sha256:" + "d" * 64)}

    def evicted(sha: str, said: dict[str, str]) -> GitEvent:
        return GitEvent(
            event_id=uuid.uuid4(),
            command_id=uuid.uuid4(),
            command_kind="evict",
            repo="cfg",
            outcome="evicted",
            old_sha=sha,
            trailers=said,
            at=at(13),
        )

    running = WaveStatus(
        event_id=uuid.uuid4(),
        pipeline="app",
        wave="staging",
        state="running",
        app_sha=A,
        at=at(5),
    )
    observed: list[tuple[int, str, BaseModel]] = [
        (
            0,
            "waveline.images",
            ImageSetAnnounced(
                pipeline="app",
                app_sha=A,
                images=image,
                received_at=at(-1),
                app_committed_at=at(-60),
            ),
        ),
        (0, "waveline.waves", running),
        (0, "waveline.waves", running),  # redelivered: once
        (0, "waveline.waves", running.model_copy(update={"at": at(30)})),  # a recovery
        (0, "waveline.git.events", evicted(str(b), {})),
        (
            0,
            "waveline.git.events",
            evicted(
                gone,
                {
                    "Autocommit-Pipeline": "app",
                    "Autocommit-Target": "staging",
                    "Autocommit-App-SHA": "e" * 40,
                },
            ),
        ),
    ]
    facts = rebuild(
        {"cfg": tmp_path / "cfg.git"}, {"cfg": ("master", "auto")}, {"app": "cfg"}, observed
    )
    assert sorted((f for f in facts if isinstance(f, Announced)), key=lambda f: f.app_sha) == [
        # A from the topic (CI's commit time); C, gone from the topic, from its commit.
        Announced("app", A, at(-1), at(-60)),
        Announced("app", C, at(10)),
    ]
    assert [f for f in facts if isinstance(f, WaveRan)] == [
        WaveRan("app", "staging", A, at(5)),
        WaveRan("app", "staging", A, at(30)),
    ]
    assert sorted((f for f in facts if isinstance(f, Failure)), key=lambda f: f.at) == [
        # The rollback names the set staging held before it (C, not the other pipeline's).
        Failure("app", "staging", "evicted", at(13), B),
        Failure("app", "staging", "evicted", at(13), "e" * 40),
        Failure("app", "staging", "rollback", at(20), C),
    ]

"""DORA facts rebuilt from the config repository's trailers and, where git cannot know it,
the topics (``waveline dora --from-git``, docs/dora.md).

From git (the trailers of every commit on ``watched`` and ``auto``, and of each evicted
commit while its object is still in the clone): which wave each commit wrote and which set,
the rollbacks (``Autocommit-Reason: rollback to …``) and when they were committed, the
introductions (the announcement's time when the topics no longer hold it). From the topics:
when a wave ran a set or failed (Argo CD's reports judged by the status-tracker,
``waveline.waves``), the evictions (``waveline.git.events``: evicted commits leave the
branches) and the app commit's time CI sent (``waveline.images``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pygit2
from pydantic import BaseModel

from waveline.shared.dora import Announced, Fact, Failure, WaveRan
from waveline.shared.gitengine import trailers
from waveline.shared.models.git import GitEvent
from waveline.shared.models.images import ImageSetAnnounced
from waveline.shared.models.waves import WaveStatus

Observed = tuple[int, str, BaseModel]  # (record timestamp in ms, base topic name, message)

ROLLBACK_REASON = "rollback"
INTRODUCE_REASON = "new images published"
MAX_WALK = 10_000


def _tip(repo: pygit2.Repository, branch: str) -> pygit2.Oid | None:
    """A branch in a clone (the git-writer's: remote-tracking refs) or a bare remote."""
    for name in (f"refs/remotes/origin/{branch}", f"refs/heads/{branch}"):
        ref = repo.references.get(name)
        if ref is not None:
            target = ref.resolve().target
            return target if isinstance(target, pygit2.Oid) else None
    return None


def _when(commit: pygit2.Commit) -> datetime:
    return datetime.fromtimestamp(commit.commit_time, UTC)


def _held_before(commit: pygit2.Commit, pipeline: str, wave: str) -> str | None:
    """The set ``wave`` held before ``commit`` (the last commit along first parents that
    wrote it): what a rollback rolled back from. A commit's time has whole seconds, too
    coarse to place it among the waves' statuses."""
    parents = commit.parents
    for _ in range(MAX_WALK):
        if not parents:
            return None
        parent = parents[0]
        said = trailers.parse(parent.message)
        if said.get(trailers.PIPELINE) == pipeline and said.get(trailers.TARGET) == wave:
            return said.get(trailers.APP_SHA)
        parents = parent.parents
    return None


def from_git(
    repo_path: Path, branches: Iterable[str], pipelines: Collection[str]
) -> tuple[list[Fact], dict[tuple[str, str], datetime]]:
    """Rollbacks of ``pipelines`` as facts, and each set's introduction time, from the
    commits reachable from ``branches``."""
    repo = pygit2.Repository(str(repo_path))
    seen: set[pygit2.Oid] = set()
    facts: list[Fact] = []
    introduced: dict[tuple[str, str], datetime] = {}
    for branch in branches:
        tip = _tip(repo, branch)
        if tip is None:
            continue
        for commit in repo.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL):
            if commit.id in seen:
                continue
            seen.add(commit.id)
            found = trailers.parse(commit.message)
            pipeline = found.get(trailers.PIPELINE)
            wave = found.get(trailers.TARGET)
            app_sha = found.get(trailers.APP_SHA)
            reason = found.get(trailers.REASON) or ""
            if pipeline is None or pipeline not in pipelines or wave is None or app_sha is None:
                continue
            if reason.startswith(ROLLBACK_REASON):
                rolled_back = _held_before(commit, pipeline, wave)
                facts.append(Failure(pipeline, wave, "rollback", _when(commit), rolled_back))
            elif reason.startswith(INTRODUCE_REASON):
                key = (pipeline, app_sha)
                introduced[key] = min(introduced.get(key, _when(commit)), _when(commit))
    return facts, introduced


def _evicted(event: GitEvent, repo: pygit2.Repository | None) -> dict[str, str]:
    """The evicted commit's trailers: from its object in the clone, else the event's."""
    if repo is not None and event.old_sha:
        try:
            return trailers.parse(repo[event.old_sha].peel(pygit2.Commit).message).values
        except (KeyError, ValueError):
            pass  # gone from the clone (gc): the event may carry them
    return event.trailers


def rebuild(
    repo_paths: Mapping[str, Path],
    branches: Mapping[str, tuple[str, ...]],
    pipelines: Mapping[str, str],
    observed: Iterable[Observed],
) -> list[Fact]:
    """Every DORA fact of ``pipelines`` (name → config repo) from the repositories
    (``repo_paths``: repo → clone, ``branches``: repo → its watched and auto branches) and
    the topics' records."""
    facts: list[Fact] = []
    introduced: dict[tuple[str, str], datetime] = {}
    repos: dict[str, pygit2.Repository] = {}
    for repo_name, path in repo_paths.items():
        mine = {p for p, r in pipelines.items() if r == repo_name}
        rollbacks, intro = from_git(path, branches.get(repo_name, ()), mine)
        facts += rollbacks
        introduced.update(intro)
        repos[repo_name] = pygit2.Repository(str(path))
    announced: set[tuple[str, str]] = set()
    waves_seen: set[object] = set()
    for at_ms, _topic, message in observed:
        if isinstance(message, ImageSetAnnounced) and message.pipeline in pipelines:
            at = message.received_at or datetime.fromtimestamp(at_ms / 1000, UTC)
            facts.append(Announced(message.pipeline, message.app_sha, at, message.app_committed_at))
            announced.add((message.pipeline, message.app_sha))
        elif isinstance(message, WaveStatus) and message.pipeline in pipelines:
            # Redelivered or replayed: the same status (a recovery to a set and commit run
            # before repeats the event id, not the time).
            if (message.event_id, message.at) in waves_seen:
                continue
            waves_seen.add((message.event_id, message.at))
            if message.state == "running" and message.app_sha is not None:
                facts.append(WaveRan(message.pipeline, message.wave, message.app_sha, message.at))
            elif message.state == "failing":
                facts.append(
                    Failure(message.pipeline, message.wave, "failed", message.at, message.app_sha)
                )
        elif isinstance(message, GitEvent) and message.outcome == "evicted":
            if message.command_id in waves_seen:
                continue
            waves_seen.add(message.command_id)
            said = _evicted(message, repos.get(message.repo))
            pipeline = said.get(trailers.PIPELINE)
            wave = said.get(trailers.TARGET)
            if pipeline is not None and pipeline in pipelines and wave is not None:
                facts.append(
                    Failure(pipeline, wave, "evicted", message.at, said.get(trailers.APP_SHA))
                )
    # Sets the topics no longer hold: announced when their introduction was committed.
    for (pipeline, app_sha), at in introduced.items():
        if (pipeline, app_sha) not in announced:
            facts.append(Announced(pipeline, app_sha, at))
    return facts

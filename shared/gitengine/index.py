"""Which Event-Ids are already on a repo's branches, rebuilt from commit trailers.

Built when a repo is opened (walking the branches' history) and then extended
incrementally from new tips, so a duplicate command is recognised without re-walking history.
A hit is only trusted when its commit is still reachable from ``auto`` or ``watched``: an
evicted commit's Event-Id does not count as applied.

Bounded: it holds the newest ``max_commits`` commits it has seen, and forgets the oldest
first. The index is the second line against a command applied twice: the first is the
git-writer's results table, which answers any redelivered command it has a result for; the
index covers a push that landed but was not recorded (the connection broke after the remote
took it). Those are retried within seconds, so the newest commits are the ones that matter;
an LRU would keep what lookups hit, and lookups are nearly all misses (new commands).
"""

from __future__ import annotations

from collections import OrderedDict

import pygit2

from waveline.shared.gitengine.repo import ConfigRepo

# About 600 bytes per commit in CPython (the Oid, its Event-Id, the two dicts' entries and
# the list; measured with the repo process alone, docs/benchmarks.md): ~30 MB, and at 100
# commits a second the last 8 minutes — a retry comes within seconds.
MAX_COMMITS = 50_000


class EventIndex:
    def __init__(self, max_commits: int = MAX_COMMITS) -> None:
        self.max_commits = max_commits
        # Every commit indexed, oldest first, with the Event-Id it carries (or None).
        self._commits: OrderedDict[pygit2.Oid, str | None] = OrderedDict()
        self._by_event: dict[str, list[pygit2.Oid]] = {}

    def __len__(self) -> int:
        return len(self._commits)

    def update(self, repo: ConfigRepo, tips: list[pygit2.Oid | None]) -> int:
        """Index the commits reachable from ``tips`` not indexed yet (the newest
        ``max_commits`` of them at most); returns how many."""
        found: list[tuple[pygit2.Oid, str | None]] = []
        visited: set[pygit2.Oid] = set()
        stack = [t for t in tips if t is not None]
        while stack and len(found) < self.max_commits:
            oid = stack.pop()
            if oid in self._commits or oid in visited:
                continue
            visited.add(oid)
            commit = repo.commit(oid)
            found.append((oid, repo.trailers_of(oid).event_id or None))
            stack.extend(commit.parent_ids)
        # Walked from the tips down: added oldest first, so the oldest are forgotten first.
        for oid, event_id in reversed(found):
            self._commits[oid] = event_id
            if event_id:
                self._by_event.setdefault(event_id, []).append(oid)
        while len(self._commits) > self.max_commits:
            self._forget_oldest()
        return len(found)

    def _forget_oldest(self) -> None:
        oid, event_id = self._commits.popitem(last=False)
        if event_id is None:
            return
        oids = self._by_event.get(event_id, [])
        if oid in oids:
            oids.remove(oid)
        if not oids:
            self._by_event.pop(event_id, None)

    def find(
        self, repo: ConfigRepo, event_id: str, tips: list[pygit2.Oid | None]
    ) -> pygit2.Oid | None:
        """The commit carrying ``event_id`` that is reachable from one of ``tips``."""
        for oid in reversed(self._by_event.get(event_id, [])):
            if any(tip is not None and repo.is_ancestor(oid, tip) for tip in tips):
                return oid
        return None

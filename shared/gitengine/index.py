"""Which Event-Ids are already on a repo's branches, rebuilt from commit trailers.

Built once when a repo is opened (walking the branches' history) and then extended
incrementally from new tips, so a duplicate command is recognised without re-walking history.
A hit is only trusted when its commit is still reachable from ``auto`` or ``watched``: an
evicted commit's Event-Id does not count as applied.
"""

from __future__ import annotations

import pygit2

from waveline.shared.gitengine.repo import ConfigRepo


class EventIndex:
    def __init__(self) -> None:
        self._by_event: dict[str, list[pygit2.Oid]] = {}
        self._seen: set[pygit2.Oid] = set()

    def update(self, repo: ConfigRepo, tips: list[pygit2.Oid | None]) -> int:
        """Index every commit reachable from ``tips`` not indexed yet; returns how many."""
        added = 0
        stack = [t for t in tips if t is not None]
        while stack:
            oid = stack.pop()
            if oid in self._seen:
                continue
            self._seen.add(oid)
            commit = repo.commit(oid)
            event_id = repo.trailers_of(oid).event_id
            if event_id:
                self._by_event.setdefault(event_id, []).append(oid)
            stack.extend(commit.parent_ids)
            added += 1
        return added

    def find(
        self, repo: ConfigRepo, event_id: str, tips: list[pygit2.Oid | None]
    ) -> pygit2.Oid | None:
        """The commit carrying ``event_id`` that is reachable from one of ``tips``."""
        for oid in reversed(self._by_event.get(event_id, [])):
            if any(tip is not None and repo.is_ancestor(oid, tip) for tip in tips):
                return oid
        return None

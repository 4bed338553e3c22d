"""Commits known to be on ``auto``'s first-parent line, so a fast-forward need not prove it.

Asking libgit2 whether a green commit is an ancestor of ``auto`` walks from ``auto`` down to
it: O(auto's lead over the watched branch). That is nothing while the writer keeps up and
ruinous once it falls behind — every fast-forward of a backlog then pays for the whole
backlog, so a writer that fell behind fell further behind (the soak of docs/benchmarks.md).
The writer makes every commit on ``auto`` itself, so it can remember them instead.
"""

from __future__ import annotations

from collections.abc import Callable

import pygit2

# Past this many remembered commits the line starts over from its tip (the remembered ones
# older than the watched branch are useless anyway; a fast-forward then asks libgit2).
MAX_REMEMBERED = 100_000


class AutoLine:
    """Invariant: every commit in ``members`` is ``tip`` or a first-parent ancestor of it."""

    def __init__(self) -> None:
        self.tip: pygit2.Oid | None = None
        self.members: set[pygit2.Oid] = set()

    def moved(
        self, new: pygit2.Oid, first_parent: Callable[[pygit2.Oid], pygit2.Oid | None]
    ) -> None:
        """``auto`` now points at ``new``: extend the line when ``new`` continues it, else
        start over from ``new`` (a replay, a reset, an eviction)."""
        if new == self.tip:
            return
        if self.tip is None or first_parent(new) != self.tip or len(self.members) >= MAX_REMEMBERED:
            self.members = set()
        self.members.add(new)
        self.tip = new

    def holds(self, commit: pygit2.Oid, auto: pygit2.Oid) -> bool:
        """True when ``commit`` is known to be ``auto`` or one of its ancestors; False means
        unknown (ask the repository)."""
        return auto == self.tip and commit in self.members

    def forget(self) -> None:
        self.tip, self.members = None, set()

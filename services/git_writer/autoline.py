"""Commits known to be on ``auto``'s first-parent line, so a fast-forward need not prove it.

Asking libgit2 whether a green commit is an ancestor of ``auto`` walks from ``auto`` down to
it: O(auto's lead over the watched branch). That is nothing while the writer keeps up and
ruinous once it falls behind — every fast-forward of a backlog then pays for the whole
backlog, so a writer that fell behind fell further behind (the soak of docs/benchmarks.md).
The writer makes every commit on ``auto`` itself, so it can remember them instead, with
their place on the line: whether the watched branch already holds a green commit, or is
behind it, is then a comparison of two places, not two more walks of the backlog.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import pygit2

# The newest this many commits of the line are remembered; older ones are forgotten first
# (a fast-forward to one of them asks libgit2). Green commits are fast-forwarded within
# seconds of being made, so only a backlog this deep pays libgit2's walk again: 20,000 is
# 200 s at 100 image sets/s. A window, not a set that starts over when full: the soak's
# memory then reaches its level once and stays (docs/benchmarks.md).
MAX_REMEMBERED = 20_000


class AutoLine:
    """Invariant: every commit in ``members`` is ``tip`` or a first-parent ancestor of it."""

    def __init__(self, max_remembered: int = MAX_REMEMBERED) -> None:
        self.tip: pygit2.Oid | None = None
        self.max_remembered = max_remembered
        # Oldest first; each commit's place on the line (larger: later).
        self.members: OrderedDict[pygit2.Oid, int] = OrderedDict()
        self._places = 0

    def moved(
        self, new: pygit2.Oid, first_parent: Callable[[pygit2.Oid], pygit2.Oid | None]
    ) -> None:
        """``auto`` now points at ``new``: extend the line when ``new`` continues it, else
        start over from ``new`` (a replay, a reset, an eviction)."""
        if new == self.tip:
            return
        if self.tip is None or first_parent(new) != self.tip:
            self.members.clear()
        self.members[new] = self._places
        self._places += 1
        while len(self.members) > self.max_remembered:
            self.members.popitem(last=False)
        self.tip = new

    def holds(self, commit: pygit2.Oid, auto: pygit2.Oid) -> bool:
        """True when ``commit`` is known to be ``auto`` or one of its ancestors; False means
        unknown (ask the repository)."""
        return auto == self.tip and commit in self.members

    def before(self, commit: pygit2.Oid, other: pygit2.Oid) -> bool | None:
        """Whether ``commit`` is ``other`` or one of its ancestors, when the line holds both
        (one line of first parents: the earlier place is the ancestor); None: unknown (ask
        the repository)."""
        place, other_place = self.members.get(commit), self.members.get(other)
        if place is None or other_place is None:
            return None
        return place <= other_place

    def forget(self) -> None:
        self.tip = None
        self.members.clear()

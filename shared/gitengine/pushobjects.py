"""Which objects a push must send: what changed since a commit the remote has, not what the
repository holds.

libgit2's pack builder marks the remote tip's whole tree uninteresting before it packs the
new commits (``mark_edges_uninteresting``): a push of five new objects read every tree of a
200,000-file repository (docs/benchmarks.md). Here each new commit's tree is compared with
its first parent's, recursing only into entries whose id differs at the same path (git's
"sparse" push reachability): an entry with the same id at the same path is in the parent,
which the remote has (it is, or is reached from, a commit the remote has), so everything a
new tree references is either sent or already there, at the cost of the changed paths.

Pure over a repository's objects (read only); ``select`` answers None when this shortcut
does not apply (no commit of the remote found within the bound, a merge or a root commit on
the way), and the caller pushes another way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pygit2
from pygit2.enums import ObjectType

# How far back the new commits and the remote's commits are walked looking for a meeting.
MAX_WALK = 10_000


def new_commits(
    repo: pygit2.Repository,
    tips: Sequence[pygit2.Oid],
    remote_has: Iterable[pygit2.Oid],
    walk_from: Sequence[pygit2.Oid],
    bound: int = MAX_WALK,
) -> list[pygit2.Commit] | None:
    """The commits from each of ``tips`` back along first parents to a commit the remote
    has, oldest first per tip, each once. A commit the remote has is one of ``remote_has``
    (refs it advertised), or an ancestor along first parents of one of ``walk_from`` (the
    leases' expected values, which it advertised): those chains are walked in step with the
    new ones, so a branch rewritten onto an older base (an eviction replays ``auto``'s later
    commits onto an earlier one) meets it after as many steps as it is deep.

    None when no such commit is met within ``bound`` steps of a tip, or a commit on the way
    has no parent or several (its other parents may not be on the remote)."""
    known = set(remote_has)
    # The remote's side: commits reached from walk_from, and where each walk stands.
    remote_seen: set[pygit2.Oid] = set()
    frontiers: list[pygit2.Oid | None] = [oid for oid in walk_from if oid in repo]
    out: list[pygit2.Commit] = []
    sent: set[pygit2.Oid] = set()
    for tip in tips:
        chain: list[pygit2.Commit] = []
        position: dict[pygit2.Oid, int] = {}
        oid = tip
        stuck = False  # at a root or a merge: only the remote's walks may still meet it
        for _ in range(bound + 1):
            if oid in known or oid in remote_seen or oid in sent:
                break
            if not stuck:
                commit = repo.get(oid)
                if not isinstance(commit, pygit2.Commit):
                    return None
                position[oid] = len(chain)
                chain.append(commit)
                if len(commit.parent_ids) == 1:
                    oid = commit.parent_ids[0]
                else:
                    stuck = True
            frontiers, passed = _step(repo, frontiers, remote_seen)
            met = [position[p] for p in passed if p in position]
            if met:
                # The remote's walk reached a commit of this chain: it and its ancestors
                # are there, only the commits after it are new.
                del chain[min(met) :]
                break
            if stuck and all(f is None for f in frontiers):
                return None
        else:
            return None
        for made in reversed(chain):
            sent.add(made.id)
            out.append(made)
    return out


def _step(
    repo: pygit2.Repository, frontiers: list[pygit2.Oid | None], seen: set[pygit2.Oid]
) -> tuple[list[pygit2.Oid | None], list[pygit2.Oid]]:
    """Advance each of the remote's walks one first parent; the walks' new positions and
    the commits they passed (now in ``seen``)."""
    moved: list[pygit2.Oid | None] = []
    passed: list[pygit2.Oid] = []
    for oid in frontiers:
        if oid is None or oid in seen:
            moved.append(None)  # ended, or joined a walk that went this way
            continue
        seen.add(oid)
        passed.append(oid)
        commit = repo.get(oid)
        parents: list[pygit2.Oid] = commit.parent_ids if isinstance(commit, pygit2.Commit) else []
        moved.append(parents[0] if parents else None)
    return moved, passed


def changed_objects(repo: pygit2.Repository, commits: Iterable[pygit2.Commit]) -> list[pygit2.Oid]:
    """The ids of ``commits`` and of every tree and blob each one's tree holds at a path
    where its first parent's tree holds another id (or nothing); each id once."""
    out: list[pygit2.Oid] = []
    seen: set[pygit2.Oid] = set()
    for commit in commits:
        _add(commit.id, out, seen)
        parent = repo.get(commit.parent_ids[0]) if commit.parent_ids else None
        old = parent.tree_id if isinstance(parent, pygit2.Commit) else None
        if commit.tree_id != old:
            _add(commit.tree_id, out, seen)
            _diff(repo, commit.tree_id, old, out, seen)
    return out


def _add(oid: pygit2.Oid, out: list[pygit2.Oid], seen: set[pygit2.Oid]) -> bool:
    if oid in seen:
        return False
    seen.add(oid)
    out.append(oid)
    return True


def _diff(
    repo: pygit2.Repository,
    new: pygit2.Oid,
    old: pygit2.Oid | None,
    out: list[pygit2.Oid],
    seen: set[pygit2.Oid],
) -> None:
    """Add what tree ``new`` holds that tree ``old`` (None: no tree) does not hold at the
    same path, recursing into subtrees whose id differs."""
    tree = repo.get(new)
    assert isinstance(tree, pygit2.Tree)
    before: dict[str, tuple[pygit2.Oid, ObjectType]] = {}
    if old is not None:
        old_tree = repo.get(old)
        if isinstance(old_tree, pygit2.Tree):
            before = {e.name: (e.id, e.type) for e in old_tree if e.name is not None}
    for entry in tree:
        kind = entry.type
        if kind not in (ObjectType.TREE, ObjectType.BLOB):
            continue  # a submodule's commit is not an object of this repository
        name = entry.name
        prior = before.get(name) if name is not None else None
        if prior is not None and prior[0] == entry.id:
            continue  # the parent has it at the same path: so does the remote
        if not _add(entry.id, out, seen):
            continue  # sent already, with everything below it
        if kind == ObjectType.TREE:
            base = prior[0] if prior is not None and prior[1] == ObjectType.TREE else None
            _diff(repo, entry.id, base, out, seen)


def select(
    repo: pygit2.Repository,
    tips: Sequence[pygit2.Oid],
    remote_has: Iterable[pygit2.Oid],
    walk_from: Sequence[pygit2.Oid],
    bound: int = MAX_WALK,
) -> list[pygit2.Oid] | None:
    """The objects to send so the remote holds everything ``tips`` reach, given what it has
    (see ``new_commits``); None when this way of choosing does not apply."""
    commits = new_commits(repo, tips, remote_has, walk_from, bound)
    return None if commits is None else changed_objects(repo, commits)

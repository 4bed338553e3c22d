"""pygit2 leaks the name given to ``lookup_reference``; ``ref_name`` works around it.

When the first test fails, pygit2 fixed the leak: drop ``shared.gitengine.repo.ref_name``
and this file."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pygit2

from waveline.shared.gitengine.repo import ref_name

LOOKUPS = 20_000


def _repo(tmp_path: Path) -> pygit2.Repository:
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    sig = pygit2.Signature("t", "t@example.com")
    tree = repo.TreeBuilder().write()
    repo.create_commit("refs/remotes/origin/auto", sig, sig, "c", tree, [])
    return repo


def _blocks_kept(lookup: object) -> int:
    assert callable(lookup)
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(LOOKUPS):
        lookup()
    gc.collect()
    return sys.getallocatedblocks() - before


def test_pygit2_still_leaks_a_name_built_per_lookup(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    branch = "auto"
    kept = _blocks_kept(lambda: repo.references.get(f"refs/remotes/origin/{branch}"))
    assert kept >= LOOKUPS * 0.9, "pygit2 no longer leaks: remove ref_name (see its docstring)"


def test_names_from_ref_name_do_not_accumulate(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    branch = "auto"
    kept = _blocks_kept(lambda: repo.references.get(ref_name(f"refs/remotes/origin/{branch}")))
    assert kept < LOOKUPS * 0.01

"""Packs written straight from raw objects are packs git and libgit2 read."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pygit2
import pytest

from waveline.shared.gitengine.packfiles import index_count, index_ids, rollup, write_pack


def _objects(repo: pygit2.Repository) -> list[tuple[pygit2.Oid, int, bytes]]:
    """Blobs (one empty, one larger than a pack header's first size nibble), a tree and a
    commit, as libgit2 stores them."""
    blobs = [repo.create_blob(b""), repo.create_blob(b"x" * 70_000), repo.create_blob(b"tag: 1")]
    builder = repo.TreeBuilder()
    for n, oid in enumerate(blobs):
        builder.insert(f"f{n}", oid, pygit2.enums.FileMode.BLOB)
    tree = builder.write()
    sig = pygit2.Signature("t", "t@example.com")
    commit = repo.create_commit(None, sig, sig, "m\n\nEvent-Id: 1\n", tree, [])
    return [(oid, *repo.odb.read(oid)[:2]) for oid in [*blobs, tree, commit]]


def test_a_written_pack_holds_every_object(tmp_path: Path) -> None:
    source = pygit2.init_repository(str(tmp_path / "source.git"), bare=True)
    objects = _objects(source)
    target = tmp_path / "target.git"
    pygit2.init_repository(str(target), bare=True)
    name = write_pack(objects, target / "objects" / "pack")
    assert sorted(p.name for p in (target / "objects" / "pack").iterdir()) == [
        f"{name}.idx",
        f"{name}.pack",
    ]
    idx = target / "objects" / "pack" / f"{name}.idx"
    assert index_count(idx) == len(objects)
    assert sorted(index_ids(idx)) == sorted(oid for oid, _, _ in objects)
    repo = pygit2.Repository(str(target))
    for oid, kind, data in objects:
        assert repo.odb.read(oid)[:2] == (kind, data)
    if shutil.which("git"):
        done = subprocess.run(
            ["git", "verify-pack", "-v", str(target / "objects" / "pack" / f"{name}.idx")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert sum(str(oid) in done.stdout for oid, _, _ in objects) == len(objects)


def test_an_object_type_a_pack_cannot_hold_is_refused(tmp_path: Path) -> None:
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    with pytest.raises(ValueError, match="type 6"):
        write_pack([(pygit2.Oid(hex="1" * 40), 6, b"")], pack_dir)
    assert not list(pack_dir.iterdir())  # nothing left behind


def test_rollup_keeps_a_geometric_progression() -> None:
    assert rollup([5, 5, 5, 5, 15000]) == 4  # the small ones merge, the history stays
    assert rollup([1, 2, 4, 8, 16]) == 0  # each at least twice the one below: as is
    assert rollup([3, 7, 20, 100]) == 0
    # Merging the small ones makes 20 objects, more than half the next: it joins them.
    assert rollup([5, 5, 5, 5, 30, 1000]) == 5
    assert rollup([]) == 0
    assert rollup([7]) == 0

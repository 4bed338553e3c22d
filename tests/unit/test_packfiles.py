"""Packs written straight from raw objects are packs git and libgit2 read."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import pygit2
import pytest

from waveline.shared.gitengine.storage.packfiles import (
    index_count,
    index_ids,
    packs_to_merge,
    rollup,
    write_pack,
)
from waveline.shared.gitengine.storage.packmerge import encode_distance, merge_packs


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


def _git(repo: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["git", f"--git-dir={repo}", *args], input=stdin, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI to make deltas")
@pytest.mark.parametrize("offsets", [True, False], ids=["ofs-delta", "ref-delta"])
def test_merged_packs_hold_every_object_once_deltas_intact(tmp_path: Path, offsets: bool) -> None:
    """Three packs: two by git with deltas (OFS_DELTA, or REF_DELTA by id), sharing objects,
    and one written from raw objects; the merge is one pack git verifies, with each object
    once and every object's content unchanged."""
    bare = tmp_path / "repo.git"
    repo = pygit2.init_repository(str(bare), bare=True)
    sig = pygit2.Signature("t", "t@example.com")
    parent: list[pygit2.Oid] = []
    text = "".join(f"line {n}: some config value\n" for n in range(400))
    for n in range(6):  # similar blobs and trees: git stores most as deltas
        text += f"change {n}\n"
        builder = repo.TreeBuilder()
        builder.insert("values.yaml", repo.create_blob(text.encode()), pygit2.enums.FileMode.BLOB)
        oid = repo.create_commit(None, sig, sig, f"c{n}", builder.write(), parent)
        parent = [oid]
    repo.references.create("refs/heads/master", parent[0])
    everything = _git(bare, "rev-list", "--objects", "--all")
    ids = "".join(line.split()[0] + "\n" for line in everything.splitlines())
    half = "".join(ids.splitlines(keepends=True)[: len(ids.splitlines()) // 2 + 2])
    pack_dir = bare / "objects" / "pack"
    flag = [] if offsets else ["--no-delta-base-offset"]
    for listing in (ids, half):  # the second shares objects with the first
        _git(bare, "pack-objects", "-q", *flag, str(pack_dir / "pack"), stdin=listing)
    raw = _objects(repo)
    write_pack(raw, pack_dir)
    verbose = _git(bare, "verify-pack", "-v", *map(str, pack_dir.glob("*.idx")))
    assert "chain length" in verbose  # there are deltas to carry over
    contents = {oid: repo.odb.read(oid)[:2] for oid in index_ids_all(pack_dir)}
    idxs = sorted(pack_dir.glob("pack-*.idx"))
    into = tmp_path / "merged"
    into.mkdir()
    name, count = merge_packs(idxs, into)
    assert count == len(contents)
    merged = into / f"{name}.idx"
    assert sorted(index_ids(merged)) == sorted(contents)
    verified = _git(bare, "verify-pack", "-v", str(merged))
    assert "chain length" in verified  # deltas stayed deltas
    # Only the merged pack left: every object reads back the same through libgit2.
    for idx in idxs:
        for suffix in (".idx", ".pack"):
            idx.with_suffix(suffix).unlink()
    for suffix in (".idx", ".pack"):
        (into / f"{name}{suffix}").rename(pack_dir / f"{name}{suffix}")
    fresh = pygit2.Repository(str(bare))
    for oid, stored in contents.items():
        assert fresh.odb.read(oid)[:2] == stored
    _git(bare, "fsck", "--strict")


def index_ids_all(pack_dir: Path) -> set[pygit2.Oid]:
    return {oid for idx in pack_dir.glob("pack-*.idx") for oid in index_ids(idx)}


def test_merge_refuses_a_file_that_is_not_an_index(tmp_path: Path) -> None:
    bogus = tmp_path / "pack-x.idx"
    bogus.write_bytes(b"not an index")
    with pytest.raises(ValueError, match="not a version 2 pack index"):
        merge_packs([bogus], tmp_path)


@pytest.mark.parametrize("distance", [1, 127, 128, 16_511, 16_512, 2_113_663, 2**31])
def test_delta_distances_encode_as_git_reads_them(distance: int) -> None:
    encoded = encode_distance(distance)
    byte, at = encoded[0], 1
    decoded = byte & 0x7F
    while byte & 0x80:
        byte, at = encoded[at], at + 1
        decoded = ((decoded + 1) << 7) | (byte & 0x7F)
    assert decoded == distance
    assert at == len(encoded)


def test_a_merge_holds_arrays_not_an_object_per_entry(tmp_path: Path) -> None:
    """Python's own allocations during a merge of 20,000 objects in 5 packs (some in
    several) stay under 150 bytes an object: a tuple and dict entries per object, as the
    merge held before, cost ~520 and grew the packing process by hundreds of MiB."""
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()

    def blob(n: int) -> tuple[bytes, int, bytes]:
        data = f"image: registry.example.com/svc@sha256:{n:064x}\n".encode()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).digest(), 3, data  # noqa: S324

    history = [blob(n) for n in range(16_000)]
    write_pack(history, pack_dir)
    for p in range(4):
        write_pack(
            [*(blob(100_000 + 1_000 * p + n) for n in range(1_000)), *history[:50]], pack_dir
        )
    into = tmp_path / "merged"
    into.mkdir()
    tracemalloc.start()
    try:
        _, count = merge_packs(sorted(pack_dir.glob("*.idx")), into)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak / count < 150, f"{peak / count:.0f} bytes an object"


def test_a_settled_pack_is_never_merged_and_does_not_count(tmp_path: Path) -> None:
    """Packs of ``settled`` objects or more stay as they are: the others are merged by the
    geometric rule as if the settled ones were not there, so a merge's size (and memory)
    is bounded whatever the history holds."""
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()

    def blobs(first: int, count: int) -> list[tuple[bytes, int, bytes]]:
        out = []
        for n in range(first, first + count):
            data = f"n: {n}\n".encode()
            out.append((hashlib.sha1(b"blob %d\0" % len(data) + data).digest(), 3, data))  # noqa: S324
        return out

    big = write_pack(blobs(0, 50), pack_dir)
    small = [write_pack(blobs(1_000 + 100 * k, 20), pack_dir) for k in range(3)]
    chosen = packs_to_merge(pack_dir, over=2, at_least=2, settled=40)
    assert {p.stem for p in chosen} == set(small)  # three unsettled packs, over two
    assert packs_to_merge(pack_dir, over=3, at_least=2, settled=40) == []  # the big one uncounted
    # Without the limit, the big pack counts and the four are out of progression.
    assert big in {p.stem for p in packs_to_merge(pack_dir, over=3, at_least=2, settled=10**9)}

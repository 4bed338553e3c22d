"""Pack files on disk: writing a pack (and its version-2 index) straight from raw objects,
reading the ids an index lists, and swapping packs in and out of ``objects/pack``.

The git-writer keeps its new objects in memory (see memory.py) and packs them every few
thousand updates. Packing them through libgit2's pack builder read every object back
through the Python object backend, one callback (and one wait for the GIL) per object:
12,000 objects took 1-3.5 s at 100 image sets a second, slowing the writer's own threads.
Here the objects are written as they are held, zlib-compressed and without deltas (they are
small, and the next merge of packs, done by libgit2 from disk, may delta them); the format
is git's pack format version 2 (gitformat-pack(5)).
"""

from __future__ import annotations

import bisect
import hashlib
import shutil
import struct
import sys
import uuid
import zlib
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import pygit2

# libgit2's object type numbers are the pack's: commit 1, tree 2, blob 3, tag 4.
_PACK_TYPES = {1, 2, 3, 4}
_IDX_V2 = b"\377tOc" + struct.pack(">I", 2)
_FANOUT_END = len(_IDX_V2) + 256 * 4  # where the sorted ids start


def _entry_header(kind: int, size: int) -> bytes:
    out = bytearray()
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


class PackWriter:
    """A pack being written to ``out``: the header for ``count`` objects, then each ``add``ed
    entry (its bytes as stored); ``finish`` writes the trailing checksum and returns it. The
    caller keeps each entry's id, offset and crc32 (``add`` answers the last two) for the
    index: a merge keeps them as arrays, not as a Python object per entry."""

    def __init__(self, out: BinaryIO, count: int) -> None:
        self._out = out
        self._digest = hashlib.sha1()  # noqa: S324 (git's pack checksum is SHA-1)
        self.count = count
        self.offset = 0  # where the next entry starts
        self._write(b"PACK" + struct.pack(">II", 2, count))

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._digest.update(data)
        self.offset += len(data)

    def add(self, record: bytes) -> tuple[int, int]:
        """Append one entry; returns its offset and the crc32 of its bytes."""
        at = self.offset
        self._write(record)
        return at, zlib.crc32(record)

    def finish(self) -> bytes:
        pack_sum = self._digest.digest()
        self._out.write(pack_sum)
        return pack_sum


def write_pack(objects: Iterable[tuple[pygit2.Oid | bytes, int, bytes]], pack_dir: Path) -> str:
    """Write ``objects`` (id or raw id, type, raw data) as one pack with its index into
    ``pack_dir`` and return the pack's name (``pack-<sha>``). The files appear complete or
    not at all: written under temporary names, the ``.pack`` moved in before the ``.idx``
    (readers go by the index). Raises ``ValueError`` for an object type a pack cannot
    hold."""
    tmp = pack_dir / f"tmp-pack-{uuid.uuid4().hex}"
    tmp_idx = pack_dir / f"tmp-idx-{uuid.uuid4().hex}"
    items = list(objects)
    entries: list[tuple[bytes, int, int]] = []  # raw id, offset, crc32: a few thousand
    try:
        with tmp.open("wb") as out:
            pack = PackWriter(out, len(items))
            for oid, kind, data in items:
                raw = oid if isinstance(oid, bytes) else oid.raw
                if kind not in _PACK_TYPES:
                    raise ValueError(f"object {raw.hex()} has type {kind}, not one a pack holds")
                entries.append(
                    (raw, *pack.add(_entry_header(kind, len(data)) + zlib.compress(data, 1)))
                )
            pack_sum = pack.finish()
        entries.sort()
        with tmp_idx.open("wb") as out:
            write_index(
                out,
                b"".join(raw for raw, _, _ in entries),
                array("I", (crc for _, _, crc in entries)),
                array("Q", (offset for _, offset, _ in entries)),
                pack_sum,
            )
        name = f"pack-{pack_sum.hex()}"
        tmp.rename(pack_dir / f"{name}.pack")
        tmp_idx.rename(pack_dir / f"{name}.idx")
    finally:
        tmp.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)
    return name


def _big_endian(column: array[int], typecode: str) -> bytes:
    out = array(typecode, column)
    if sys.byteorder == "little":
        out.byteswap()
    return out.tobytes()


def write_index(
    out: BinaryIO,
    ids: bytes | bytearray,
    crcs: array[int],
    offsets: array[int],
    pack_sum: bytes,
) -> None:
    """Write the version-2 index of a pack to ``out``: ``ids`` are the raw ids (20 bytes
    each) in ascending order, ``crcs`` and ``offsets`` their entries' crc32 and offset in
    the same order. Columns, not a row per object: a merge of the whole history indexes
    hundreds of thousands. ``ValueError`` for an offset a 32-bit index cannot hold."""
    if offsets and max(offsets) >= 1 << 31:
        raise ValueError("pack too large for 32-bit index offsets")
    first = ids[::20]  # each id's first byte, ascending
    fanout = struct.pack(">256I", *(bisect.bisect_right(first, b) for b in range(256)))
    digest = hashlib.sha1()  # noqa: S324 (git's index checksum)
    for part in (_IDX_V2, fanout, ids, _big_endian(crcs, "I"), _big_endian(offsets, "I"), pack_sum):
        out.write(part)
        digest.update(part)
    out.write(digest.digest())


def index_count(idx: Path) -> int:
    """How many objects a version-2 pack index lists (0 for anything else)."""
    with idx.open("rb") as f:
        head = f.read(_FANOUT_END)
    if head[: len(_IDX_V2)] != _IDX_V2 or len(head) < _FANOUT_END:
        return 0
    return int(struct.unpack_from(">I", head, _FANOUT_END - 4)[0])


def index_table(data: bytes, idx: Path) -> tuple[bytes, bytes, bytes]:
    """A version-2 index's sorted raw ids, 32-bit offsets and 64-bit offsets, as bytes;
    ``ValueError`` for another file."""
    if data[: len(_IDX_V2)] != _IDX_V2 or len(data) < _FANOUT_END:
        raise ValueError(f"{idx} is not a version 2 pack index")
    (count,) = struct.unpack_from(">I", data, _FANOUT_END - 4)
    ids_end = _FANOUT_END + 20 * count
    offsets_at = ids_end + 4 * count  # after the crc32s
    large_at = offsets_at + 4 * count
    return data[_FANOUT_END:ids_end], data[offsets_at:large_at], data[large_at:-40]


def index_ids(idx: Path) -> list[pygit2.Oid]:
    """The object ids a version-2 pack index lists; ``ValueError`` for another file."""
    ids, _, _ = index_table(idx.read_bytes(), idx)
    return [pygit2.Oid(raw=ids[i : i + 20]) for i in range(0, len(ids), 20)]


def write_staged(pack_dir: Path, write: Callable[[Path], object]) -> str:
    """Have ``write`` put one pack (and its index) into a fresh directory of its own, so no
    reader takes a half-written pack for one, then move it into ``pack_dir``, ``.pack``
    before ``.idx`` (readers go by the index); returns the pack's name (``pack-<sha>``). A
    file already there (the same pack, written before) is kept; the staging directory is
    removed whatever happens."""
    staging = pack_dir / f"tmp-staged-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        write(staging)
        made = {f.suffix: f for f in staging.iterdir()}
        for suffix in (".pack", ".rev", ".idx"):
            if suffix in made and not (pack_dir / made[suffix].name).exists():
                made[suffix].rename(pack_dir / made[suffix].name)
        return made[".idx"].stem
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def rollup(counts: list[int], factor: int = 2) -> int:
    """How many of the packs (object counts, ascending) to merge so that each remaining
    pack holds at least ``factor`` times the objects of all smaller ones: git's
    ``repack --geometric`` split. The big packs of the history are left alone, so a merge
    costs what the recent packs hold, not what the repository does."""
    split = 0
    for i in range(len(counts) - 1, 0, -1):
        if counts[i] < factor * counts[i - 1]:
            split = i + 1  # the larger of the pair is out of progression too
            break
    if split == 0:
        return 0
    total = sum(counts[:split])
    while split < len(counts) and counts[split] < factor * total:
        total += counts[split]
        split += 1
    return split


# A pack holding this many objects is settled: never merged again. A merge holds ~91 bytes
# an object (packmerge.py), so without a limit its peak grew with the whole history (a
# year of a busy repository: tens of millions of objects). With it, what a merge takes is
# the packs under the limit, in geometric progression: under twice the limit in all.
SETTLED_PACK_OBJECTS = 500_000


def packs_to_merge(
    pack_dir: Path, over: int, *, at_least: int = 0, settled: int = SETTLED_PACK_OBJECTS
) -> list[Path]:
    """The indexes (``.idx``) of the packs to merge once more than ``over`` packs that are
    not settled (fewer than ``settled`` objects) sit in ``pack_dir``: those out of
    geometric progression (``rollup``), and at least the ``at_least`` smallest; none when
    that makes fewer than two. Only packs whose index is there count: a pack still being
    written (a push, a fetch) has none yet."""
    indexed = [i for i in pack_dir.glob("pack-*.idx") if i.with_suffix(".pack").exists()]
    counted = [(index_count(i), i) for i in indexed]
    unsettled = [(c, i) for c, i in counted if c < settled]
    if len(unsettled) <= over:
        return []
    sized = sorted(unsettled, key=lambda ci: ci[0])
    merge = max(rollup([c for c, _ in sized]), at_least)
    return [i for _, i in sized[:merge]] if merge >= 2 else []


def remove_packs(packs: Iterable[Path], keep: str) -> None:
    """Delete the packs (any of their files named) that a merge replaced, index first, all
    but ``keep`` (the merge's own name: it may come out identical to one of them)."""
    for pack in packs:
        if pack.stem == keep:
            continue
        for suffix in (".idx", ".rev", ".pack"):
            pack.with_suffix(suffix).unlink(missing_ok=True)

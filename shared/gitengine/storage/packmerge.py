"""Merging packs by copying their entries as they are stored.

The clone's compaction merges its small packs once 16 pile up (see ``packfiles.rollup``).
libgit2's pack builder re-reads, re-deltas and re-compresses every object it is given: about
150 µs an object, so one merge of the history at 184,710 objects took 27.6 s of a core
beside the writer, and merges of the whole history recur as it grows. Copying each entry
(its compressed data, and a delta as a delta) costs a few microseconds an object instead;
only a delta's base offset (``OFS_DELTA``) is re-pointed at where its base landed. Objects
that several packs hold are written once. Format: gitformat-pack(5), version 2.

What a merge holds is arrays (ids, offsets, crc32s: ~60 bytes an object at its peak, the
biggest pack's entries sorted by offset), not a Python object per entry: the tuples and dicts
it held before cost ~520 bytes an object, 337 MiB for a history merge after 30 minutes at 100
image sets a second (docs/benchmarks.md).
"""

from __future__ import annotations

import bisect
import heapq
import mmap
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path

from waveline.shared.gitengine.storage.packfiles import PackWriter, index_table, write_index

_OFS_DELTA = 6
_ID = 20  # bytes of a raw object id
_LOW = 0xFFFF_FFFF


class _Pack:
    """One pack's table, as read from its index: the raw ids in ascending order and each
    one's offset in the pack, and (filled as the merge goes) where each entry landed in the
    merged pack and its crc32 there. Arrays, about 40 bytes an object: the history holds
    hundreds of thousands, and a Python tuple or dict entry per object cost ~500."""

    def __init__(self, idx: Path) -> None:
        self.idx = idx
        ids, small, large = index_table(idx.read_bytes(), idx)
        self.ids = ids
        self.count = len(ids) // _ID
        offsets = _column(small, "I")
        if large:
            wide = _column(large, "Q")
            self.offsets = array(
                "Q", (wide[o & 0x7FFF_FFFF] if o & 0x8000_0000 else o for o in offsets)
            )
        else:
            self.offsets = array("Q", offsets)
        self.here = array("Q", bytes(8 * self.count))  # its offset in the merged pack
        self.crcs = array("I", bytes(4 * self.count))

    def by_offset(self) -> tuple[array[int], array[int]]:
        """The entries' offsets in ascending order, and each one's place in the index; the
        offsets by place are let go (the merge needs them once)."""
        keys = sorted((offset << 32) | n for n, offset in enumerate(self.offsets))
        self.offsets = array("Q")
        return array("Q", (k >> 32 for k in keys)), array("I", (k & _LOW for k in keys))

    def id_of(self, n: int) -> bytes:
        return self.ids[_ID * n : _ID * (n + 1)]


def _column(data: bytes, typecode: str) -> array[int]:
    """An index's big-endian column of integers."""
    out = array(typecode)
    out.frombytes(data)
    if sys.byteorder == "little":
        out.byteswap()
    return out


def _owners(packs: list[_Pack]) -> tuple[array[int], dict[int, int]]:
    """Each object once, by a k-way merge of the packs' sorted id tables: the entries to
    write (``pack << 32 | place``) in ascending id order, and each other copy of an object
    mapped to the entry written for it (the copy in the earliest pack)."""

    def listing(p: int) -> Iterator[tuple[bytes, int]]:
        pack = packs[p]
        for n in range(pack.count):
            yield pack.id_of(n), (p << 32) | n

    owners = array("Q")
    copies: dict[int, int] = {}
    last, owner = b"", 0
    for raw, ref in heapq.merge(*(listing(p) for p in range(len(packs)))):
        if raw == last:
            copies[ref] = owner
            continue
        last, owner = raw, ref
        owners.append(ref)
    return owners, copies


def _skip_header(pack: mmap.mmap, at: int) -> tuple[int, int]:
    """An entry's type and where its header (type and inflated size) ends."""
    byte = pack[at]
    kind = (byte >> 4) & 7
    at += 1
    while byte & 0x80:
        byte = pack[at]
        at += 1
    return kind, at


def _read_distance(pack: mmap.mmap, at: int) -> tuple[int, int]:
    """An OFS_DELTA's distance back to its base, and where the encoding ends."""
    byte = pack[at]
    at += 1
    distance = byte & 0x7F
    while byte & 0x80:
        byte = pack[at]
        at += 1
        distance = ((distance + 1) << 7) | (byte & 0x7F)
    return distance, at


def encode_distance(distance: int) -> bytes:
    """git's offset encoding: big-endian 7-bit groups, each but the last biased by one."""
    out = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        out.append(0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(reversed(out))


def merge_packs(idxs: list[Path], into: Path) -> tuple[str, int]:
    """Write one pack (and its index) into directory ``into`` holding every object of the
    packs that ``idxs`` index; returns its name (``pack-<sha>``) and how many objects it
    holds. The packs are read, not removed. Raises ``ValueError`` for a file that is not a
    version-2 pack or index, or a delta whose base is not in its pack."""
    packs = [_Pack(idx) for idx in idxs]
    owners, copies = _owners(packs)
    tmp = into / "merging.pack"
    with tmp.open("wb") as out:
        merged = PackWriter(out, len(owners))
        for p, pack in enumerate(packs):
            _copy(pack, p, packs, copies, merged)
        pack_sum = merged.finish()
    name = f"pack-{pack_sum.hex()}"
    tmp.rename(into / f"{name}.pack")
    ids = bytearray()
    crcs, offsets = array("I"), array("Q")
    for ref in owners:
        pack, n = packs[ref >> 32], ref & _LOW
        ids += pack.id_of(n)
        crcs.append(pack.crcs[n])
        offsets.append(pack.here[n])
    with (into / f"{name}.idx").open("wb") as out:
        write_index(out, ids, crcs, offsets, pack_sum)
    return name, merged.count


def _copy(
    pack: _Pack, p: int, packs: list[_Pack], copies: dict[int, int], merged: PackWriter
) -> None:
    """Copy ``pack``'s entries (pack ``p`` of the merge) in the order they are stored,
    skipping the objects an earlier pack held, re-pointing each OFS_DELTA at its base's
    new place (a delta follows its base within a pack)."""
    source = pack.idx.with_suffix(".pack")
    starts, places = pack.by_offset()
    with source.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:8] != b"PACK\0\0\0\2":
            raise ValueError(f"{source} is not a version 2 pack")
        end = len(data) - 20  # the trailing checksum
        for k, (at, n) in enumerate(zip(starts, places, strict=True)):
            owner = copies.get((p << 32) | n)
            if owner is not None:
                pack.here[n] = packs[owner >> 32].here[owner & _LOW]
                continue
            upto = starts[k + 1] if k + 1 < len(starts) else end
            kind, body = _skip_header(data, at)
            if kind == _OFS_DELTA:
                distance, rest = _read_distance(data, body)
                base = bisect.bisect_left(starts, at - distance)
                if base >= k or starts[base] != at - distance:
                    raise ValueError(f"{pack.idx}: delta at {at} has no base in its pack")
                gap = merged.offset - pack.here[places[base]]
                record = data[at:body] + encode_distance(gap) + data[rest:upto]
            else:
                record = data[at:upto]
            pack.here[n], pack.crcs[n] = merged.add(record)

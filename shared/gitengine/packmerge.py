"""Merging packs by copying their entries as they are stored.

The clone's compaction merges its small packs once 16 pile up (see ``packfiles.rollup``).
libgit2's pack builder re-reads, re-deltas and re-compresses every object it is given: about
150 µs an object, so one merge of the history at 184,710 objects took 27.6 s of a core
beside the writer, and merges of the whole history recur as it grows. Copying each entry
(its compressed data, and a delta as a delta) costs a few microseconds an object instead;
only a delta's base offset (``OFS_DELTA``) is re-pointed at where its base landed. Objects
that several packs hold are written once. Format: gitformat-pack(5), version 2.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from waveline.shared.gitengine.packfiles import PackWriter, index_table

_OFS_DELTA = 6


def _index_offsets(idx: Path) -> list[tuple[int, bytes]]:
    """(offset in the pack, raw id) of every object an index lists, by offset."""
    ids, offsets, large = index_table(idx.read_bytes(), idx)
    listed: list[tuple[int, bytes]] = []
    for i in range(len(ids) // 20):
        (offset,) = struct.unpack_from(">I", offsets, 4 * i)
        if offset & 0x8000_0000:
            (offset,) = struct.unpack_from(">Q", large, 8 * (offset & 0x7FFF_FFFF))
        listed.append((offset, ids[20 * i : 20 * (i + 1)]))
    listed.sort()
    return listed


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
    listings = [_index_offsets(idx) for idx in idxs]
    unique = {raw for listing in listings for _, raw in listing}
    written: dict[bytes, int] = {}  # an object's offset here
    tmp = into / "merging.pack"
    with tmp.open("wb") as out:
        merged = PackWriter(out, len(unique))
        for idx, listing in zip(idxs, listings, strict=True):
            with (
                idx.with_suffix(".pack").open("rb") as f,
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as pack,
            ):
                if pack[:8] != b"PACK\0\0\0\2":
                    raise ValueError(f"{idx.with_suffix('.pack')} is not a version 2 pack")
                end = len(pack) - 20  # the trailing checksum
                moved: dict[int, int] = {}  # an entry's offset there → here
                for n, (at, raw) in enumerate(listing):
                    if raw in written:
                        moved[at] = written[raw]
                        continue
                    upto = listing[n + 1][0] if n + 1 < len(listing) else end
                    kind, body = _skip_header(pack, at)
                    here = merged.offset
                    if kind == _OFS_DELTA:
                        distance, data = _read_distance(pack, body)
                        base = moved.get(at - distance)
                        if base is None:
                            raise ValueError(f"{idx}: delta at {at} has no base in its pack")
                        record = pack[at:body] + encode_distance(here - base) + pack[data:upto]
                    else:
                        record = pack[at:upto]
                    merged.add(raw, record)
                    written[raw] = moved[at] = here
        name, index = merged.finish()
    tmp.rename(into / f"{name}.pack")
    (into / f"{name}.idx").write_bytes(index)
    return name, merged.count

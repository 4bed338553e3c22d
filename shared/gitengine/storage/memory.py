"""New git objects held in memory until they are packed, instead of one file each.

libgit2 writes every new object as a zlib-compressed loose file (open, write, rename: an
inode each), reads it back (inflate) when it pushes, and the clone must later be compacted
(read and inflate again, deflate into a pack, delete the file). The git-writer makes six
objects per image set. With ``MemoryObjects`` installed as the highest-priority backend of
the clone's object database, new objects go to a dict; fetched objects still arrive as packs
(this backend has no ``writepack``); ``ObjectStore.pack`` (store.py) writes what the dict
holds into one pack and drops it from the dict. Measured in one process on the demo layout: building
and pushing 5 commits at a time went from 3.1 to 2.2 ms of CPU per commit, and packing them
from 0.66 to 0.55 ms; under the stack's load the inode churn it removes cost more.

The clone is a cache of the remote: objects lost with the process were either pushed (the
next fetch brings them back) or never pushed (nothing refers to them). Remote-tracking refs
that point at such a lost object are dropped when the clone is opened, before any fetch.
Thread-safe for one writer thread and one packing thread (dict operations are atomic, and a
reader that misses an object just dropped finds it in the pack written before the drop).

``nbytes`` is what the objects hold (their raw data): the writer packs them when that passes
a limit as well as after a number of updates (``Applier.compaction_due``), so a few large
files committed often cannot grow the process without bound between packings.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pygit2

# Object ids of the objects, with their type and raw (uncompressed) data.
_Store = dict[pygit2.Oid, tuple[int, bytes]]


class MemoryObjects:
    """The objects one repository's writer made since they were last packed."""

    def __init__(self) -> None:
        self.objects: _Store = {}
        self._nbytes = 0
        # The count is a read-modify-write from two threads (the writer adds, packing drops).
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.objects)

    @property
    def nbytes(self) -> int:
        """The raw bytes of the objects held."""
        return self._nbytes

    def put(self, oid: pygit2.Oid, kind: int, data: bytes) -> None:
        with self._lock:
            if oid not in self.objects:
                self._nbytes += len(data)
            self.objects[oid] = (kind, data)

    def snapshot(self) -> list[pygit2.Oid]:
        return list(self.objects)

    def drop(self, oids: list[pygit2.Oid]) -> None:
        """Forget ``oids``: call only once a pack holding them is in place."""
        with self._lock:
            for oid in oids:
                held = self.objects.pop(oid, None)
                if held is not None:
                    self._nbytes -= len(held[1])


class _Backend(pygit2.OdbBackend):
    """libgit2's callbacks over a ``MemoryObjects``; a miss raises KeyError, which libgit2
    reads as 'not found here' and asks the next backend."""

    def __init__(self, store: MemoryObjects) -> None:
        super().__init__()
        self._store = store
        self._objects = store.objects

    def read_cb(self, oid: pygit2.Oid) -> tuple[int, bytes]:
        try:
            return self._objects[oid]
        except KeyError:
            raise KeyError(oid) from None

    def _find(self, hex_prefix: str) -> pygit2.Oid:
        # libgit2 asks by prefix even for full ids (pygit2's lookups do).
        if len(hex_prefix) == 40:
            oid = pygit2.Oid(hex=hex_prefix)
            if oid in self._objects:
                return oid
            raise KeyError(hex_prefix)
        found = [oid for oid in list(self._objects) if str(oid).startswith(hex_prefix)]
        if len(found) == 1:
            return found[0]
        if found:
            raise ValueError(f"ambiguous object id prefix {hex_prefix}")
        raise KeyError(hex_prefix)

    def read_prefix_cb(self, hex_prefix: str) -> tuple[int, bytes, pygit2.Oid]:
        oid = self._find(hex_prefix)
        kind, data = self.read_cb(oid)
        return kind, data, oid

    def read_header_cb(self, oid: pygit2.Oid) -> tuple[int, int]:
        kind, data = self.read_cb(oid)
        return kind, len(data)

    def exists_cb(self, oid: pygit2.Oid) -> bool:
        return oid in self._objects

    def exists_prefix_cb(self, hex_prefix: str) -> pygit2.Oid:
        return self._find(hex_prefix)

    def write_cb(self, oid: pygit2.Oid, data: bytes, kind: int) -> None:
        self._store.put(oid, kind, data)

    def refresh_cb(self) -> None:
        return None


def open_with_memory(path: Path, store: MemoryObjects) -> pygit2.Repository:
    """Open the bare repository at ``path`` with ``store`` taking every new object; packs
    and loose files (from before) are read as usual."""
    repo = pygit2.Repository(str(path))
    objects = str(path / "objects")
    odb = pygit2.Odb()
    # Higher priority is asked first and takes the writes (the pack backend takes none).
    odb.add_backend(pygit2.OdbBackendPack(objects), 1)
    odb.add_backend(pygit2.OdbBackendLoose(objects, -1, False), 2)
    odb.add_backend(_Backend(store), 3)
    repo.set_odb(odb)
    return repo

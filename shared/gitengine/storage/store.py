"""One clone's object store: new objects held in memory (objects in), written out as one
pack (pack out), and the clone's loose objects and small packs kept few (compact).

This is the front of the storage package: the git rules (``gitengine/repo.py``,
``services/git_writer/``) use ``ObjectStore`` and never the modules behind it (memory.py,
packfiles.py, packmerge.py), so the speed machinery can change without touching them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import pygit2

from waveline.shared.gitengine.storage.memory import MemoryObjects, open_with_memory
from waveline.shared.gitengine.storage.packfiles import (
    PackWriter,
    _entry_header,
    packs_to_merge,
    remove_packs,
    write_pack,
    write_staged,
)
from waveline.shared.gitengine.storage.packmerge import merge_packs

# Calls a function with arguments, here or in another process (see ObjectStore.compact).
Runner = Callable[..., Any]

# Merge packs once this many pile up (by default).
MAX_PACKS = 16


def _here(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class ObjectStore:
    """The objects of the bare repository at ``path``. With ``hold`` (the default) new
    objects are kept in memory until ``pack`` or ``compact`` writes them out (see
    memory.py for why and what a crash loses); without it libgit2 writes them as loose
    files, as it does by default.

    Safe for one writer thread (through a repository from ``open``) and one packing thread
    calling ``pack``/``compact`` on the same object: only the loose files and held objects
    listed at a packing's start are removed, after the pack holding them is in place, and
    a reader that misses an object re-reads the pack list and finds it there."""

    def __init__(self, path: Path, *, hold: bool = True) -> None:
        self.path = path
        self._memory = MemoryObjects() if hold else None

    @property
    def holds(self) -> bool:
        """True when new objects are kept in memory (until packed)."""
        return self._memory is not None

    @property
    def held_count(self) -> int:
        """How many objects only memory holds."""
        return len(self._memory) if self._memory is not None else 0

    @property
    def held_bytes(self) -> int:
        """The raw bytes of the objects only memory holds."""
        return self._memory.nbytes if self._memory is not None else 0

    def open(self) -> pygit2.Repository:
        """The repository at ``path`` (which must exist) with its new objects going to this
        store; packs and loose files are read as usual."""
        if self._memory is None:
            return pygit2.Repository(str(self.path))
        return open_with_memory(self.path, self._memory)

    def pack(self, run: Runner | None = None) -> int:
        """Write the objects held in memory as one new pack (as they are held: zlib, no
        deltas) and forget their memory copies; returns how many were written.
        ``run(fn, *args)`` calls the CPU-bound step (by default here)."""
        if self._memory is None:
            return 0
        held = self._memory.snapshot()
        if not held:
            return 0
        store = self._memory.objects
        (run or _here)(
            write_pack, [(oid.raw, *store[oid]) for oid in held], self.path / "objects" / "pack"
        )
        self._memory.drop(held)
        return len(held)

    def pack_to(self, repo: pygit2.Repository, oids: Iterable[pygit2.Oid], out: BinaryIO) -> int:
        """Write the objects ``oids`` as one pack to ``out`` (a push's pack): whole objects,
        zlib level 1, no deltas (a push sends a handful of small objects, and the remote's
        next repack deltas them). Held objects are read from memory, others through
        ``repo`` (this store's repository). Returns how many were written; ``KeyError``
        for an object ``repo`` does not have."""
        ids = list(oids)
        held = self._memory.objects if self._memory is not None else {}
        pack = PackWriter(out, len(ids))
        for oid in ids:
            found = held.get(oid)
            kind, data = found if found is not None else repo.odb.read(oid)
            pack.add(_entry_header(int(kind), len(data)) + zlib.compress(data, 1))
        pack.finish()
        return len(ids)

    def pack_into(self, repo: pygit2.Repository, oids: Iterable[pygit2.Oid], pack_dir: Path) -> str:
        """Write the objects ``oids`` as one pack with its index into ``pack_dir`` (another
        repository's, a local push), read as ``pack_to`` does; the files appear complete or
        not at all. Returns the pack's name."""
        held = self._memory.objects if self._memory is not None else {}
        items: list[tuple[pygit2.Oid, int, bytes]] = []
        for oid in oids:
            found = held.get(oid)
            kind, data = found if found is not None else repo.odb.read(oid)
            items.append((oid, int(kind), data))
        return write_pack(items, pack_dir)

    def compact(self, max_packs: int = MAX_PACKS, run: Runner | None = None) -> int:
        """``pack`` what memory holds; pack the loose objects into another pack and delete
        their files (what ``git repack -d`` does for loose objects); when ``max_packs``
        packs or more pile up, merge the small ones by git's geometric rule
        (``packfiles.rollup``: the big packs of the history stay as they are, so a merge
        costs what recent packs hold), their entries copied as stored (packmerge), and
        delete them. Returns how many objects were packed. ``run(fn, *args)`` calls the
        two CPU-bound steps, writing the memory objects' pack and merging packs (the
        git-writer has another process do them: in its own they held the interpreter lock
        its builds and pushes wait for); by default they run here.

        A repository opened before does not see the new packs reliably: reopen it."""
        objects = self.path / "objects"
        # Names only: a writer's half-written object is a tmp_* file in the same folders.
        loose = [
            f
            for d in objects.glob("[0-9a-f][0-9a-f]")
            for f in d.iterdir()
            if len(f.name) == 38 and all(c in "0123456789abcdef" for c in f.name)
        ]
        # At least the two smallest: the pack count stays bounded whatever their sizes.
        merge = packs_to_merge(objects / "pack", over=max_packs - 1, at_least=2)
        written = self.pack(run)
        if merge or loose:
            written += self._pack_from_disk(loose, merge, run or _here)
        return written

    def _pack_from_disk(self, loose: list[Path], packs: list[Path], run: Runner) -> int:
        """Pack ``loose`` objects, then merge them with ``packs`` (their ``.idx`` files)
        into one new pack, copying the packs' entries as stored (packmerge); delete what
        was packed. Returns how many objects the new pack holds."""
        pack_dir = self.path / "objects" / "pack"
        written = 0
        if loose:
            # Left by a writer without the memory backend: rare, so libgit2's builder is
            # good enough. It reads through a repository without the memory backend, so
            # libgit2 finds them on disk without a callback into Python per object.
            builder = pygit2.PackBuilder(pygit2.Repository(str(self.path)))
            for f in loose:
                builder.add(pygit2.Oid(hex=f.parent.name + f.name))
            name = write_staged(pack_dir, lambda staging: builder.write(str(staging)))
            written = builder.written_objects_count
            for f in loose:
                f.unlink(missing_ok=True)
            if packs:
                packs = [*packs, pack_dir / f"{name}.idx"]
        if packs:
            merged: list[int] = []

            def merge(staging: Path) -> None:
                merged.append(run(merge_packs, packs, staging)[1])

            # Written aside, then moved in, so the new pack's name is known and no
            # concurrently fetched pack is mistaken for it.
            remove_packs(packs, keep=write_staged(pack_dir, merge))
            written = merged[0]
        return written

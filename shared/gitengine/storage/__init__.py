"""The speed machinery of a clone's objects, behind a small interface.

- ``ObjectStore``: objects in (new objects held in memory, ``open``), pack out (``pack``),
  ``compact`` (loose objects packed, small packs merged by git's geometric rule), and what a
  writer needs to decide when to pack (``held_count``, ``held_bytes``).
- ``BackgroundPacking``: ``compact`` on a thread beside the writer, its CPU-bound steps in a
  niced process.

Import from here only: memory.py (the object backend), packfiles.py (writing packs and
indexes) and packmerge.py (merging packs) are this package's internals.
"""

from waveline.shared.gitengine.storage.background import (
    PACKING_NICENESS,
    RECYCLE_PACKING_AFTER,
    BackgroundPacking,
)
from waveline.shared.gitengine.storage.store import MAX_PACKS, ObjectStore, Runner

__all__ = [
    "MAX_PACKS",
    "PACKING_NICENESS",
    "RECYCLE_PACKING_AFTER",
    "BackgroundPacking",
    "ObjectStore",
    "Runner",
]

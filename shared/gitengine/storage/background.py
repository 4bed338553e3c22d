"""Compacting an ``ObjectStore`` beside the thread that builds and pushes.

A packing runs on a thread of its own, so a build never waits for it (packing 100k loose
objects on the build thread once stalled batches for 30 s), and that thread has the
CPU-bound steps (compressing the held objects into a pack, merging packs) done by a process
of its own: run in the writer's process, they held the interpreter lock its builds and
pushes wait for at every read of a memory object (a 2 s merge of 183,558 objects made rounds
of 8 commands take 80-250 ms instead of ~12).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pygit2

from waveline.shared import cpu
from waveline.shared.gitengine.storage.store import MAX_PACKS, ObjectStore

logger = logging.getLogger(__name__)

PACKING_NICENESS = 10
# A packing process that packed or merged this many objects is replaced (see collect).
RECYCLE_PACKING_AFTER = 100_000


class BackgroundPacking:
    """``store.compact`` on a thread, one round at a time. Not thread-safe: ``start``,
    ``collect``, ``wait`` and ``close`` are called from one thread (the writer's)."""

    def __init__(self, store: ObjectStore, name: str, max_packs: int = MAX_PACKS) -> None:
        self.store = store
        self.name = name
        self.max_packs = max_packs
        self.recycle_after = RECYCLE_PACKING_AFTER
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"pack-{name}")
        self._offload = packing_process()
        self._packing: Future[int] | None = None
        self._started = 0.0

    @property
    def running(self) -> bool:
        """True while a round started and was not collected yet."""
        return self._packing is not None

    def start(self) -> None:
        """Start a round (call only when none is ``running``)."""
        assert self._packing is None, "a packing round is already running"
        self._started = time.perf_counter()
        self._packing = self._thread.submit(self.store.compact, self.max_packs, self._elsewhere)

    def _elsewhere(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._offload.submit(fn, *args).result()

    def collect(self) -> bool:
        """True once a round finished with its packs in place: the caller reopens its
        repository, which still holds the packs that were merged and deleted. False while
        none ran, one still runs, or it failed (logged: a cache's housekeeping, retried by
        a later round)."""
        packing = self._packing
        if packing is None or not packing.done():
            return False
        self._packing = None
        try:
            packed = packing.result()
        except BrokenProcessPool:
            logger.exception("repo %s: the packing process died; starting another", self.name)
            self._offload = packing_process()
            return False
        except (pygit2.GitError, OSError, ValueError):
            logger.exception("repo %s: packing objects failed", self.name)
            return False
        if packed >= self.recycle_after:
            # A merge's index of every object it copied stays as the process's heap, freed
            # but not returned: a new process for the next round, not a high-water mark
            # that grows with the history (65 MiB after 10 minutes at 100 sets/s).
            self._offload.shutdown(wait=False)
            self._offload = packing_process()
        if packed:
            elapsed = (time.perf_counter() - self._started) * 1000
            logger.info(
                "repo %s: packed %d objects in %.0f ms (beside builds)", self.name, packed, elapsed
            )
        return True

    def wait(self) -> bool:
        """Wait for the running round to end (whatever its outcome), then ``collect``."""
        if self._packing is not None:
            self._packing.exception()
        return self.collect()

    def close(self) -> bool:
        """Wait for the running round, then stop the thread and the process; what
        ``wait`` returns."""
        collected = self.wait()
        self._thread.shutdown(wait=True)
        self._offload.shutdown(wait=True)
        return collected


def packing_process() -> ProcessPoolExecutor:
    """The process packing's CPU-bound steps run in. Spawned, not forked: the caller has
    threads. Niced: housekeeping that may wait, beside services answering requests on the
    same cores (a burst of announcements accepted 959-1,002/s against 1,376-1,587/s while
    packing ran at full priority)."""
    return ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_packing_worker_started,
        initargs=(PACKING_NICENESS, os.getpid()),
    )


def _packing_worker_started(niceness: int, parent: int) -> None:
    """In the packing process: lower its CPU weight by ``niceness`` below its parent's,
    and end it once the parent is gone. Its job queue's pipe never reports the end (the
    worker holds both ends), so without this a parent that exited without shutting the
    pool down (the service was killed) left the worker waiting for work forever.

    The weight takes a session of its own: with autogroups (shared/cpu.py) a nice only
    weighs inside its session, so in the parent's session packing (a merge of the whole
    history is ~2.7 s of CPU) competed with the other services at that session's full
    weight, as if it were not niced."""
    cpu.own_session(lower_by=niceness)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()

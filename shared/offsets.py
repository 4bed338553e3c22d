"""Offset commits that follow processing, at most one per interval per consumer.

Committing after every batch made each consumed batch cost two Kafka requests (the fetch and
the offset commit), for the consumer and for the broker alike; at 100 image sets/s the
services sent several hundred commits per second. Handlers here are idempotent, so what a
commit saves on a crash is only redelivery: ``LazyCommitter`` records the offsets of the
batches that were *handled* and commits them when the interval since the last commit has
passed, when a timer fires after the last batch, when partitions are revoked, and on stop.
It never commits an offset whose message was not handled (it commits explicit offsets, not
the consumer's position, which is already past a batch being handled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

logger = logging.getLogger(__name__)


class LazyCommitter:
    """One consumer's handled-but-uncommitted offsets, committed lazily."""

    def __init__(self, name: str, interval_s: float) -> None:
        self.name = name
        self.interval_s = interval_s
        self._consumer: Any = None
        self._pending: dict[TopicPartition, int] = {}
        self._last = float("-inf")  # the first handled batch is committed at once
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._closing = False  # stopping: a batch that still ends commits at once
        self.commits = 0  # commit requests sent (for tests and metrics)
        self._failing = False

    def handled(self, consumer: Any, records: Iterable[Any]) -> None:
        """Every record of ``records`` was handled: its offset may be committed."""
        self._consumer = consumer
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            if r.offset + 1 > self._pending.get(tp, -1):
                self._pending[tp] = r.offset + 1

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._pending.pop(tp, None)

    async def after_batch(self) -> None:
        """Commit now when the interval has passed, else make sure a timer will."""
        if not self._pending:
            return
        if (
            self._closing
            or self.interval_s <= 0
            or time.monotonic() - self._last >= self.interval_s
        ):
            await self.flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._later(), name=f"commit-{self.name}")

    async def _later(self) -> None:
        # Batches handled while this timer's commit is in flight set no timer of their own
        # (this one still runs): commit them too, or an idle consumer keeps them pending
        # (and shows that lag) until another message comes.
        while self._pending:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> None:
        """Commit what was handled. A failed commit (a rebalance took the partitions, the
        broker is away) is dropped, and logged when commits start failing: the messages are
        redelivered, and handlers are idempotent."""
        async with self._lock:
            if not self._pending or self._consumer is None:
                return
            offsets, self._pending = self._pending, {}
            self._last = time.monotonic()
            assigned = self._consumer.assignment()
            offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
            if not offsets:
                return
            try:
                await self._consumer.commit(offsets)
                self.commits += 1
                if self._failing:
                    self._failing = False
                    logger.warning("%s: offset commits work again", self.name)
            except asyncio.CancelledError:
                # Not sent: keep them for the next flush (close() flushes after cancelling).
                for tp, offset in offsets.items():
                    self._pending[tp] = max(offset, self._pending.get(tp, -1))
                raise
            except KafkaError as exc:
                # Once per state change: during a broker outage every flush fails.
                if not self._failing:
                    self._failing = True
                    logger.warning(
                        "%s: offset commits fail (%r); handled messages may be redelivered"
                        " (handlers are idempotent)",
                        self.name,
                        exc,
                    )

    async def close(self) -> None:
        """Commit what was handled; from now on every handled batch is committed at once
        (the batch being handled while the service stops ends after this)."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await self.flush()


def rewind(consumer: Any, records: Iterable[Any]) -> None:
    """Seek every partition of ``records`` back to its first record there, so the next poll
    delivers them again (what a failed batch needs: none of it was handled)."""
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        first[tp] = min(first.get(tp, r.offset), r.offset)
    assigned = consumer.assignment()
    for tp, offset in first.items():
        if tp in assigned:
            consumer.seek(tp, offset)


class CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commit what was handled before a rebalance hands the partitions to someone else;
    ``joined`` says whether the consumer holds its share of the partitions (it joined its
    group and no rebalance is under way): until then, what is sent to its topic waits."""

    def __init__(self, committer: LazyCommitter) -> None:
        self.committer = committer
        self.joined_event = asyncio.Event()

    @property
    def joined(self) -> bool:
        return self.joined_event.is_set()

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.joined_event.clear()
        await self.committer.flush()
        self.committer.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # Called after every join, with an empty list too (a group with more members than
        # partitions): joined either way.
        self.joined_event.set()

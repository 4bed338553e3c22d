"""LazyCommitter's timing, with a consumer whose commits can be held open (no broker: the
commits themselves are tested against Kafka in tests/integration/test_consumers.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from tests.support import make_config, wait_for
from waveline.services.status_tracker.service import StatusTracker
from waveline.shared.config import Secrets, Settings
from waveline.shared.offsets import CommitOnRevoke, LazyCommitter
from waveline.shared.runtime import bootstrap

TP = TopicPartition("t", 0)


@dataclass
class Record:
    offset: int
    topic: str = "t"
    partition: int = 0


@dataclass
class HeldConsumer:
    """Commits the first ``free`` requests at once; the others wait for ``release``."""

    free: int
    release: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: asyncio.Event = field(default_factory=asyncio.Event)
    committed: list[int] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if len(self.committed) >= self.free:
            self.waiting.set()
            await self.release.wait()
        self.committed.append(offsets[TP])


@pytest.mark.timeout(10)
async def test_what_is_handled_while_the_timer_commits_is_committed_too() -> None:
    """A batch handled while the timer's commit is in flight: the timer still counts as
    running, so that batch sets no timer of its own; it must be committed anyway, not
    only once another message comes (an idle consumer group would show lag forever)."""
    committer = LazyCommitter("test", interval_s=0.05)
    consumer = HeldConsumer(free=1)
    committer.handled(consumer, [Record(0)])
    await committer.after_batch()  # the first batch: committed at once
    committer.handled(consumer, [Record(1)])
    await committer.after_batch()  # within the interval: the timer will
    await asyncio.wait_for(consumer.waiting.wait(), 5)  # the timer's commit is in flight
    committer.handled(consumer, [Record(2)])
    await committer.after_batch()
    consumer.release.set()
    await wait_for(lambda: consumer.committed[-1:] == [3], timeout_s=5, what="offset 3")
    assert consumer.committed == [1, 2, 3]
    await committer.close()
    assert consumer.committed == [1, 2, 3]  # nothing left to commit


@pytest.mark.timeout(10)
async def test_a_consumer_counts_as_joined_between_an_assignment_and_a_revocation() -> None:
    """What readiness reads (``Runtime.joining``): not joined before the group's first
    assignment, joined after it even when it brings no partition (more members than
    partitions), not joined while a rebalance has revoked and not yet reassigned."""
    listener = CommitOnRevoke(LazyCommitter("c", 60.0))
    assert not listener.joined
    await listener.on_partitions_assigned([])
    assert listener.joined
    await listener.on_partitions_revoked([])
    assert not listener.joined
    await listener.on_partitions_assigned([TP])
    assert listener.joined


def test_a_runtime_names_its_consumers_until_they_join(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, topic_prefix="t.", group_prefix="g.")
    runtime = bootstrap("status-tracker", settings, make_config("file:///x"), Secrets())
    StatusTracker(runtime).register()
    joining = runtime.joining()
    assert joining and all(name.startswith("t.") for name in joining), joining

"""How every consumer polls and commits: lazily committed offsets of handled messages only,
prefetch held while a batch is handled, and redelivery of what was not committed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.support import wait_for
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.kafka import HOLD_PREFETCH_S
from waveline.shared.offsets import LazyCommitter
from waveline.shared.runtime import Runtime, bootstrap
from waveline.shared.upstream import aiokafka_private


async def produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def committed(settings: Settings, group: str, topic: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in sorted(parts)}
    finally:
        await consumer.stop()


async def test_committer_commits_handled_offsets_not_the_position(settings: Settings) -> None:
    """The consumer's position is past every record a poll returned; only the offsets
    marked handled are committed."""
    topic = f"{settings.topic_prefix}waveline.images"
    await produce(settings, topic, [f"m{i}".encode() for i in range(6)])
    group = f"{settings.group_prefix}committer-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    committer = LazyCommitter("test", interval_s=60.0)
    try:
        records: list[Any] = []
        async with asyncio.timeout(30):
            while len(records) < 6:
                batch = await consumer.getmany(timeout_ms=200)
                for recs in batch.values():
                    records.extend(recs)
        committer.handled(consumer, records[:3])
        await committer.after_batch()  # the first handled batch is committed at once
        assert committer.commits == 1
        committer.handled(consumer, records[3:4])
        await committer.after_batch()  # within the interval: not yet
        assert committer.commits == 1
        await committer.close()  # stop: what was handled is committed, nothing more
        assert committer.commits == 2
    finally:
        await consumer.stop()
    partition = records[0].partition
    offsets = await committed(settings, group, topic)
    assert offsets[partition] == records[3].offset + 1


async def test_consumers_commit_lazily_and_everything_handled_is_committed_on_stop(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    topic = f"{settings.topic_prefix}waveline.images"
    seen: list[bytes] = []
    rt = bootstrap("test", settings.model_copy(update={"commit_interval_s": 30.0}), config, secrets)

    async def handle(value: bytes) -> None:
        seen.append(value)

    rt.consume(topic, "lazy", lambda b: b, handle, title="lazy test")
    await rt.start(with_db=False)
    try:
        # Every started consumer holds its prefetch while records wait to be handled.
        backoffs = [
            aiokafka_private.prefetch_backoff(s.consumer)  # type: ignore[attr-defined]
            for s in rt.broker.subscribers
        ]
        assert backoffs
        assert all(b == HOLD_PREFETCH_S for b in backoffs)
        for i in range(20):
            await produce(settings, topic, [f"m{i}".encode()])
        await wait_for(lambda: len(seen) == 20, what="all 20 handled")
        # 20 messages, polled in several batches, and at most one commit (the interval is
        # 30 s; the first batch may commit at once, as nothing was committed before).
        assert rt._committers[0].commits <= 1
    finally:
        await rt.stop()
    offsets = await committed(settings, f"{settings.group_prefix}lazy.waveline.images", topic)
    assert sum(o or 0 for o in offsets.values()) == 20


async def test_handled_but_uncommitted_messages_are_redelivered_after_a_crash(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    """A service that dies without committing gets its messages again (handlers are
    idempotent): at-least-once, never at-most-once."""
    topic = f"{settings.topic_prefix}waveline.images"
    lazy = settings.model_copy(update={"commit_interval_s": 3600.0})

    async def collecting(into: list[bytes]) -> Runtime:
        rt = bootstrap("test", lazy, config, secrets)

        async def handle(value: bytes) -> None:
            into.append(value)

        rt.consume(topic, "crash", lambda b: b, handle, title="crash test")
        await rt.start(with_db=False)
        return rt

    first: list[bytes] = []
    rt = await collecting(first)
    await produce(settings, topic, [b"a"])
    await wait_for(lambda: len(first) == 1, what="the first message handled")
    await produce(settings, topic, [b"b", b"c"])
    await wait_for(lambda: len(first) == 3, what="all three handled")
    # Die without the closing flush: only the first batch's commit (sent at once) survived.
    await rt.broker.stop()
    again: list[bytes] = []
    rt2 = await collecting(again)
    try:
        await wait_for(lambda: set(again) >= {b"b", b"c"}, what="b and c redelivered")
        assert b"a" not in again
    finally:
        await rt2.stop()

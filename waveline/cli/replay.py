"""``waveline replay``: re-drive a topic's messages from a time or an offset.

Every effect in Waveline is idempotent (deterministic command ids, Event-Id trailers, unique
constraints), so replaying traffic changes nothing that already happened and completes what
had not. Messages are re-published to the same topic with their keys and headers, up to the
end offsets seen when the replay started (so it terminates even while traffic flows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from waveline.shared import kafka_clients
from waveline.shared.config import Settings
from waveline.shared.kafka import partitions_of
from waveline.shared.topics import PARTITIONS, Topics

logger = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    topic: str
    messages: int = 0
    per_partition: dict[int, tuple[int, int]] = field(default_factory=dict)  # first, end
    dry_run: bool = False


async def replay(
    settings: Settings,
    topic: str,
    *,
    since: datetime | None = None,
    from_offset: int | None = None,
    dry_run: bool = False,
) -> ReplayReport:
    if (since is None) == (from_offset is None):
        raise ValueError("give exactly one of --since or --from-offset")
    if topic not in PARTITIONS:
        raise ValueError(f"unknown topic {topic!r}; one of {sorted(PARTITIONS)}")
    name = Topics(settings.topic_prefix).name(topic)
    consumer = kafka_clients.consumer(settings, group_id=None, enable_auto_commit=False)
    producer = kafka_clients.producer(settings, acks="all", enable_idempotence=True)
    report = ReplayReport(topic=name, dry_run=dry_run)
    await kafka_clients.start(consumer, settings)
    try:
        await kafka_clients.start(producer, settings)
    except BaseException:
        await consumer.stop()
        raise
    try:
        ids = await partitions_of(settings, name)
        partitions = [TopicPartition(name, p) for p in ids]
        if not partitions:
            raise ValueError(f"topic {name!r} does not exist on {settings.kafka_bootstrap}")
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await _starts(consumer, partitions, ends, since, from_offset)
        for tp in partitions:
            report.per_partition[tp.partition] = (starts[tp], ends[tp])
            if starts[tp] >= ends[tp]:
                continue
            consumer.seek(tp, starts[tp])
            position = starts[tp]
            while position < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp]:
                        position = ends[tp]
                        break
                    position = record.offset + 1
                    report.messages += 1
                    if not dry_run:
                        await producer.send(
                            name, record.value, key=record.key, headers=list(record.headers or ())
                        )
                if not batch:
                    position = await consumer.position(tp)
        if not dry_run:
            await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()
    return report


async def _starts(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    ends: dict[TopicPartition, int],
    since: datetime | None,
    from_offset: int | None,
) -> dict[TopicPartition, int]:
    beginnings = await consumer.beginning_offsets(partitions)
    if from_offset is not None:
        return {tp: max(from_offset, beginnings[tp]) for tp in partitions}
    assert since is not None
    found = await consumer.offsets_for_times(
        {tp: int(since.timestamp() * 1000) for tp in partitions}
    )
    return {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in partitions}

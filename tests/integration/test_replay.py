"""Replaying a topic changes nothing that already happened and completes what had not."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.support import APP_SHA, branch_log, image_set, running, wait_for
from waveline.cli.replay import replay
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers
from waveline.shared.topics import PARTITIONS

B_SHA = "2222222222222222222222222222222222222222"
C_SHA = "3333333333333333333333333333333333333333"


async def produce(settings: Settings, docs: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for doc in docs:
            await producer.send_and_wait(f"{settings.topic_prefix}waveline.images", doc, key=b"app")
    finally:
        await producer.stop()


async def skip_to_end(settings: Settings, group: str, topic: str) -> None:
    """Move a consumer group past everything: the messages are 'lost' to it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS["waveline.images"])]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit(dict(ends.items()))
    finally:
        await consumer.stop()


def app_shas(remote: Path) -> list[str]:
    return [
        trailers.parse(c.message).get(trailers.APP_SHA) or ""
        for c in branch_log(str(remote), "auto")[:-1]
    ]


async def test_replay_is_idempotent_and_completes_missing_effects(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    started = datetime.now(UTC)
    await produce(
        settings, [json.dumps(image_set(APP_SHA)).encode(), json.dumps(image_set(B_SHA)).encode()]
    )
    async with running(["promoter", "git-writer"], settings, config, secrets):
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 3, what="A and B")
    # C arrives while the promoter is down, and its group is moved past it (a lost event).
    await produce(settings, [json.dumps(image_set(C_SHA)).encode()])
    topic = f"{settings.topic_prefix}waveline.images"
    await skip_to_end(settings, f"{settings.group_prefix}waveline-promoter.waveline.images", topic)
    dry = await replay(settings, "waveline.images", since=started, dry_run=True)
    assert dry.messages == 3
    async with running(["promoter", "git-writer"], settings, config, secrets):
        await asyncio.sleep(2.0)
        assert sorted(app_shas(remote)) == sorted([APP_SHA, B_SHA])  # C was lost
        report = await replay(settings, "waveline.images", since=started)
        assert report.messages == 3
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 4, what="C completed")
        await asyncio.sleep(2.0)  # let the replayed A and B be processed too
    # A and B are not committed again; C is there exactly once.
    assert sorted(app_shas(remote)) == sorted([APP_SHA, B_SHA, C_SHA])
    again = await replay(settings, "waveline.images", from_offset=0)
    assert again.messages == 6

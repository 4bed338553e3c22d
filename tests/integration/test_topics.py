"""Topic replication settings against the real (one-broker) Kafka: creation with the
settings, a clear refusal when the cluster cannot hold them, the report of existing topics
that differ, and ``waveline topics``' exit status. Every topic here has a per-test prefix."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from waveline.shared.config import Settings
from waveline.shared.errors import ConfigError
from waveline.shared.kafka import make_broker
from waveline.shared.topic_admin import describe_topics, ensure_topics, topic_differences
from waveline.shared.topics import Difference, Topics

pytestmark = pytest.mark.integration

# DescribeConfigs' source of a config set on the topic itself (not a broker default).
TOPIC_CONFIG_SOURCE = 1


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def extra_prefix(settings: Settings, admin: AIOKafkaAdminClient) -> AsyncIterator[str]:
    """A prefix of this test's own beyond the fixture's topics; its topics are removed."""
    prefix = f"{settings.topic_prefix}x{uuid.uuid4().hex[:6]}."
    yield prefix
    left = [t for t in await admin.list_topics() if t.startswith(prefix)]
    if left:
        await admin.delete_topics(left)


async def set_min_insync(admin: AIOKafkaAdminClient, topic: str, value: int) -> None:
    await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": str(value)})]
    )


async def test_more_replicas_than_brokers_is_refused_at_once(
    settings: Settings, admin: AIOKafkaAdminClient, extra_prefix: str
) -> None:
    topics = Topics(extra_prefix).all()
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        async with asyncio.timeout(20):
            await ensure_topics(
                settings.kafka_bootstrap, topics, replication_factor=3, min_insync_replicas=2
            )
    assert time.monotonic() - started < 10, "refused, but only after a wait"
    text = str(refused.value)
    assert "replication factor 3" in text
    assert "WAVELINE_TOPIC_REPLICATION_FACTOR" in text
    assert "INVALID_REPLICATION_FACTOR" in text
    assert refused.value.retriable is False
    assert not [t for t in await admin.list_topics() if t.startswith(extra_prefix)]


async def test_created_with_min_insync_as_a_topic_config(
    settings: Settings, admin: AIOKafkaAdminClient
) -> None:
    topics = Topics(settings.topic_prefix).all()
    answers = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t, {"min.insync.replicas": None}) for t in topics]
    )
    entries = [
        entry
        for answer in answers
        for resource in answer.to_object()["resources"]
        for entry in resource["config_entries"]
    ]
    assert len(entries) == len(topics)
    # Set on each topic, not inherited from the broker's default.
    assert {(e["config_value"], e["config_source"]) for e in entries} == {
        ("1", TOPIC_CONFIG_SOURCE)
    }
    layouts = await describe_topics(settings.kafka_bootstrap, sorted(topics))
    assert {name: layout.partitions for name, layout in layouts.items()} == topics
    assert {(lay.replication_factor, lay.min_insync_replicas) for lay in layouts.values()} == {
        (1, 1)
    }


async def test_report_names_the_topics_that_differ(
    settings: Settings, admin: AIOKafkaAdminClient
) -> None:
    topics = Topics(settings.topic_prefix)
    bootstrap = settings.kafka_bootstrap
    same = {"replication_factor": 1, "min_insync_replicas": 1}
    assert await topic_differences(bootstrap, topics.all(), **same) == []

    await set_min_insync(admin, topics.images, 2)
    async with asyncio.timeout(20):
        while not (found := await topic_differences(bootstrap, topics.all(), **same)):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    assert found == [Difference(topics.images, "min.insync.replicas", wanted=1, actual=2)]

    # Settings asking for 2/2: every topic (created with 1/1) differs in both.
    found = await topic_differences(
        bootstrap, topics.all(), replication_factor=2, min_insync_replicas=2
    )
    assert {d.topic for d in found if d.setting == "replication factor"} == set(topics.all())
    assert {d.topic for d in found if d.setting == "min.insync.replicas"} == (
        set(topics.all()) - {topics.images}
    )
    assert all(d.wanted == 2 and d.actual == 1 for d in found)


async def test_report_names_a_partition_count_that_differs(
    settings: Settings, extra_prefix: str
) -> None:
    name = f"{extra_prefix}waveline.images"
    await ensure_topics(settings.kafka_bootstrap, {name: 2})
    found = await topic_differences(
        settings.kafka_bootstrap, {name: 6}, replication_factor=1, min_insync_replicas=1
    )
    assert found == [Difference(name, "partitions", wanted=6, actual=2)]
    # A topic that does not exist is for ensure_topics to create, not a difference.
    missing = f"{extra_prefix}waveline.checks"
    assert (
        await topic_differences(
            settings.kafka_bootstrap, {missing: 6}, replication_factor=1, min_insync_replicas=1
        )
        == []
    )


def topics_cli(
    settings: Settings, prefix: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WAVELINE_")}
    base |= {
        "WAVELINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "WAVELINE_TOPIC_PREFIX": prefix,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "waveline", "topics", *args],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_waveline_topics_creates_and_reports(
    settings: Settings, admin: AIOKafkaAdminClient, extra_prefix: str
) -> None:
    created = await asyncio.to_thread(topics_cli, settings, extra_prefix)
    assert created.returncode == 0, created.stdout + created.stderr
    assert "10 topics present" in created.stdout
    names = Topics(extra_prefix).all()
    layouts = await describe_topics(settings.kafka_bootstrap, sorted(names))
    assert set(layouts) == set(names)

    images = Topics(extra_prefix).images
    await set_min_insync(admin, images, 2)
    differs = await asyncio.to_thread(topics_cli, settings, extra_prefix)
    assert differs.returncode == 3, differs.stdout + differs.stderr
    assert f"{images}: min.insync.replicas is 2, the settings want 1" in differs.stdout
    assert "1 setting(s) of existing topics differ" in differs.stdout
    warned = await asyncio.to_thread(topics_cli, settings, extra_prefix, "--warn-only")
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert f"{images}: min.insync.replicas is 2" in warned.stdout

    # Settings that the one broker cannot hold: exit 2 with the reason, nothing created.
    refused = await asyncio.to_thread(
        topics_cli,
        settings,
        f"{extra_prefix}rf3.",
        WAVELINE_TOPIC_REPLICATION_FACTOR="3",
        WAVELINE_TOPIC_MIN_INSYNC_REPLICAS="2",
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "cannot be reached because only 1 broker(s) are registered" in refused.stderr
    # And settings that contradict themselves never reach Kafka.
    invalid = await asyncio.to_thread(
        topics_cli, settings, f"{extra_prefix}bad.", WAVELINE_TOPIC_MIN_INSYNC_REPLICAS="2"
    )
    assert invalid.returncode == 2
    assert "WAVELINE_TOPIC_MIN_INSYNC_REPLICAS (2) must not exceed" in invalid.stderr
    assert not [t for t in await admin.list_topics() if t.startswith(f"{extra_prefix}rf3.")]


async def test_producers_wait_for_every_in_sync_replica(settings: Settings) -> None:
    broker = make_broker(settings, "test-acks")
    async with asyncio.timeout(30):
        await broker.start()
        try:
            producer = broker.config.producer._producer.producer  # type: ignore[attr-defined]
            await producer.send_and_wait(Topics(settings.topic_prefix).dlq, b"{}")
            # aiokafka's encoding of acks=all, and the producer id the broker handed out
            # to an idempotent producer.
            assert producer._sender._acks == -1
            assert producer._txn_manager is not None
            assert producer._txn_manager.producer_id >= 0
        finally:
            await broker.stop()

"""The consumer boundary on real Kafka: an outage waits (partitions paused, backoff, no
dead letter, order kept, one log line when it begins and one when it ends); a message that
cannot be valid is dead-lettered at once; dead letters are small whatever they are about,
and a dead letter is never written about a dead letter."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.support import (
    branch_log,
    count_topic,
    image_set,
    make_config,
    produce,
    read_topic,
    running,
    wait_for,
)
from waveline.devstack.demo import seed_repo
from waveline.shared.config import Secrets, Settings
from waveline.shared.kafka import partitions_of
from waveline.shared.models.dlq import MAX_LETTER_BYTES, PAYLOAD_HEAD_BYTES, DeadLetter
from waveline.shared.runtime import bootstrap


def quick(settings: Settings) -> Settings:
    return settings.model_copy(update={"retry_backoff_s": 0.05, "retry_cap_s": 0.4})


@pytest.mark.timeout(60)
async def test_an_outage_waits_in_order_and_logs_once(
    settings: Settings, config: Any, secrets: Secrets, caplog: pytest.LogCaptureFixture
) -> None:
    settings = quick(settings)
    runtime = bootstrap("probe", settings, config, secrets)
    topic = runtime.topics.operator
    seen: list[int] = []
    failures = 0
    healed = asyncio.Event()

    async def handle(value: dict[str, int]) -> None:
        nonlocal failures
        if not healed.is_set():
            failures += 1
            raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
        seen.append(value["n"])

    runtime.consume(topic, "probe", json.loads, handle, title="probe")
    await produce(settings, "waveline.operator", [json.dumps({"n": n}).encode() for n in range(20)])
    caplog.set_level(logging.WARNING, logger="waveline.shared.outage")
    await runtime.start(with_db=False)
    try:
        await wait_for(lambda: failures >= 6, what="several failed attempts")
        (waiting,) = runtime.waits.current().values()
        assert waiting["dependency"] == "postgres"
        assert waiting["attempts"] >= 6
        healed.set()
        await wait_for(lambda: len(seen) >= 20, what="every message after the outage")
        await wait_for(lambda: not runtime.waits.current(), what="the wait to end")
    finally:
        await runtime.stop()
    assert seen[:20] == list(range(20))  # in order, nothing skipped
    assert runtime.waits.waited_s["postgres"] > 0
    lines = [r.getMessage() for r in caplog.records if r.name == "waveline.shared.outage"]
    assert len([m for m in lines if "waiting for postgres" in m]) == 1, lines
    assert len([m for m in lines if "postgres is back" in m]) == 1, lines
    assert await count_topic(settings.kafka_bootstrap, runtime.topics.dlq) == 0


@pytest.mark.timeout(60)
async def test_a_message_that_cannot_be_valid_is_dead_lettered_at_once(
    settings: Settings, config: Any, secrets: Secrets
) -> None:
    runtime = bootstrap("probe", quick(settings), config, secrets)
    topic = runtime.topics.operator
    calls: dict[int, int] = {}

    async def handle(value: dict[str, int]) -> None:
        calls[value["n"]] = calls.get(value["n"], 0) + 1
        if value["n"] == 1:
            raise KeyError("the rules refuse message 1")

    runtime.consume(topic, "probe", json.loads, handle, title="probe")
    values = [b'{"n": 0}', b"not json", b'{"n": 1}', b'{"n": 2}']
    await produce(settings, "waveline.operator", values)
    await runtime.start(with_db=False)
    try:
        letters = await read_topic(
            settings.kafka_bootstrap, runtime.topics.dlq, until=lambda m: len(m) >= 2
        )
        await wait_for(lambda: calls.get(2) == 1, what="the message after the bad one")
    finally:
        await runtime.stop()
    assert [
        json.loads(m["payload"]) if m["payload"] != "not json" else m["payload"] for m in letters
    ] == ["not json", {"n": 1}]
    assert [m["offset"] for m in letters] == [1, 2]
    assert letters[1]["error_code"] == "KeyError"
    assert calls[1] <= 2  # once alone after the batch failed; never retried with backoff
    assert runtime.waits.waited_s == {}


async def test_a_dead_letter_about_anything_is_small() -> None:
    huge = ("\x00é" * 700_000).encode()
    letter = DeadLetter.about(
        huge,
        service="promoter",
        source_topic="waveline.images",
        error_code="invalid_message",
        reason="x" * 1_000_000,
        retriable=False,
        key=b"k" * 100_000,
    )
    assert len(letter.to_bytes()) < MAX_LETTER_BYTES
    assert letter.payload_bytes == len(huge)
    assert letter.payload.encode("utf-8", "replace")[:8] == huge[:8]
    assert len(letter.payload) <= PAYLOAD_HEAD_BYTES


@pytest.mark.timeout(90)
async def test_a_1mb_wrong_shape_record_does_not_stop_the_image_sets(
    settings: Settings, secrets: Secrets, tmp_path: Any
) -> None:
    """A ~1 MB record of the wrong shape on waveline.images, then valid sets on every
    partition: one small dead letter, and every set commits."""
    remote = tmp_path / "remote" / "cfg-app.git"
    seed_repo(remote)
    config = make_config(remote.as_uri())
    wrong = json.dumps({"pipeline": "app", "images": ["x" * 999_000]}).encode()
    assert 990_000 < len(wrong) < 1_000_000
    await produce(settings, "waveline.images", [wrong], key=b"big")
    partitions = await partitions_of(
        settings.kafka_bootstrap, f"{settings.topic_prefix}waveline.images"
    )
    shas = [f"{n + 1:040x}" for n in range(len(partitions) * 2)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n, app_sha in enumerate(shas):
            await producer.send_and_wait(
                f"{settings.topic_prefix}waveline.images",
                json.dumps(image_set(app_sha)).encode(),
                partition=partitions[n % len(partitions)],
            )
    finally:
        await producer.stop()
    async with running(["promoter", "git-writer"], quick(settings), config, secrets):
        letters = await read_topic(
            settings.kafka_bootstrap,
            f"{settings.topic_prefix}waveline.dlq",
            until=lambda m: len(m) >= 1,
        )
        await wait_for(
            lambda: len(branch_log(str(remote), "auto")) == len(shas) + 1,
            timeout_s=60,
            what="every valid set committed",
        )
    (letter,) = letters
    assert letter["payload_bytes"] == len(wrong)
    assert len(json.dumps(letter)) < MAX_LETTER_BYTES
    assert letter["service"] == "promoter"


@pytest.mark.timeout(60)
async def test_no_dead_letter_about_a_dead_letter(
    settings: Settings, config: Any, secrets: Secrets
) -> None:
    """The notifier reads waveline.dlq; an unreadable record there is logged and dropped,
    never answered with another letter (which it would read again)."""
    garbage = [b"\xff\xfe not a letter", json.dumps({"event_id": str(uuid.uuid4())}).encode()]
    await produce(settings, "waveline.dlq", garbage)
    fine = DeadLetter.about(
        b"{}",
        service="probe",
        source_topic="waveline.images",
        error_code="invalid_message",
        reason="a marker after the garbage",
        retriable=False,
    )
    await produce(settings, "waveline.dlq", [fine.to_bytes()])
    topic = f"{settings.topic_prefix}waveline.dlq"
    async with running(["notifier"], quick(settings), config, secrets) as rts:
        group = rts["notifier"].group("waveline-notifier", topic)
        # The marker after the garbage is handled and committed: the garbage did not hold
        # the partition.
        await wait_for_committed(settings, group, topic, 3)
    assert await count_topic(settings.kafka_bootstrap, topic) == 3


async def wait_for_committed(settings: Settings, group: str, topic: str, total: int) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p) for p in await partitions_of(settings.kafka_bootstrap, topic)
        ]
        async with asyncio.timeout(30):
            while sum([(await consumer.committed(tp)) or 0 for tp in tps]) < total:  # noqa: ASYNC110 (polls the broker)
                await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


@pytest.mark.timeout(60)
async def test_the_health_endpoint_reports_a_wait_and_its_end(
    settings: Settings, config: Any, secrets: Secrets
) -> None:
    """A consumer service's /readyz is 503 naming what it waits for while a dependency is
    away, 200 once it is back; /healthz stays 200 (a restart cures no outage); /metrics
    counts the time waited."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    probe = quick(settings).model_copy(update={"health_port": port})
    base = f"http://127.0.0.1:{port}"
    async with (
        running(["status-tracker"], probe, config, secrets) as rts,
        aiohttp.ClientSession() as http,
    ):
        runtime = rts["status-tracker"]
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["joining"] == []
        runtime.waits.failed("waveline.checks", asyncpg.exceptions.AdminShutdownError("57P01"))
        async with http.get(f"{base}/readyz") as resp:
            body = await resp.json()
            assert resp.status == 503
        assert body["waiting"]["waveline.checks"]["dependency"] == "postgres"
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        runtime.waits.succeeded("waveline.checks")
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        assert 'waveline_dependency_wait_seconds_total{consumer="waveline.checks"' in text

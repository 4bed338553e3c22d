"""Helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pygit2
from aiokafka import AIOKafkaConsumer, TopicPartition

from waveline.cli.serve import serve
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.kafka import partitions_of
from waveline.shared.runtime import Runtime, bootstrap

APP_SHA = "7d1043473d55bfa90e8530d35801d4e381bc69f0"
DIGEST_1 = "sha256:6a9ca693f6fff83215c00b653bcf2106124705ad538dc509373523fdd6cefdb4"
DIGEST_2 = "sha256:621f0ce9f70ad34dcc76d4b28c0e16ff30afa7f0318ec9ed85f9979255006a65"


def image_set(app_sha: str = APP_SHA, pipeline: str = "app") -> dict[str, Any]:
    """Seed 001's document for two services."""
    return {
        "pipeline": pipeline,
        "app_sha": app_sha,
        "images": {
            "Service1": {
                "Digest": f"docker.example.com/service1@{DIGEST_1}",
                "Tag": f"docker.example.com/service1:{app_sha}",
            },
            "Service2": {
                "Digest": f"docker.example.com/service2@{DIGEST_2}",
                "Tag": f"docker.example.com/service2:{app_sha}",
            },
        },
    }


def make_config(url: str, *, layout: dict[str, Any] | None = None) -> WavelineConfig:
    return WavelineConfig.model_validate(
        {
            "repos": {
                "cfg-app": {
                    "url": url,
                    "author": {"name": "waveline", "email": "waveline@example.com"},
                    "required_checks": ["ci/validate"],
                }
            },
            "pipelines": {
                "app": {
                    "repo": "cfg-app",
                    "layout": layout or {"kind": "images-json", "path": "images/{wave}"},
                    "waves": [
                        {"name": "staging", "targets": ["staging-us", "staging-eu"]},
                        {"name": "internal", "targets": ["internal-us"], "gate": {"bake": "1s"}},
                        {"name": "production", "targets": ["prod-us"], "gate": {"approval": True}},
                    ],
                }
            },
        }
    )


@contextlib.asynccontextmanager
async def running(
    names: list[str], settings: Settings, config: WavelineConfig, secrets: Secrets
) -> AsyncIterator[dict[str, Runtime]]:
    """Run services in this event loop (real Kafka and Postgres) for the block's duration."""
    stop = asyncio.Event()
    runtimes = {n: bootstrap(n, settings, config, secrets) for n in names}
    ready = {n: asyncio.Event() for n in names}
    tasks = [asyncio.create_task(serve(rt, stop, ready[n])) for n, rt in runtimes.items()]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(e.wait() for e in ready.values()))
        yield runtimes
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


async def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 30.0,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning until ``until(messages)`` holds (or time out)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    messages: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not until(messages):
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    messages.extend(json.loads(r.value) for r in records)
    except TimeoutError as exc:
        raise AssertionError(f"{topic}: condition not met; got {messages}") from exc
    finally:
        await consumer.stop()
    return messages


async def count_topic(bootstrap_servers: str, topic: str) -> int:
    """How many messages ``topic`` holds, over all partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        ids = await partitions_of(bootstrap_servers, topic)
        partitions = [TopicPartition(topic, p) for p in ids]
        ends = await consumer.end_offsets(partitions)
        begins = await consumer.beginning_offsets(partitions)
        return sum(ends[p] - begins[p] for p in partitions)
    finally:
        await consumer.stop()


def branch_log(bare: str, branch: str) -> list[pygit2.Commit]:
    repo = pygit2.Repository(bare)
    ref = repo.references.get(f"refs/heads/{branch}")
    if ref is None:
        return []
    walker = repo.walk(ref.target, pygit2.enums.SortMode.TOPOLOGICAL)
    return list(walker)


async def wait_for(
    predicate: Callable[[], bool], *, timeout_s: float = 30.0, what: str = "condition"
) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 (polls git, which has no events)
                await asyncio.sleep(0.1)
    except TimeoutError as exc:
        raise AssertionError(f"timed out waiting for {what}") from exc

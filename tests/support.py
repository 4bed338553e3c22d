"""Helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pygit2
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.logscan import keep_leftovers
from waveline.cli.serve import serve
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.db import create_pool, migrate
from waveline.shared.kafka import ensure_topics, partitions_of
from waveline.shared.models.git import Evict, IntroduceImages
from waveline.shared.models.images import ImageSetAnnounced
from waveline.shared.runtime import Runtime, bootstrap
from waveline.shared.topics import Topics

APP_SHA = "7d1043473d55bfa90e8530d35801d4e381bc69f0"
DIGEST_1 = "sha256:6a9ca693f6fff83215c00b653bcf2106124705ad538dc509373523fdd6cefdb4"
DIGEST_2 = "sha256:621f0ce9f70ad34dcc76d4b28c0e16ff30afa7f0318ec9ed85f9979255006a65"


def image_set(app_sha: str = APP_SHA, pipeline: str = "app") -> dict[str, Any]:
    """A ``POST /v1/images`` body for two services."""
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
            # What a stack called up means (/readyz): every consumer holds its partitions.
            await asyncio.gather(*(rt.until_joined() for rt in runtimes.values()))
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


def service_env(settings: Settings, config: WavelineConfig, tmp_path: Path) -> dict[str, str]:
    """The environment of a real service process on this test's topics, groups, schema
    and data dir (config written under ``tmp_path``), with a failpoint file
    ``tmp_path/fault`` it may be armed through."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config.model_dump(mode="json")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVELINE_")}
    return env | {
        "WAVELINE_CONFIG": str(config_path),
        "WAVELINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "WAVELINE_DATABASE_URL": settings.database_url.get_secret_value(),
        "WAVELINE_DATABASE_SCHEMA": settings.database_schema,
        "WAVELINE_TOPIC_PREFIX": settings.topic_prefix,
        "WAVELINE_GROUP_PREFIX": settings.group_prefix,
        "WAVELINE_DATA_DIR": str(settings.data_dir),
        "WAVELINE_FAULT_FILE": str(tmp_path / "fault"),
    }


@contextlib.asynccontextmanager
async def fresh_schema(database_url: str) -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    """A database schema of its own, migrated, with a pool on it; dropped at the end (for
    tests of SQL alone, without Kafka)."""
    settings = Settings(database_url=database_url, database_schema=f"t_{uuid.uuid4().hex}")
    await migrate(settings)
    pool = await create_pool(settings)
    try:
        yield settings, pool
    finally:
        await pool.close()
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP SCHEMA "{settings.database_schema}" CASCADE')
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def isolated_settings(
    bootstrap: str, database_url: str, data_dir: Path
) -> AsyncIterator[Settings]:
    """Settings with their own topics, consumer groups and database schema on the shared
    broker and database; all of them are removed afterwards (a shared local broker would
    otherwise collect thousands of partitions, and a restarted broker loads them all before
    it leads any)."""
    tag = uuid.uuid4().hex[:12]
    settings = Settings(
        kafka_bootstrap=bootstrap,
        database_url=database_url,
        database_schema=f"t_{tag}",
        topic_prefix=f"t{tag}.",
        group_prefix=f"t{tag}.",
        data_dir=data_dir,
        http_port=0,
        publish_timeout_s=10.0,
        # The suite starts many services one after the other on one PostgreSQL: each opens
        # a connection at start and more only as it needs them.
        database_pool_min_size=1,
    )
    topics = Topics(settings.topic_prefix).all()
    await ensure_topics(settings.kafka_bootstrap, topics)
    await migrate(settings)
    try:
        yield settings
    finally:
        # The suite's last test scans them for secrets (tests/logscan.py).
        await keep_leftovers(settings)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')
        finally:
            await conn.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(list(topics))
        finally:
            await admin.close()


def children_of(pid: int) -> set[int]:
    """The live (not zombie) child processes of ``pid``, from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def introduce(repo: str = "cfg-app", pipeline: str = "app", n: int = 1) -> IntroduceImages:
    """An introduce command for image set number ``n`` (its app sha is ``n`` in hex)."""
    app_sha = f"{n:040x}"
    return IntroduceImages(
        command_id=uuid.uuid4(),
        repo=repo,
        issued_at=datetime.now(UTC),
        pipeline=pipeline,
        wave="staging",
        app_sha=app_sha,
        images=ImageSetAnnounced.model_validate(image_set(app_sha)).images,
    )


async def produce(
    settings: Settings, topic: str, values: Sequence[bytes], *, key: bytes | None = b"k"
) -> None:
    """Put raw records on this test's ``topic`` (its base name), acknowledged by every
    in-sync replica; records up to 2 MiB (a test may go near the broker's 1 MB limit)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=2 << 20
    )
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(f"{settings.topic_prefix}{topic}", value, key=key)
    finally:
        await producer.stop()


async def produce_commands(settings: Settings, commands: Sequence[IntroduceImages | Evict]) -> None:
    """Put git commands on this test's ``waveline.git.commands``, keyed by repo."""
    for cmd in commands:
        await produce(
            settings,
            "waveline.git.commands",
            [cmd.model_dump_json().encode()],
            key=cmd.repo.encode(),
        )

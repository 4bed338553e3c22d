"""Hostile config-repo content through real Kafka, PostgreSQL and git-writer: each file a
person could commit is answered with a `rejected` event naming the file, the path in it and
why, while a second repository keeps committing and nothing is dead-lettered."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.support import (
    APP_SHA,
    branch_log,
    count_topic,
    introduce,
    make_config,
    running,
)
from waveline.devstack.demo import seed_repo
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine.repo import ConfigRepo
from waveline.shared.models.git import IntroduceImages, PromoteWave

pytestmark = pytest.mark.timeout(110)

MAX_FILE_BYTES = 32 * 1024  # the 5,000-deep document (25 KB) must pass it
OVERSIZED = b"services: {}\n# " + b"x" * 40_000 + b"\n"
VALUES = "envs/staging/values.yaml"
KUSTOMIZATION = "kust/staging/kustomization.yaml"
TAGS = "images/staging/tags.json"


@dataclass(frozen=True)
class Case:
    name: str
    pipeline: str
    path: str
    content: bytes
    reason: str
    promote: bool = False  # images-json rewrites its files whole: only reading them meets it


CASES = [
    Case(
        "not UTF-8",
        "values",
        VALUES,
        b"services:\n  Service1: \xff\n",
        f"{VALUES}: line 2, column 13: not UTF-8 text (byte 0xff)",
    ),
    Case(
        "wrong YAML type: a list where a mapping goes",
        "values",
        VALUES,
        b"services:\n  Service1:\n    image: [a, b]\n",
        f"{VALUES}: services.Service1.image: expected a mapping, got a list",
    ),
    Case(
        "wrong YAML type: a scalar where a mapping goes",
        "values",
        VALUES,
        b"services: 3\n",
        f"{VALUES}: services: expected a mapping, got a number",
    ),
    Case(
        "duplicate YAML keys",
        "values",
        VALUES,
        b"services:\n  Service1: {}\n  Service1: {}\n",
        f"{VALUES}: services.Service1: duplicate key",
    ),
    Case(
        "nested 5,000 deep",
        "values",
        VALUES,
        b"services: " + b"{a: " * 5000 + b"1" + b"}" * 5000 + b"\n",
        f"{VALUES}: services" + ".a" * 63 + ": nested deeper than 64 levels",
    ),
    Case(
        "kustomize images: not a list",
        "kust",
        KUSTOMIZATION,
        b"images:\n  name: docker.example.com/service1\n  newTag: v1\n",
        f"{KUSTOMIZATION}: images: expected a list, got a mapping",
    ),
    Case(
        "kustomize images: an unknown key",
        "kust",
        KUSTOMIZATION,
        b"images:\n- name: docker.example.com/service1\n  newtag: v1\n",
        f"{KUSTOMIZATION}: images.0.newtag: unknown key "
        "(kustomize knows name, newName, newTag, tagSuffix, digest)",
    ),
    Case(
        "over the size cap",
        "values",
        VALUES,
        OVERSIZED,
        f"{VALUES}: {len(OVERSIZED):,} bytes, over the limit of 32,768 bytes",
    ),
    Case(
        "duplicate JSON keys",
        "json",
        TAGS,
        b'{"Service1": "r/s1:a", "Service1": "r/s1:b"}\n',
        f"{TAGS}: Service1: duplicate key",
        promote=True,
    ),
    Case(
        "wrong JSON type",
        "json",
        TAGS,
        b'{"Service1": 7}\n',
        f"{TAGS}: Service1: expected a string, got a number",
        promote=True,
    ),
]


def hostile_config(first: Path, second: Path) -> WavelineConfig:
    base = make_config(first.as_uri()).model_dump(mode="json")
    app = base["pipelines"].pop("app")
    layouts = {
        "json": {"kind": "images-json", "path": "images/{wave}"},
        "values": {"kind": "yaml-path", "path": "envs/{wave}/values.yaml"},
        "kust": {"kind": "kustomize", "path": "kust/{wave}"},
    }
    for name, layout in layouts.items():
        base["pipelines"][name] = {**app, "layout": layout}
    base["repos"]["cfg-two"] = {**base["repos"]["cfg-app"], "url": second.as_uri()}
    base["pipelines"]["other"] = {**app, "repo": "cfg-two"}
    return WavelineConfig.model_validate(base)


def commit_on_master(bare: Path, path: str, content: bytes) -> pygit2.Oid:
    """A person's commit, straight into the remote."""
    cfg = ConfigRepo("x", make_config(bare.as_uri()).repos["cfg-app"], bare)
    parent = cfg.repo.references["refs/heads/master"].target
    assert isinstance(parent, pygit2.Oid)
    tree = cfg.write_tree(cfg.commit(parent).tree, {path: content})
    sig = pygit2.Signature("human", "human@example.com")
    return cfg.repo.create_commit("refs/heads/master", sig, sig, f"edit {path}", tree, [parent])


def promote(pipeline: str, deployed: pygit2.Oid) -> PromoteWave:
    return PromoteWave(
        command_id=uuid.uuid4(),
        repo="cfg-app",
        issued_at=datetime.now(UTC),
        pipeline=pipeline,
        from_wave="staging",
        to_wave="internal",
        app_sha=APP_SHA,
        deployed_sha=str(deployed),
    )


class Events:
    """git-writer's events, read as they come."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.seen: dict[str, dict[str, Any]] = {}

    async def of(self, ids: Sequence[uuid.UUID], timeout_s: float = 20.0) -> list[dict[str, Any]]:
        wanted = [str(i) for i in ids]
        async with asyncio.timeout(timeout_s):
            while not all(i in self.seen for i in wanted):
                batch = await self._consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        event = json.loads(record.value)
                        self.seen.setdefault(event["command_id"], event)
        return [self.seen[i] for i in wanted]


@asynccontextmanager
async def kafka(settings: Settings) -> AsyncIterator[tuple[AIOKafkaProducer, Events]]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    consumer = AIOKafkaConsumer(
        f"{settings.topic_prefix}waveline.git.events",
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await producer.start()
    await consumer.start()
    try:
        yield producer, Events(consumer)
    finally:
        await consumer.stop()
        await producer.stop()


async def send(
    settings: Settings,
    producer: AIOKafkaProducer,
    commands: Sequence[IntroduceImages | PromoteWave],
) -> None:
    for cmd in commands:
        await producer.send_and_wait(
            f"{settings.topic_prefix}waveline.git.commands",
            cmd.model_dump_json().encode(),
            key=cmd.repo.encode(),
        )


async def test_hostile_files_are_rejected_and_the_other_repo_keeps_committing(
    settings: Settings, secrets: Secrets, remote: Path, tmp_path: Path
) -> None:
    second = tmp_path / "remote" / "cfg-two.git"
    seed_repo(second)
    config = hostile_config(remote, second)
    # Fetch before every batch: each hostile file is committed just before its command.
    settings = settings.model_copy(
        update={"git_max_file_bytes": MAX_FILE_BYTES, "git_fetch_interval_s": 0.0}
    )
    async with (
        running(["git-writer"], settings, config, secrets),
        kafka(settings) as (
            producer,
            events,
        ),
    ):
        for n, case in enumerate(CASES, start=1):
            master = commit_on_master(remote, case.path, case.content)
            hostile: IntroduceImages | PromoteWave = (
                promote(case.pipeline, master)
                if case.promote
                else introduce("cfg-app", case.pipeline, n)
            )
            beside = introduce("cfg-two", "other", n)
            await send(settings, producer, [hostile, beside])
            rejected, committed = await events.of([hostile.command_id, beside.command_id])
            assert (rejected["outcome"], rejected["reason"]) == ("rejected", case.reason), case
            assert committed["outcome"] == "committed", case.name
            assert len(branch_log(str(second), "auto")) == n + 1, case.name
        # Once the file is fixed, the same repository commits again.
        commit_on_master(remote, VALUES, b"services: {}\n")
        fixed = introduce("cfg-app", "values", 100)
        await send(settings, producer, [fixed])
        (event,) = await events.of([fixed.command_id])
        assert event["outcome"] == "committed"
    assert len(branch_log(str(remote), "auto")) == len(branch_log(str(remote), "master")) + 1
    assert await count_topic(settings.kafka_bootstrap, f"{settings.topic_prefix}waveline.dlq") == 0

"""Outages the way production has them, on a private Kafka and PostgreSQL (never the
suite's shared ones): PostgreSQL stopped with an immediate shutdown for 30 s, the broker
SIGKILLed for 30 s, while image sets, check results and deploy reports flow through all
five services. Afterwards every accepted image set is on ``auto`` exactly once, the last one
runs in the last wave, ``auto`` and ``watched`` converge, and nothing was dead-lettered.

A fake CI (GitHub status webhooks for every commit on ``auto``) and a fake Argo CD (every
target Synced/Healthy at ``watched``'s tip) drive the journey over ingest's HTTP API, and
retry as their real counterparts would when ingest answers 5xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import ARGOCD_TOKEN, CI_TOKEN, GITHUB_SECRET
from tests.infra import Infra
from tests.support import (
    branch_log,
    count_topic,
    image_set,
    isolated_settings,
    running,
    wait_for,
)
from waveline.devstack import kafka, postgres, procs
from waveline.devstack.demo import seed_repo
from waveline.devstack.paths import StackPaths
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers
from waveline.shared.logs import RepeatFilter
from waveline.shared.runtime import bootstrap

pytestmark = pytest.mark.e2e

SERVICES = ["ingest", "git-writer", "status-tracker", "promoter", "notifier"]
OUTAGE_S = 30.0
TARGETS = {"staging": ["staging-us", "staging-eu"], "internal": ["internal-us"]}
TARGETS["production"] = ["prod-us"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackPaths]:
    """A Kafka broker and a PostgreSQL of this module's own, on free loopback ports."""
    shared = StackPaths.from_env()
    paths = StackPaths(
        root=shared.root,
        run=tmp_path_factory.mktemp("outage-stack"),
        cache=shared.cache,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        pg_port=free_port(),
        http_port=0,
    )
    kafka.start(paths)
    postgres.start(paths)
    try:
        yield paths
    finally:
        kafka.stop(paths)
        postgres.stop(paths)


@pytest.fixture
async def private(stack: StackPaths, tmp_path: Path) -> AsyncIterator[Settings]:
    infra = Infra(stack.bootstrap, stack.database_url, "private")
    async with isolated_settings(infra.bootstrap, infra.database_url, tmp_path / "data") as s:
        # Quick retries keep the test short; production waits up to 10 s between tries.
        yield s.model_copy(update={"retry_backoff_s": 0.1, "retry_cap_s": 2.0})


def pg_immediate_stop(paths: StackPaths) -> None:
    """What a crash or a failover looks like to clients: no goodbye, 57P01 or a reset."""
    data = paths.run / "pg" / "data"
    cmd = [str(postgres.bin_dir() / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def kafka_kill(paths: StackPaths) -> None:
    pid = procs.pid_of(paths.pids / "kafka.pid")
    assert pid is not None, "the private broker is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procs.pid_of(paths.pids / "kafka.pid") is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def config_for(remote: Path) -> WavelineConfig:
    return WavelineConfig.model_validate(
        {
            "repos": {
                "cfg-app": {
                    "url": remote.as_uri(),
                    "forge_name": "remote/cfg-app",
                    "required_checks": ["ci/validate"],
                }
            },
            "pipelines": {
                "app": {
                    "repo": "cfg-app",
                    "layout": {"kind": "images-json", "path": "images/{wave}"},
                    "waves": [{"name": w, "targets": t} for w, t in TARGETS.items()],
                }
            },
        }
    )


def head(remote: Path, branch: str) -> str:
    log = branch_log(str(remote), branch)
    return str(log[0].id) if log else ""


@dataclass
class World:
    """CI, GitHub and Argo CD around Waveline, over ingest's HTTP API."""

    client: TestClient[Any, Any]
    remote: Path
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    reported: set[str] = field(default_factory=set)
    deployed: dict[str, str] = field(default_factory=dict)

    async def post(self, path: str, *, body: bytes, headers: dict[str, str]) -> int:
        """POST until ingest takes it (202), as CI, GitHub redelivery and Argo CD's
        notifications retry; returns how many tries it took. A check retried after its
        commit was judged is answered 200, ignored: taken too."""
        for attempt in range(1, 200):
            resp = await self.client.post(path, data=body, headers=headers)
            if resp.status == 202 or (resp.status == 200 and path == "/v1/webhooks/github"):
                return attempt
            assert resp.status >= 500, f"{path}: {resp.status} {await resp.text()}"
            await asyncio.sleep(0.25)
        raise AssertionError(f"{path}: never accepted")

    async def announce(self, app_sha: str) -> None:
        tries = await self.post(
            "/v1/images",
            body=json.dumps(image_set(app_sha)).encode(),
            headers={"Authorization": f"Bearer {CI_TOKEN}", "Content-Type": "application/json"},
        )
        self.refused += tries - 1
        self.accepted.append(app_sha)

    async def checks(self) -> None:
        """Every commit on auto not yet on watched gets its required check, green."""
        watched = {str(c.id) for c in branch_log(str(self.remote), "master")}
        for commit in branch_log(str(self.remote), "auto"):
            sha = str(commit.id)
            if sha in watched or sha in self.reported:
                continue
            body = json.dumps(
                {
                    "sha": sha,
                    "state": "success",
                    "context": "ci/validate",
                    "repository": {"full_name": "remote/cfg-app"},
                }
            ).encode()
            sig = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
            await self.post(
                "/v1/webhooks/github",
                body=body,
                headers={
                    "X-GitHub-Event": "status",
                    "X-Hub-Signature-256": f"sha256={sig}",
                    "Content-Type": "application/json",
                },
            )
            self.reported.add(sha)

    async def argocd(self) -> None:
        """Every target syncs to watched's tip and reports it once."""
        tip = head(self.remote, "master")
        for target in [t for targets in TARGETS.values() for t in targets]:
            if self.deployed.get(target) == tip:
                continue
            doc = {
                "app": target,
                "revision": tip,
                "phase": "Succeeded",
                "health": "Healthy",
                "sync": "Synced",
            }
            await self.post(
                "/v1/webhooks/argocd",
                body=json.dumps(doc).encode(),
                headers={
                    "Authorization": f"Bearer {ARGOCD_TOKEN}",
                    "Content-Type": "application/json",
                },
            )
            self.deployed[target] = tip

    async def run_world(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.checks()
            await self.argocd()
            await asyncio.sleep(0.2)

    def production_runs(self) -> str | None:
        """The app sha production's files hold on watched."""
        for commit in branch_log(str(self.remote), "master"):
            info = trailers.parse(commit.message)
            if info.get(trailers.TARGET) == "production":
                return info.get(trailers.APP_SHA)
        return None


async def journey_through(
    settings: Settings,
    secrets: Secrets,
    remote: Path,
    *,
    outage: Callable[[], Coroutine[Any, Any, None]],
    sets: int,
    every_s: float,
) -> World:
    """Announce ``sets`` image sets, one every ``every_s``, with ``outage`` starting after
    the fifth; then wait until the last set runs in production and auto equals watched."""
    config = config_for(remote)
    async with (
        running(SERVICES, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        world = World(client, remote)
        stop = asyncio.Event()
        driver = asyncio.create_task(world.run_world(stop))
        shas = [f"{n + 1:040x}" for n in range(sets)]
        fault: asyncio.Task[None] | None = None
        try:
            for n, app_sha in enumerate(shas):
                if n == 5:
                    fault = asyncio.create_task(outage())
                await world.announce(app_sha)
                await asyncio.sleep(every_s)
            assert fault is not None
            await fault
            await wait_for(
                lambda: (
                    world.production_runs() == shas[-1]
                    and head(remote, "auto") == head(remote, "master")
                ),
                timeout_s=120,
                what="the last set in production, auto == watched",
            )
        finally:
            stop.set()
            await driver
            if fault is not None:
                await fault
        for name, runtime in rts.items():
            assert runtime.waits.current() == {}, f"{name} still waits"
    return world


class Counting(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.kinds: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.kinds[str(record.msg)[:80]] = self.kinds.get(str(record.msg)[:80], 0) + 1

    def sample(self) -> str:
        top = sorted(self.kinds.items(), key=lambda kv: -kv[1])[:15]
        return f"{self.count} lines; most frequent: {top}"


def assert_each_set_committed_once(world: World, remote: Path) -> None:
    introduced: dict[str, int] = {}
    for commit in branch_log(str(remote), "auto"):
        info = trailers.parse(commit.message)
        if info.get(trailers.TARGET) == "staging" and info.get(trailers.APP_SHA):
            app_sha = info.get(trailers.APP_SHA) or ""
            introduced[app_sha] = introduced.get(app_sha, 0) + 1
    assert sorted(introduced) == sorted(world.accepted)
    assert set(introduced.values()) == {1}


@pytest.mark.timeout(240)
async def test_postgres_outage_of_30s_loses_nothing(
    stack: StackPaths, private: Settings, secrets: Secrets, tmp_path: Path
) -> None:
    remote = tmp_path / "remote" / "cfg-app.git"
    seed_repo(remote)

    async def outage() -> None:
        await asyncio.to_thread(pg_immediate_stop, stack)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(postgres.start, stack)

    world = await journey_through(private, secrets, remote, outage=outage, sets=40, every_s=0.8)
    assert_each_set_committed_once(world, remote)
    assert await count_topic(private.kafka_bootstrap, f"{private.topic_prefix}waveline.dlq") == 0


@pytest.mark.timeout(240)
async def test_broker_outage_of_30s_loses_nothing(
    stack: StackPaths, private: Settings, secrets: Secrets, tmp_path: Path
) -> None:
    remote = tmp_path / "remote" / "cfg-app.git"
    seed_repo(remote)

    async def outage() -> None:
        await asyncio.to_thread(kafka_kill, stack)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(kafka.start, stack)

    # What the services' log handler would write (setup_logging's filter), counted.
    lines = Counting()
    lines.addFilter(RepeatFilter())
    logging.getLogger().addHandler(lines)
    try:
        world = await journey_through(private, secrets, remote, outage=outage, sets=30, every_s=0.8)
    finally:
        logging.getLogger().removeHandler(lines)
    # A line per kind of failure a minute and per state change, not one per attempt.
    assert lines.count < 400, lines.sample()
    # Ingest answered 503 while the broker was away; CI retried those sets until accepted.
    assert world.refused > 0
    assert_each_set_committed_once(world, remote)
    assert await count_topic(private.kafka_bootstrap, f"{private.topic_prefix}waveline.dlq") == 0


@pytest.mark.timeout(120)
async def test_a_service_started_while_postgres_is_down_waits_for_it(
    stack: StackPaths, private: Settings, secrets: Secrets, tmp_path: Path
) -> None:
    """No crash loop: the pool's first connection is waited out like any outage, and
    readiness says so meanwhile."""
    remote = tmp_path / "remote" / "cfg-app.git"
    seed_repo(remote)
    runtime = bootstrap("status-tracker", private, config_for(remote), secrets)
    await asyncio.to_thread(pg_immediate_stop, stack)
    try:
        starting = asyncio.create_task(runtime.start())
        await wait_for(lambda: "start" in runtime.waits.current(), what="a wait at start")
        assert runtime.waits.current()["start"]["dependency"] == "postgres"
        await asyncio.sleep(2)
        assert not starting.done()
    finally:
        await asyncio.to_thread(postgres.start, stack)
    try:
        async with asyncio.timeout(30):
            await starting
        assert runtime.waits.current() == {}
        assert await runtime.pool.fetchval("SELECT 1") == 1
    finally:
        await runtime.stop()


@pytest.mark.timeout(120)
async def test_a_service_started_while_kafka_is_down_waits_for_it(
    stack: StackPaths, private: Settings, secrets: Secrets, tmp_path: Path
) -> None:
    """The same for the broker: no exit while Kafka is away at start; it starts once the
    broker is back, and consumes."""
    remote = tmp_path / "remote" / "cfg-app.git"
    seed_repo(remote)
    runtime = bootstrap("status-tracker", private, config_for(remote), secrets)
    await asyncio.to_thread(kafka_kill, stack)
    try:
        starting = asyncio.create_task(runtime.start())
        await wait_for(lambda: "start" in runtime.waits.current(), what="a wait at start")
        assert runtime.waits.current()["start"]["dependency"] == "kafka"
        await asyncio.sleep(2)
        assert not starting.done()
    finally:
        await asyncio.to_thread(kafka.start, stack)
    try:
        async with asyncio.timeout(60):
            await starting
        assert runtime.waits.current() == {}
    finally:
        await runtime.stop()

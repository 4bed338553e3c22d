"""Shared by the benchmarks: where Kafka and Postgres are, repo generation, percentiles,
image-set announcements and their commits."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pygit2

from waveline.devstack import kafka, postgres
from waveline.devstack.paths import StackPaths
from waveline.devstack.procs import port_open
from waveline.shared import kafka_clients
from waveline.shared.config import Settings
from waveline.shared.db import migrate
from waveline.shared.kafka import ensure_topics
from waveline.shared.topics import Topics


def infra() -> tuple[str, str]:
    """Kafka bootstrap and database URL: from the environment, else the local stack."""
    bootstrap = os.environ.get("WAVELINE_KAFKA_BOOTSTRAP")
    url = os.environ.get("WAVELINE_DATABASE_URL")
    if bootstrap and url:
        return bootstrap, url
    paths = StackPaths.from_env()
    if not (port_open(paths.kafka_port) and port_open(paths.pg_port)):
        kafka.start(paths)
        postgres.start(paths)
    return paths.bootstrap, paths.database_url


async def fresh_settings(data_dir: Path) -> Settings:
    bootstrap, url = infra()
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap=bootstrap,
        database_url=url,
        database_schema=f"bench_{tag}",
        topic_prefix=f"bench{tag}.",
        group_prefix=f"bench{tag}.",
        data_dir=data_dir,
        log_level="WARNING",
    )
    await ensure_topics(settings, Topics(settings.topic_prefix).all())
    await migrate(settings)
    return settings


def make_repo(bare: Path, files: int) -> None:
    """A bare repo on ``master`` with ``files`` small distinct files in 1,000-file folders,
    plus the images-json layout's files."""
    repo = pygit2.init_repository(str(bare), bare=True, initial_head="master")
    root = repo.TreeBuilder()
    apps = repo.TreeBuilder()
    for d in range(0, files, 1000):
        folder = repo.TreeBuilder()
        for i in range(d, min(d + 1000, files)):
            blob = repo.create_blob(f"kind: ConfigMap\nname: cm-{i}\n".encode())
            folder.insert(f"cm-{i}.yaml", blob, pygit2.enums.FileMode.BLOB)
        apps.insert(f"d{d // 1000:04d}", folder.write(), pygit2.enums.FileMode.TREE)
    root.insert("apps", apps.write(), pygit2.enums.FileMode.TREE)
    images = repo.TreeBuilder()
    for wave in ("staging", "internal", "production"):
        w = repo.TreeBuilder()
        for name in ("tags.json", "digests.json"):
            w.insert(name, repo.create_blob(b"{}\n"), pygit2.enums.FileMode.BLOB)
        images.insert(wave, w.write(), pygit2.enums.FileMode.TREE)
    root.insert("images", images.write(), pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("bench", "bench@example.com")
    repo.create_commit("refs/heads/master", sig, sig, "init", root.write(), [])


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def calibration_ms(rounds: int = 5) -> float:
    """The median time of a fixed pure-Python loop, in ms: how fast this machine runs
    right now (lower is faster). The 2-core machines these benchmarks run on are virtual,
    and their speed drifts with what else the host runs (a 10M-step loop took 0.85-1.36 s
    within a minute on an idle machine) without showing as steal time; recorded beside
    each run, it helps tell a slow machine from a slow change."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for n in range(2_000_000):
            total += n
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def image_set(
    services: int | Sequence[str] = ("api", "web"), pipeline: str = "app"
) -> tuple[str, dict[str, Any]]:
    """A new app sha and its announcement for ``POST /v1/images``: the ``services`` named,
    or that many (``svc0``, ``svc1``, ...), each with a tag and a digest of its own."""
    sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    names = [f"svc{i}" for i in range(services)] if isinstance(services, int) else services
    images = {
        svc: {
            "Tag": f"registry.example.com/{svc}:{sha}",
            "Digest": f"registry.example.com/{svc}@sha256:{uuid.uuid4().hex * 2}",
        }
        for svc in names
    }
    return sha, {"pipeline": pipeline, "app_sha": sha, "images": images}


async def paced(
    url: str,
    headers: dict[str, str],
    rate: float,
    seconds: float,
    make: Callable[[], tuple[str, dict[str, Any]]],
) -> tuple[dict[str, float], dict[str, float]]:
    """Announcements made by ``make`` at a fixed rate for ``seconds`` (bench/ingest.py
    ``paced`` with the document as a parameter); returns the accept latency's p50/p99 and
    the send time (Unix) of each app sha. Every answer must be 202."""
    latencies: list[float] = []
    sent_at: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        tasks = []
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < seconds:
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sha, doc = make()
            sent_at[sha] = time.time()

            async def one(doc: dict[str, Any] = doc) -> None:
                t = time.perf_counter()
                async with session.post(url, json=doc, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 202:
                        raise RuntimeError(f"announcement answered {resp.status}")
                latencies.append(time.perf_counter() - t)

            tasks.append(asyncio.create_task(one()))
            n += 1
        await asyncio.gather(*tasks)
    return {"p50_ms": pct(latencies, 50) * 1000, "p99_ms": pct(latencies, 99) * 1000}, sent_at


async def committed_events(
    bootstrap: str, shas: Collection[str], timeout_s: float, topic: str = "waveline.git.events"
) -> dict[str, dict[str, Any]]:
    """The GitEvent whose outcome is ``committed`` for each of ``shas`` (its ``at`` is
    stamped after the push; ``timings_ms`` says where the git-writer's time went). Reads
    ``topic`` from its start until all are found or ``timeout_s`` has passed, and returns
    those found."""
    wanted = set(shas)
    found: dict[str, dict[str, Any]] = {}
    consumer = kafka_clients.consumer(bootstrap, topic, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < len(wanted) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    event = json.loads(r.value)
                    sha = event.get("app_sha")
                    if sha in wanted and event["outcome"] == "committed":
                        found[sha] = event
    finally:
        await consumer.stop()
    return found


def at(event: dict[str, Any]) -> float:
    """A GitEvent's ``at`` as a Unix time."""
    return datetime.fromisoformat(event["at"]).timestamp()


def timings(events: Collection[dict[str, Any]]) -> dict[str, float]:
    """The mean of each of the GitEvents' ``timings_ms`` (fetch, apply, push, batch size)."""
    keys = sorted({k for e in events for k in e.get("timings_ms", {})})
    return {k: mean([e["timings_ms"][k] for e in events if k in e["timings_ms"]]) for k in keys}


def fsck(bare: Path) -> tuple[bool, str]:
    """``git fsck --full`` of a bare repository: whether it passed, and what it said
    (dangling objects left out: they are not damage, and a rebuilt branch leaves some)."""
    done = subprocess.run(
        ["git", f"--git-dir={bare}", "fsck", "--full", "--no-progress", "--no-dangling"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0, (done.stdout + done.stderr).strip()

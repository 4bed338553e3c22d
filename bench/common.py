"""Shared by the benchmarks: where Kafka and Postgres are, repo generation, percentiles."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from pathlib import Path

import pygit2

from waveline.devstack import kafka, postgres
from waveline.devstack.paths import StackPaths
from waveline.devstack.procs import port_open
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

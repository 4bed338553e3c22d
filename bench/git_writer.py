"""git-writer benchmark: our committer through Kafka vs. a clone-per-event committer.

For repos of 2,000 / 20,000 / 200,000 files (a bare repo on loopback via file://):
- latency: commands produced at a fixed rate (default 100/s); command-to-pushed-commit time
  is the GitEvent's ``at`` (stamped after the push) minus the command's ``issued_at``;
- throughput: a burst of commands produced at once; commits/s from the first command to the
  last pushed commit (one commit per image set, batches pushed once);
- the peers' way on the same repo: shallow clone, edit, commit, push per event (what
  argocd-image-updater, Flux image automation and Kargo do), timed per event.

Run: ``.venv/bin/python -m bench.git_writer [--sizes 2000,20000,200000]``; results as a
Markdown table on stdout. Needs Kafka and PostgreSQL (env or the local stack).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import fresh_settings, make_repo, mean, pct
from waveline.services.git_writer.service import GitWriter
from waveline.shared import kafka_clients
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.models.git import IntroduceImages
from waveline.shared.models.images import ImageRef
from waveline.shared.runtime import bootstrap


def config_for(bare: Path) -> WavelineConfig:
    return WavelineConfig.model_validate(
        {
            "repos": {"cfg": {"url": bare.as_uri()}},
            "pipelines": {
                "app": {
                    "repo": "cfg",
                    "waves": [
                        {"name": "staging", "targets": ["s"]},
                        {"name": "production", "targets": ["p"]},
                    ],
                }
            },
        }
    )


def command(n: int) -> IntroduceImages:
    sha = uuid.uuid4().hex + f"{n:08x}"
    images = {
        f"svc{i}": ImageRef.model_validate(
            {
                "Tag": f"registry.example.com/svc{i}:{sha}",
                "Digest": f"registry.example.com/svc{i}@sha256:{uuid.uuid4().hex * 2}",
            }
        )
        for i in range(3)
    }
    return IntroduceImages(
        command_id=uuid.uuid4(),
        repo="cfg",
        issued_at=datetime.now(UTC),
        pipeline="app",
        wave="staging",
        app_sha=sha,
        images=images,
    )


class Events:
    """Collects GitEvents as they arrive: command_id -> event."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.seen: dict[str, dict[str, Any]] = {}
        self._consumer = kafka_clients.consumer(
            settings, topic, auto_offset_reset="earliest", group_id=None
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    event = json.loads(r.value)
                    self.seen[event["command_id"]] = event

    async def wait(self, ids: list[str], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not all(i in self.seen for i in ids):  # noqa: ASYNC110 (polls a dict)
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self._consumer.stop()


def latency_ms(event: dict[str, Any], cmd: IntroduceImages) -> float:
    at = datetime.fromisoformat(event["at"])
    return (at - cmd.issued_at).total_seconds() * 1000


async def ours(  # noqa: PLR0915 (one linear measurement script)
    bare: Path, work: Path, rate: float, count: int, burst: int
) -> dict[str, float]:
    settings = await fresh_settings(work / "data")
    runtime = bootstrap("git-writer", settings, config_for(bare), Secrets())
    writer = GitWriter(runtime)
    writer.register()
    await runtime.start()
    events = Events(settings, runtime.topics.git_events)
    await events.start()
    producer = kafka_clients.producer(settings, acks="all")
    await producer.start()
    topic = runtime.topics.git_commands

    async def send(cmd: IntroduceImages, wait: bool) -> None:
        cmd = cmd.model_copy(update={"issued_at": datetime.now(UTC)})
        sent[str(cmd.command_id)] = cmd
        fut = await producer.send(topic, cmd.model_dump_json().encode(), key=b"cfg")
        if wait:
            await fut

    sent: dict[str, IntroduceImages] = {}
    try:
        warm = command(0)
        await send(warm, True)
        await events.wait([str(warm.command_id)], 120)
        # Fixed-rate phase.
        start = time.perf_counter()
        steady: list[str] = []
        for n in range(count):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            cmd = command(n + 1)
            steady.append(str(cmd.command_id))
            await send(cmd, False)
        await producer.flush()
        await events.wait(steady, 120)
        lat = [latency_ms(events.seen[i], sent[i]) for i in steady]
        # Burst phase: everything produced at once, measured to the last pushed commit.
        burst_ids: list[str] = []
        for n in range(burst):
            cmd = command(10_000 + n)
            burst_ids.append(str(cmd.command_id))
            await send(cmd, False)
        await producer.flush()
        await events.wait(burst_ids, 300)
        first = min(sent[i].issued_at for i in burst_ids)
        last = max(datetime.fromisoformat(events.seen[i]["at"]) for i in burst_ids)
        outcomes = {events.seen[i]["outcome"] for i in steady + burst_ids}
        assert outcomes == {"committed"}, outcomes
        per_commit = [
            e["timings_ms"]["apply_ms"] / e["timings_ms"]["batch_size"]
            for e in (events.seen[i] for i in steady + burst_ids)
        ]
        batches = [events.seen[i]["timings_ms"]["batch_size"] for i in burst_ids]
        steady_events = [events.seen[i] for i in steady]
        return {
            "steady_fetch_ms": mean([e["timings_ms"]["fetch_ms"] for e in steady_events]),
            "steady_push_ms": mean([e["timings_ms"]["push_ms"] for e in steady_events]),
            "steady_batch": mean([e["timings_ms"]["batch_size"] for e in steady_events]),
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
            "commits_per_s": burst / (last - first).total_seconds(),
            "apply_ms_per_commit": mean(per_commit),
            "mean_batch": mean(batches),
        }
    finally:
        await producer.stop()
        await events.stop()
        await runtime.stop_consuming()
        await writer.after_consuming()
        await runtime.stop()


def peers(bare: Path, work: Path, events: int) -> dict[str, float]:
    """Clone-per-event: shallow clone, write the file, commit, push; one event at a time."""
    subprocess.run(["git", f"--git-dir={bare}", "branch", "-f", "peers", "master"], check=True)
    times: list[float] = []
    for n in range(events):
        started = time.perf_counter()
        clone = work / f"peer-{n}"
        subprocess.run(
            [
                "git",
                "clone",
                "-q",
                "--depth",
                "1",
                "--branch",
                "peers",
                "--single-branch",
                bare.as_uri(),
                str(clone),
            ],
            check=True,
        )
        (clone / "images" / "staging" / "tags.json").write_text(json.dumps({"svc": f"v{n}"}))
        subprocess.run(
            [
                "git",
                "-C",
                str(clone),
                "-c",
                "user.name=peer",
                "-c",
                "user.email=p@example.com",
                "commit",
                "-q",
                "-am",
                f"update {n}",
            ],
            check=True,
        )
        subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "peers"], check=True)
        times.append(time.perf_counter() - started)
        subprocess.run(["rm", "-rf", str(clone)], check=True)
    return {"events_per_s": 1 / mean(times), "p50_ms": pct(times, 50) * 1000}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="2000,20000,200000")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--count", type=int, default=500, help="commands at the fixed rate")
    parser.add_argument("--burst", type=int, default=3000, help="commands in the burst")
    parser.add_argument("--peer-events", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            bare = work / "remote.git"
            t0 = time.perf_counter()
            make_repo(bare, size)
            made = time.perf_counter() - t0
            result = await ours(bare, work, args.rate, args.count, args.burst)
            peer = peers(bare, work, args.peer_events)
            rows.append((size, made, result, peer))
            print(f"{size} files: ours {result} | peers {peer}", flush=True)
    print()
    print(
        "| files | p50 ms | p99 ms | commits/s (burst) | apply ms/commit | mean batch "
        "| clone-per-event events/s | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, _, r, p in rows:
        print(
            f"| {size:,} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['commits_per_s']:.0f} "
            f"| {r['apply_ms_per_commit']:.2f} | {r['mean_batch']:.0f} "
            f"| {p['events_per_s']:.1f} | {r['commits_per_s'] / p['events_per_s']:.0f}x |"
        )


if __name__ == "__main__":
    asyncio.run(main())

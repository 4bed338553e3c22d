"""ingest benchmark against a running stack (`make up`): accept rate, accept latency, and
announce-to-commit latency end to end (ingest → Kafka → promoter → git-writer → push).

Run: ``make up`` then ``.venv/bin/python -m bench.ingest``. Reads the demo CI token from
``.run/demo/secrets.env`` unless ``WAVELINE_CI_TOKEN`` is set; talks to ``WAVELINE_URL``
(default http://127.0.0.1:8080) and ``WAVELINE_KAFKA_BOOTSTRAP`` (default 127.0.0.1:9092).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer

from bench.common import pct


def token() -> str:
    if os.environ.get("WAVELINE_CI_TOKEN"):
        return os.environ["WAVELINE_CI_TOKEN"]
    for line in Path(".run/demo/secrets.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "WAVELINE_CI_TOKEN":
            return value
    raise SystemExit("no CI token: run `make up` or set WAVELINE_CI_TOKEN")


def document() -> tuple[str, dict[str, Any]]:
    sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    digest = "sha256:" + uuid.uuid4().hex * 2
    return sha, {
        "pipeline": "app",
        "app_sha": sha,
        "images": {
            "api": {
                "Tag": f"registry.example.com/api:{sha}",
                "Digest": f"registry.example.com/api@{digest}",
            },
            "web": {
                "Tag": f"registry.example.com/web:{sha}",
                "Digest": f"registry.example.com/web@{digest}",
            },
        },
    }


async def post(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[str, float, int]:
    sha, doc = document()
    started = time.perf_counter()
    async with session.post(url, json=doc, headers=headers) as resp:
        await resp.read()
        return sha, time.perf_counter() - started, resp.status


async def burst(
    url: str, headers: dict[str, str], total: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(range(total))
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for _ in queue:
                _, took, status = await post(session, url, headers)
                latencies.append(took)
                statuses[status] = statuses.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "accepted_per_s": statuses.get(202, 0) / elapsed,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "non_202": float(sum(v for k, v in statuses.items() if k != 202)),
    }


async def paced(
    url: str, headers: dict[str, str], rate: float, seconds: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Requests at a fixed rate; returns accept latencies and send times per app sha."""
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
            sha, doc = document()
            sent_at[sha] = time.time()

            async def one(doc: dict[str, Any] = doc) -> None:
                t = time.perf_counter()
                async with session.post(url, json=doc, headers=headers) as resp:
                    await resp.read()
                    assert resp.status == 202, resp.status
                latencies.append(time.perf_counter() - t)

            tasks.append(asyncio.create_task(one()))
            n += 1
        await asyncio.gather(*tasks)
    return {"p50_ms": pct(latencies, 50) * 1000, "p99_ms": pct(latencies, 99) * 1000}, sent_at


async def commit_latency(
    bootstrap: str, sent_at: dict[str, float], timeout_s: float
) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        "waveline.git.events",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: dict[str, float] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < len(sent_at):
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for r in records:
                        event = json.loads(r.value)
                        sha = event.get("app_sha")
                        if sha in sent_at and event["outcome"] == "committed":
                            found[sha] = (
                                datetime.fromisoformat(event["at"]).timestamp() - sent_at[sha]
                            )
    finally:
        await consumer.stop()
    values = list(found.values())
    return {
        "p50_ms": pct(values, 50) * 1000,
        "p99_ms": pct(values, 99) * 1000,
        "n": float(len(values)),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    base = os.environ.get("WAVELINE_URL", "http://127.0.0.1:8080")
    bootstrap = os.environ.get("WAVELINE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    headers = {"Authorization": f"Bearer {token()}"}
    url = f"{base}/v1/images"
    # Warm up: one set all the way to a commit, so consumer groups have settled.
    _, warm = await paced(url, headers, 1, 0.5)
    await commit_latency(bootstrap, warm, 120)
    # End to end first, while the git-writer has no backlog from the phases below.
    at100, sent = await paced(url, headers, 100, args.seconds)
    e2e = await commit_latency(bootstrap, sent, 120)
    print(f"100/s accept latency: {at100}; announce-to-commit: {e2e}", flush=True)
    at200, _ = await paced(url, headers, 200, args.seconds)
    print(f"200/s accept latency: {at200}", flush=True)
    top = await burst(url, headers, args.total, args.concurrency)
    print(f"burst {args.total} x{args.concurrency}: {top}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

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
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench import common
from bench.common import calibration_ms, image_set, mean, pct
from waveline.shared import kafka_clients


def token() -> str:
    if os.environ.get("WAVELINE_CI_TOKEN"):
        return os.environ["WAVELINE_CI_TOKEN"]
    for line in Path(".run/demo/secrets.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "WAVELINE_CI_TOKEN":
            return value
    raise SystemExit("no CI token: run `make up` or set WAVELINE_CI_TOKEN")


def document() -> tuple[str, dict[str, Any]]:
    return image_set()


async def burst(
    url: str, headers: dict[str, str], total: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    # Built before the clock starts: the load generator shares the 2 cores with the stack,
    # and making 5,000 documents while sending them took CPU from what is measured.
    bodies = iter([json.dumps(document()[1]).encode() for _ in range(total)])
    sent = {**headers, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for body in bodies:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=sent) as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - started)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

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
    return await common.paced(url, headers, rate, seconds, document)


async def commit_latency(
    bootstrap: str, sent_at: dict[str, float], timeout_s: float
) -> dict[str, float]:
    """Announce-to-commit per set, and where the time went: request sent → accepted by
    ingest (``received_at``) → git command issued by the promoter (``issued_at``) → pushed
    (the GitEvent's ``at``), with the git-writer's batch size for the set."""
    consumer = kafka_clients.consumer(
        bootstrap,
        "waveline.images",
        "waveline.git.commands",
        "waveline.git.events",
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    received: dict[str, float] = {}
    issued: dict[str, float] = {}
    found: dict[str, float] = {}
    batch_of: dict[str, float] = {}

    # The three topics are read side by side, and one may be read to its end before
    # another: the commits can all be found while announcements are still unread, so the
    # loop runs until every found set's three stamps are in (or the time is up).
    def complete() -> bool:
        return len(found) == len(sent_at) and all(s in received and s in issued for s in found)

    try:
        async with asyncio.timeout(timeout_s):
            while not complete():
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    for r in records:
                        doc = json.loads(r.value)
                        sha = doc.get("app_sha")
                        if sha not in sent_at:
                            continue
                        if tp.topic == "waveline.images" and doc.get("received_at"):
                            received[sha] = _ts(doc["received_at"])
                        elif tp.topic == "waveline.git.commands":
                            issued[sha] = _ts(doc["issued_at"])
                        elif tp.topic == "waveline.git.events" and doc["outcome"] == "committed":
                            found[sha] = _ts(doc["at"])
                            batch_of[sha] = doc.get("timings_ms", {}).get("batch_size", 0.0)
    finally:
        await consumer.stop()
    total = [found[s] - sent_at[s] for s in found]
    hops = {
        "accept": [received[s] - sent_at[s] for s in found if s in received],
        "promoter": [issued[s] - received[s] for s in found if s in issued and s in received],
        "git_writer": [found[s] - issued[s] for s in found if s in issued],
    }
    out = {
        "p50_ms": pct(total, 50) * 1000,
        "p99_ms": pct(total, 99) * 1000,
        "n": float(len(total)),
        "mean_batch": mean(list(batch_of.values())),
    }
    for hop, values in hops.items():
        out[f"{hop}_p50_ms"] = pct(values, 50) * 1000
        out[f"{hop}_p99_ms"] = pct(values, 99) * 1000
    return out


async def quiet(bootstrap: str, *, timeout_s: float, settle_s: float = 3.0) -> float:
    """Wait until no consumer group of the stack lags behind its topics (committed offset
    = end offset on every partition), then ``settle_s`` more for work that follows the last
    message (packing, offset commits). Returns the seconds waited."""
    started = time.perf_counter()
    admin = kafka_clients.admin(bootstrap)
    probe = kafka_clients.consumer(bootstrap, group_id=None)
    await admin.start()
    await probe.start()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                lag = 0
                for group, _ in await admin.list_consumer_groups():
                    if not group.startswith("waveline-"):
                        continue
                    committed = await admin.list_consumer_group_offsets(group)
                    if not committed:
                        continue
                    ends = await probe.end_offsets(list(committed))
                    lag += sum(ends[tp] - meta.offset for tp, meta in committed.items())
                if lag == 0:
                    break
                await asyncio.sleep(0.5)
    finally:
        await probe.stop()
        await admin.close()
    await asyncio.sleep(settle_s)
    return time.perf_counter() - started


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="the end-to-end phase's rate")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of warm-up")
    parser.add_argument(
        "--e2e-only", action="store_true", help="only the end-to-end phase (for iterating)"
    )
    args = parser.parse_args()
    base = os.environ.get("WAVELINE_URL", "http://127.0.0.1:8080")
    bootstrap = os.environ.get("WAVELINE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    headers = {"Authorization": f"Bearer {token()}"}
    url = f"{base}/v1/images"
    # Warm up at the end-to-end rate (the broker's JIT, connection pools, caches: at 100
    # sets/s the broker's CPU falls from ~65% of a core to ~20% only after ~50 s of load,
    # and runs after a 15 s warm-up were 15-40 ms slower at p50), then wait until every
    # consumer group of the stack has caught up, so the end-to-end phase does not share the
    # machine with a backlog.
    _, warm = await paced(url, headers, args.rate, args.warmup)
    await commit_latency(bootstrap, warm, 120)
    if not args.e2e_only:
        # The burst's code paths too (bigger batches everywhere): on a fresh stack the
        # broker's C2 compiler had spent ~10 s of CPU by the end of the first run, and a
        # first run's burst accepted 800/s where the next accepted 1,549/s.
        await burst(url, headers, args.total, args.concurrency)
    idle = await quiet(bootstrap, timeout_s=180)
    print(f"stack idle after {idle:.1f} s", flush=True)
    print(f"machine: fixed loop {calibration_ms():.0f} ms on the idle stack", flush=True)
    # End to end first, while the git-writer has no backlog from the phases below.
    at100, sent = await paced(url, headers, args.rate, args.seconds)
    e2e = await commit_latency(bootstrap, sent, 120)
    print(f"{args.rate:.0f}/s accept latency: {at100}", flush=True)
    print(f"announce-to-commit: {e2e}", flush=True)
    if args.e2e_only:
        return
    at200, _ = await paced(url, headers, 200, args.seconds)
    print(f"200/s accept latency: {at200}", flush=True)
    # The 200/s phase leaves the promoter and git-writer a backlog of 2,000 sets for a few
    # seconds; the burst measures what ingest accepts, not what it accepts beside that.
    idle = await quiet(bootstrap, timeout_s=180)
    print(f"stack idle after {idle:.1f} s", flush=True)
    top = await burst(url, headers, args.total, args.concurrency)
    print(f"burst {args.total} x{args.concurrency}: {top}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

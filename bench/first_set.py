"""The first image set after start: how long from ``waveline dev up`` returning (the stack
says it is up) to that set's commit on the remote, against the sets that follow.

Starts the stack itself, so it must be down: run with the stack's variables set (its own
ports, as for the soak in docs/benchmarks.md), e.g.
``WAVELINE_DEV_DIR=/tmp/first WAVELINE_DEV_KAFKA_PORT=19092
WAVELINE_DEV_KAFKA_CONTROLLER_PORT=19093 WAVELINE_DEV_PG_PORT=55632 WAVELINE_HTTP_PORT=18080
.venv/bin/python -m bench.first_set [--sets 5] [--down]``. The first set is announced the
moment ``up`` returns; the others one at a time, ``--gap`` seconds apart. Each line gives
announce-to-commit and its hops (bench/ingest.py ``commit_latency``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import aiohttp

from bench.common import image_set
from bench.ingest import commit_latency
from waveline.devstack.paths import StackPaths
from waveline.devstack.procs import port_open


def _token(paths: StackPaths) -> str:
    for line in (paths.run / "demo" / "secrets.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "WAVELINE_CI_TOKEN":
            return value
    raise SystemExit("no CI token in the demo secrets")


async def _announce(url: str, token: str) -> tuple[str, float]:
    sha, doc = image_set()
    sent = time.time()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=doc, headers={"Authorization": f"Bearer {token}"}) as resp,
    ):
        if resp.status != 202:
            raise SystemExit(f"announcement answered {resp.status}: {await resp.text()}")
    return sha, sent


def _line(name: str, e2e: dict[str, float]) -> str:
    hops = ", ".join(
        f"{hop} {e2e[f'{hop}_p50_ms']:.0f}" for hop in ("accept", "promoter", "git_writer")
    )
    return f"{name}: {e2e['p50_ms']:.0f} ms to the commit ({hops})"


async def measure(paths: StackPaths, url: str, sets: int, gap: float) -> None:
    token = _token(paths)
    for n in range(sets):
        if n:
            await asyncio.sleep(gap)
        sha, sent = await _announce(url, token)
        e2e = await commit_latency(paths.bootstrap, {sha: sent}, 60)
        print(_line("first set" if n == 0 else f"set {n + 1}", e2e), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=5)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--down", action="store_true", help="stop the stack at the end")
    args = parser.parse_args()
    paths = StackPaths.from_env()
    http_port = int(os.environ.get("WAVELINE_HTTP_PORT", "8080"))
    if port_open(http_port):
        raise SystemExit(f"something listens on {http_port}: bring the stack down first")
    waveline = [sys.executable, "-m", "waveline"]
    started = time.monotonic()
    subprocess.run([*waveline, "dev", "up"], check=True, stdout=subprocess.DEVNULL)
    print(f"`waveline dev up` took {time.monotonic() - started:.1f} s", flush=True)
    try:
        asyncio.run(measure(paths, f"http://127.0.0.1:{http_port}/v1/images", args.sets, args.gap))
    finally:
        if args.down:
            subprocess.run([*waveline, "dev", "down"], check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()

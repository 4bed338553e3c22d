"""The whole path as CI drives it, per config repo size: image sets announced over HTTP,
committed on ``auto`` by the stack of ``waveline dev up``, against clone-per-event on the
same repo in the same run.

For each size (``--sizes``, files in the config repo) it builds the repo as the stack's
remote (bench/common.py ``make_repo``, packed as a server keeps it), writes the demo config
(pipeline ``app``: sets land in its first wave, staging; the demo's required check
``ci/validate`` is kept and never reported, so nothing goes past staging), starts a stack of
its own and measures, through the public API only:

- **first set**: announce → commit of one set announced the moment ``up`` returns;
- a warm-up at the steady rate (``--warmup`` s; bench/ingest.py says why), then a wait until
  every consumer group has caught up;
- **steady**: ``--rate`` sets/s for ``--seconds``: accept latency and announce → commit
  (bench/ingest.py ``commit_latency``: the GitEvent's ``at``, stamped after the push, minus
  the time the request was sent) at p50 and p99;
- **burst**: ``--burst`` sets posted by ``--clients`` concurrent clients: accepted/s (202s
  over the time to post them all), and committed/s (the burst's sets committed, over the
  time from the first announcement to the last of their commits);

then ``waveline dev down``, the clone-per-event baseline on the remote (bench/git_writer.py
``peers``: shallow clone, edit, commit, push, one event at a time) and ``git fsck --full``.

``--remote http`` serves the remote over smart HTTP (``git http-backend`` behind basic auth,
bench/gitserve.py, a process of its own) as a forge would, instead of ``file://``: the
git-writer then fetches and pushes over the network protocol (the clone-per-event baseline
stays on ``file://``, which only flatters it).

Each stack lives in ``<--dev-dir>-<size>`` (wiped first) on its own ports, so it never
meets ``make up``'s: Kafka 19092/19093, PostgreSQL 55632, HTTP 18080 (health 18081-18085)
unless the ``WAVELINE_DEV_*_PORT`` / ``WAVELINE_HTTP_PORT`` variables say otherwise. Run:
``.venv/bin/python -m bench.whole_path [--sizes 2000,20000,200000] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench import gitserve
from bench.common import (
    at,
    calibration_ms,
    committed_events,
    fsck,
    image_set,
    make_repo,
    mean,
    paced,
    pct,
    timings,
)
from bench.git_writer import peers
from bench.ingest import commit_latency, quiet
from waveline.devstack import demo
from waveline.devstack.procs import port_open

PORTS = {
    "WAVELINE_DEV_KAFKA_PORT": "19092",
    "WAVELINE_DEV_KAFKA_CONTROLLER_PORT": "19093",
    "WAVELINE_DEV_PG_PORT": "55632",
    "WAVELINE_HTTP_PORT": "18080",
}
# Of the caller's WAVELINE_* variables only these reach the stack: one naming another
# broker, database or config (WAVELINE_KAFKA_BOOTSTRAP, ...) would point its services there.
KEPT = ("WAVELINE_DEV_CACHE", "WAVELINE_DEV_CPU_WEIGHTS", "WAVELINE_DEV_HEALTH_PORT", *PORTS)


def stack_env(dev_dir: Path, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVELINE_") or k in KEPT}
    for key, value in PORTS.items():
        env.setdefault(key, value)
    # Wins over the demo's generated token (devstack/stack.py service_env).
    return {**env, "WAVELINE_DEV_DIR": str(dev_dir), "WAVELINE_CI_TOKEN": token}


def dev(action: str, env: dict[str, str], log: Path) -> None:
    """``waveline dev <action>`` on the stack ``env`` names, its output appended to ``log``."""
    with log.open("a") as out:
        done = subprocess.run(
            [sys.executable, "-m", "waveline", "dev", action],
            env=env,
            check=False,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode:
        raise RuntimeError(f"`waveline dev {action}` exited {done.returncode}: see {log}")


async def burst(
    url: str, headers: dict[str, str], count: int, clients: int, services: int
) -> dict[str, Any]:
    """``count`` sets posted by ``clients`` concurrent clients, bodies made beforehand (the
    load generator shares the cores with the stack). Returns accepted/s, accept latency,
    the answers' statuses, the accepted app shas and when the first was sent (Unix)."""
    bodies = iter(
        [
            (sha, json.dumps(doc).encode())
            for sha, doc in (image_set(services) for _ in range(count))
        ]
    )
    accepted: list[str] = []
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    sent = {**headers, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def client() -> None:
            for sha, body in bodies:
                t = time.perf_counter()
                async with session.post(url, data=body, headers=sent) as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - t)
                statuses[resp.status] += 1
                if resp.status == 202:
                    accepted.append(sha)

        first = time.time()
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "accepted_per_s": len(accepted) / elapsed,
        "accept_p50_ms": pct(latencies, 50) * 1000,
        "accept_p99_ms": pct(latencies, 99) * 1000,
        "statuses": {str(k): v for k, v in statuses.items()},
        "accepted": accepted,
        "first_sent": first,
    }


async def measure(
    http_port: int, bootstrap: str, token: str, args: argparse.Namespace
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{http_port}/v1/images"
    headers = {"Authorization": f"Bearer {token}"}
    make = functools.partial(image_set, args.services)
    out: dict[str, Any] = {}
    sha, doc = make()
    sent = time.time()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=doc, headers=headers) as r,
    ):
        if r.status != 202:
            raise RuntimeError(f"the first announcement answered {r.status}: {await r.text()}")
    out["first_set"] = await commit_latency(bootstrap, {sha: sent}, 120)
    out["first_set_git_writer"] = timings((await committed_events(bootstrap, [sha], 30)).values())
    print(f"  first set: {out['first_set']['p50_ms']:.0f} ms to the commit", flush=True)
    await paced(url, headers, args.rate, args.warmup, make)
    out["idle_after_warmup_s"] = await quiet(bootstrap, timeout_s=600)
    out["machine_ms"] = calibration_ms()
    out["loadavg_1m"] = os.getloadavg()[0]
    accept, sent_at = await paced(url, headers, args.rate, args.seconds, make)
    out["steady"] = {
        "accept": accept,
        "e2e": await commit_latency(bootstrap, sent_at, 300),
        "git_writer": timings((await committed_events(bootstrap, sent_at, 60)).values()),
    }
    e2e = out["steady"]["e2e"]
    print(
        f"  {args.rate:.0f}/s: p50 {e2e['p50_ms']:.0f} ms, p99 {e2e['p99_ms']:.0f} ms", flush=True
    )
    out["idle_after_steady_s"] = await quiet(bootstrap, timeout_s=600)
    top = await burst(url, headers, args.burst, args.clients, args.services)
    accepted: list[str] = top.pop("accepted")
    committed = await committed_events(bootstrap, accepted, args.burst_timeout)
    last = max((at(e) for e in committed.values()), default=float("nan"))
    top |= {
        "git_writer": timings(committed.values()),
        "accepted": len(accepted),
        "committed": len(committed),
        "committed_per_s": len(committed) / (last - top["first_sent"]),
        "last_commit_after_s": last - top["first_sent"],
    }
    out["burst"] = top
    print(
        f"  burst: {top['accepted_per_s']:.0f} accepted/s, {top['committed_per_s']:.0f} "
        f"committed/s ({top['committed']} of {top['accepted']})",
        flush=True,
    )
    return out


def baseline(bare: Path, events: int) -> dict[str, float]:
    """Clone-per-event on ``bare``, one event per ``peers`` call to have each one's time."""
    with tempfile.TemporaryDirectory() as tmp:
        times = [peers(bare, Path(tmp), 1)["p50_ms"] for _ in range(events)]
    return {
        "p50_ms": pct(times, 50),
        "p99_ms": pct(times, 99),
        "events_per_s": 1000 / mean(times),
        "events": float(events),
    }


def one_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    dev_dir = Path(f"{args.dev_dir}-{size}")
    env = stack_env(dev_dir, secrets.token_urlsafe(24))
    http_port, kafka_port = int(env["WAVELINE_HTTP_PORT"]), int(env["WAVELINE_DEV_KAFKA_PORT"])
    if port_open(http_port) or port_open(kafka_port):
        raise SystemExit(f"ports {http_port}/{kafka_port} are taken: is a stack up there?")
    shutil.rmtree(dev_dir, ignore_errors=True)
    bare = dev_dir / "demo" / "cfg-app.git"
    started = time.perf_counter()
    make_repo(bare, size)
    subprocess.run(["git", f"--git-dir={bare}", "repack", "-adq"], check=True)
    out: dict[str, Any] = {"files": size, "repo_made_s": time.perf_counter() - started}
    server = None
    url = bare.as_uri()
    if args.remote == "http":
        env[gitserve.TOKEN_ENV] = secrets.token_urlsafe(16)
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.gitserve", str(bare.parent)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        url = server.stdout.readline().strip() + bare.name
    # Written before `up`, which keeps both (devstack/stack.py _prepare).
    config = dev_dir / "demo" / "waveline.yaml"
    demo.write_config(config, url)
    if server is not None:
        doc = json.loads(config.read_text())
        doc["repos"]["cfg-app"] |= {"token_env": gitserve.TOKEN_ENV, "allow_insecure_http": True}
        config.write_text(json.dumps(doc, indent=2) + "\n")
    out["remote"] = args.remote
    log = dev_dir / "bench-dev.log"
    try:
        started = time.perf_counter()
        dev("up", env, log)
        out["up_s"] = time.perf_counter() - started
        bootstrap = f"127.0.0.1:{kafka_port}"
        out |= asyncio.run(measure(http_port, bootstrap, env["WAVELINE_CI_TOKEN"], args))
    finally:
        dev("down", env, log)
        if server is not None:
            server.terminate()
            server.wait(10)
    out["baseline"] = baseline(bare, args.peer_events)
    ok, said = fsck(bare)
    out["fsck"] = {"ok": ok, "output": said}
    print(f"  baseline: {out['baseline']}; fsck {'ok' if ok else 'FAILED: ' + said}", flush=True)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| files | remote | accepted/s | committed/s | p50 ms @100/s | p99 ms @100/s "
        "| first set ms | clone-per-event p50 ms | clone-per-event events/s | fsck |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        e2e, top, peer = r["steady"]["e2e"], r["burst"], r["baseline"]
        lines.append(
            f"| {r['files']:,} | {r.get('remote', 'file')} | {top['accepted_per_s']:,.0f} "
            f"| {top['committed_per_s']:,.0f} "
            f"| {e2e['p50_ms']:.0f} | {e2e['p99_ms']:.0f} | {r['first_set']['p50_ms']:,.0f} "
            f"| {peer['p50_ms']:,.0f} | {peer['events_per_s']:.2f} "
            f"| {'ok' if r['fsck']['ok'] else 'FAILED'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="2000,20000,200000")
    parser.add_argument("--seconds", type=float, default=30.0, help="the steady phase")
    parser.add_argument("--rate", type=float, default=100.0, help="the steady rate, sets/s")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds at the steady rate")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the burst")
    parser.add_argument("--burst", type=int, default=3000, help="sets in the burst")
    parser.add_argument("--burst-timeout", type=float, default=600.0)
    parser.add_argument("--services", type=int, default=20, help="services in a set")
    parser.add_argument("--peer-events", type=int, default=5)
    parser.add_argument("--dev-dir", default="/tmp/wp", help="stacks live in <this>-<size>")
    parser.add_argument(
        "--remote", choices=("file", "http"), default="file", help="how the remote is served"
    )
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"{size:,} files", flush=True)
        rows.append(one_size(size, args))
        if args.json:
            args.json.write_text(
                json.dumps({"args": vars(args) | {"json": str(args.json)}, "sizes": rows}, indent=2)
                + "\n"
            )
    print()
    print(table(rows))


if __name__ == "__main__":
    main()

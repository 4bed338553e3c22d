"""Soak benchmark against a running stack (`make up`, or a private one): does anything grow?

For ``--duration`` seconds (default 30 min) it drives the stack the way production does,
through the public HTTP API only:

- announces ``--rate`` image sets per second (``POST /v1/images``, the CI token);
- plays CI: every commit on ``auto`` not yet on the watched branch gets a signed GitHub
  ``status`` webhook (``success``) for each of the repo's required checks, so the
  status-tracker fast-forwards it;
- plays Argo CD: whenever the watched branch moves (at most every ``--deploy-every`` s) every
  target of every wave reports Synced/Healthy at its head (``POST /v1/webhooks/argocd``), so
  the waves run what the head holds and sets flow on through the gates;
- approves every wave with an approval gate every ``--approve-every`` s (operator token);
- optionally prunes the tables itself every ``--prune-every`` s with ``WAVELINE_RETENTION_*``
  from its environment (the services prune their own tables with the retention *they* were
  started with; docs/benchmarks.md shows how to shorten it for a run).

Every ``--sample-every`` s (and at the start and end) it records the consumer groups' lag,
each process's memory (the pid
files in ``<WAVELINE_DEV_DIR>/pids``, plus PostgreSQL's postmaster: private memory, judged,
and the file-backed pages it maps, shown; bench/soak_measure.py) and the database size
(``pg_database_size`` and each table's total size and live rows), then prints a table and a
verdict per series: flat, or growing.

Where the stack is: ``WAVELINE_DEV_DIR`` (default ``.run``), ``WAVELINE_URL`` (default
``http://127.0.0.1:$WAVELINE_HTTP_PORT``), ``WAVELINE_DATABASE_URL`` (default the dev stack's),
``WAVELINE_DATABASE_SCHEMA``, ``WAVELINE_CONFIG`` (default ``<dev dir>/demo/waveline.yaml``),
and the tokens from the environment or ``<dev dir>/demo/secrets.env``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import asyncpg
import pygit2

from bench import common
from bench.common import pct
from bench.soak_measure import Meter, processes
from bench.soak_report import Sample, report
from waveline.devstack.paths import StackPaths
from waveline.shared.config import PipelineConfig, RepoConfig, Settings, load_config
from waveline.shared.retention import RULES, prune_once


@dataclass
class Stack:
    """Where the running stack is and how to talk to it."""

    paths: StackPaths
    url: str
    bootstrap: str
    database_url: str
    schema: str
    tokens: dict[str, str]
    pipeline_name: str
    pipeline: PipelineConfig
    repo: RepoConfig

    @classmethod
    def find(cls, pipeline_name: str | None) -> Stack:
        paths = StackPaths.from_env()
        env = dict(os.environ)
        secrets = paths.run / "demo" / "secrets.env"
        tokens = {}
        if secrets.exists():
            for line in secrets.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    tokens[key] = value
        tokens.update({k: v for k, v in env.items() if k.endswith(("_TOKEN", "_SECRET"))})
        config = load_config(Path(env.get("WAVELINE_CONFIG", paths.run / "demo" / "waveline.yaml")))
        name = pipeline_name or next(iter(config.pipelines))
        pipeline = config.pipelines[name]
        return cls(
            paths=paths,
            url=env.get("WAVELINE_URL", f"http://127.0.0.1:{paths.http_port}"),
            bootstrap=env.get("WAVELINE_KAFKA_BOOTSTRAP", paths.bootstrap),
            database_url=env.get("WAVELINE_DATABASE_URL", paths.database_url),
            schema=env.get("WAVELINE_DATABASE_SCHEMA", "waveline"),
            tokens=tokens,
            pipeline_name=name,
            pipeline=pipeline,
            repo=config.repos[pipeline.repo],
        )

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


@dataclass
class Counts:
    announced: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    accept_s: list[float] = field(default_factory=list)  # this minute's; kept bounded
    statuses: int = 0
    deploys: int = 0
    approvals: int = 0
    pruned: dict[str, int] = field(default_factory=dict)
    errors: int = 0

    def answer(self, status: int) -> None:
        if status != 202:
            self.refused[status] = self.refused.get(status, 0) + 1


def image_set(pipeline: str) -> dict[str, Any]:
    return common.image_set(pipeline=pipeline)[1]


async def announce(
    stack: Stack, session: aiohttp.ClientSession, rate: float, until: float, counts: Counts
) -> None:
    """``rate`` announcements per second, at most 256 in flight (a stalled stack shows as
    refusals and latency, not as an ever-growing task list here)."""
    url, headers = f"{stack.url}/v1/images", stack.bearer("WAVELINE_CI_TOKEN")
    room = asyncio.Semaphore(256)
    start, n = time.monotonic(), 0

    async def one(body: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            async with session.post(url, json=body, headers=headers) as resp:
                await resp.read()
                counts.answer(resp.status)
                if resp.status == 202:
                    counts.announced += 1
                    counts.accept_s.append(time.perf_counter() - started)
        except (aiohttp.ClientError, TimeoutError):
            counts.errors += 1
        finally:
            room.release()

    while time.monotonic() < until:
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await room.acquire()
        asyncio.get_running_loop().create_task(one(image_set(stack.pipeline_name)))
        n += 1
    for _ in range(256):  # the last ones in flight
        await room.acquire()


def _remote_path(stack: Stack) -> str:
    parsed = urlparse(stack.repo.url)
    if parsed.scheme != "file":
        raise SystemExit(
            f"the soak reads the config repo's branches over file://, not {stack.repo.url}"
        )
    return parsed.path


def _heads(stack: Stack, seen: str | None) -> tuple[str | None, str | None, list[str]]:
    """The watched branch's head, auto's head, and the commits on auto that neither the
    watched branch nor ``seen`` (auto's head last time) reach, oldest first: each round walks
    only what is new, however far auto runs ahead (a walk of auto's whole lead each round
    made the driver itself fall behind once the stack did)."""
    repo = pygit2.Repository(_remote_path(stack))
    watched = repo.references.get(f"refs/heads/{stack.repo.watched_branch}")
    auto = repo.references.get(f"refs/heads/{stack.repo.auto_branch}")
    head = str(watched.target) if watched is not None else None
    if auto is None:
        return head, None, []
    walker = repo.walk(auto.target, pygit2.enums.SortMode.TOPOLOGICAL)
    for stop in (watched.target if watched is not None else None, seen):
        if stop is not None and stop in repo:
            walker.hide(stop)
    new = [str(c.id) for c in walker]
    new.reverse()
    return head, str(auto.target), new


def _status(stack: Stack, sha: str, context: str, secret: bytes) -> tuple[bytes, dict[str, str]]:
    """A GitHub ``status`` delivery (success), signed as GitHub signs it, with a delivery id
    of its own as GitHub sends (ingest remembers each: a table that grows with traffic)."""
    body = json.dumps(
        {
            "sha": sha,
            "context": context,
            "state": "success",
            "branches": [{"name": stack.repo.auto_branch}],
            "repository": {"full_name": stack.repo.full_name()},
        }
    ).encode()
    signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "status",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={signature}",
        "Content-Type": "application/json",
    }
    return body, headers


async def play_ci_and_argo(
    stack: Stack, session: aiohttp.ClientSession, until: float, deploy_every: float, counts: Counts
) -> None:
    secret = stack.tokens["WAVELINE_GITHUB_WEBHOOK_SECRET"].encode()
    argo = {**stack.bearer("WAVELINE_ARGOCD_TOKEN"), "Content-Type": "application/json"}
    targets = [t for wave in stack.pipeline.waves for t in wave.targets]
    hook = f"{stack.url}/v1/webhooks/github"
    backlog: deque[str] = deque()  # commits made on auto, in order, not yet given checks
    seen: str | None = None
    deployed: str | None = None
    last_deploy = 0.0
    while time.monotonic() < until:
        head, seen, new = await asyncio.to_thread(_heads, stack, seen)
        backlog.extend(new)
        # 32 deliveries at a time, as a CI fleet would, and every commit once (a commit the
        # watched branch took meanwhile still gets its checks, as CI reports it anyway); a
        # long backlog does not hold the Argo CD reports (or the end of the run) back for
        # more than one round.
        for _ in range(16):
            chunk = [backlog.popleft() for _ in range(min(32, len(backlog)))]
            if not chunk:
                break
            sends = [
                _post(session, hook, *_status(stack, sha, context, secret), counts)
                for sha in chunk
                for context in stack.repo.required_check_names()
            ]
            await asyncio.gather(*sends)
            counts.statuses += len(sends)
            if time.monotonic() >= until:
                return
        if head and head != deployed and time.monotonic() - last_deploy >= deploy_every:
            for target in targets:
                doc = {
                    "app": target,
                    "revision": head,
                    "phase": "Succeeded",
                    "health": "Healthy",
                    "sync": "Synced",
                }
                await _post(
                    session,
                    f"{stack.url}/v1/webhooks/argocd",
                    json.dumps(doc).encode(),
                    argo,
                    counts,
                )
                counts.deploys += 1
            deployed, last_deploy = head, time.monotonic()
        await asyncio.sleep(0.2)


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], counts: Counts
) -> None:
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status >= 300:
                counts.errors += 1
    except (aiohttp.ClientError, TimeoutError):
        counts.errors += 1


async def approve(
    stack: Stack, session: aiohttp.ClientSession, until: float, every: float, counts: Counts
) -> None:
    gated = [w.name for w in stack.pipeline.waves if w.gate.approval]
    if not gated or every <= 0:
        return
    while time.monotonic() < until:
        await asyncio.sleep(every)
        for wave in gated:
            url = f"{stack.url}/v1/pipelines/{stack.pipeline_name}/waves/{wave}/approve"
            await _post(
                session,
                url,
                b"{}",
                {**stack.bearer("WAVELINE_OPERATOR_TOKEN"), "Content-Type": "application/json"},
                counts,
            )
            counts.approvals += 1


async def prune(stack: Stack, until: float, every: float, counts: Counts) -> None:
    if every <= 0:
        return
    settings = Settings(database_url=stack.database_url, database_schema=stack.schema)
    pool = await asyncpg.create_pool(
        stack.database_url, min_size=1, max_size=1, server_settings={"search_path": stack.schema}
    )
    assert pool is not None
    try:
        while time.monotonic() < until:
            await asyncio.sleep(every)
            for service in dict.fromkeys(r.service for r in RULES):
                for table, n in (await prune_once(pool, settings, service)).items():
                    counts.pruned[table] = counts.pruned.get(table, 0) + n
    finally:
        await pool.close()


async def sample(meter: Meter, started: float, counts: Counts) -> Sample:
    rss, total, tables, lag = await meter.read()
    accept, counts.accept_s = counts.accept_s, []
    return Sample(
        at_s=time.monotonic() - started,
        rss_mib=rss,
        db_mib=total,
        tables=tables,
        lag=lag,
        announced=counts.announced,
        accept_p99_ms=pct(accept, 99) * 1000 if accept else float("nan"),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds (default 30 min)")
    parser.add_argument("--rate", type=float, default=100.0, help="announcements per second")
    parser.add_argument("--sample-every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds before the baseline sample (default: a fifth of the run)",
    )
    parser.add_argument(
        "--deploy-every", type=float, default=1.0, help="Argo CD reports at most this often"
    )
    parser.add_argument("--approve-every", type=float, default=15.0, help="0: never approve")
    parser.add_argument(
        "--prune-every", type=float, default=0.0, help="prune the tables from here (0: not)"
    )
    parser.add_argument("--pipeline", help="default: the config's first")
    parser.add_argument("--json", type=Path, help="also write the samples here")
    args = parser.parse_args()
    stack = Stack.find(args.pipeline)
    warmup = args.duration / 5 if args.warmup is None else args.warmup
    counts = Counts()
    meter = await Meter.open(stack.paths, stack.database_url, stack.schema, stack.bootstrap)
    samples: list[Sample] = []
    started = time.monotonic()
    until = started + args.duration
    print(
        f"soak: {args.rate:g} sets/s for {args.duration / 60:g} min on {stack.url},"
        f" pipeline {stack.pipeline_name}, processes {sorted(processes(stack.paths))}",
        flush=True,
    )
    samples.append(await sample(meter, started, counts))
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=256)
    ) as session:
        workers = [
            asyncio.create_task(announce(stack, session, args.rate, until, counts)),
            asyncio.create_task(play_ci_and_argo(stack, session, until, args.deploy_every, counts)),
            asyncio.create_task(approve(stack, session, until, args.approve_every, counts)),
            asyncio.create_task(prune(stack, until, args.prune_every, counts)),
        ]
        try:
            while time.monotonic() + args.sample_every < until:
                await asyncio.sleep(args.sample_every)
                samples.append(await sample(meter, started, counts))
                last = samples[-1]
                rss = ", ".join(
                    f"{k} {v:.0f}" for k, v in last.rss_mib.items() if not k.endswith(" file")
                )
                print(
                    f"{last.at_s / 60:5.1f} min: {counts.announced} sets, {counts.statuses}"
                    f" statuses, {counts.deploys} deploy reports, db {last.db_mib:.0f} MiB,"
                    f" RSS {rss}",
                    flush=True,
                )
            # Requests still in flight at the end get a minute; a stuck one is not waited for.
            await asyncio.wait(workers, timeout=max(0.0, until - time.monotonic()) + 60)
            for task in workers:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in workers:
                task.cancel()
    samples.append(await sample(meter, started, counts))
    await meter.close()
    print()
    print(report(samples, warmup))
    print(
        f"\nsent: {counts.announced} sets accepted (refused {counts.refused or 'none'}),"
        f" {counts.statuses} statuses, {counts.deploys} deploy reports, {counts.approvals}"
        f" approvals; {counts.errors} errors; pruned {counts.pruned or 'nothing'}"
    )
    if args.json:
        args.json.write_text(json.dumps([s.__dict__ for s in samples], indent=1))


if __name__ == "__main__":
    asyncio.run(main())

"""Fleet benchmark: many pipelines, repos and Argo CD targets, deploy reports at a steady rate.

Builds a stack of its own (it must be down; its variables as for the soak, see
docs/benchmarks.md) with ``--repos`` config repos (default 100), ``--pipelines`` pipelines
over them (1,000), each with three waves of 4 + 3 + 3 targets (10,000 Argo CD
Applications), no required checks and no gates, so image sets walk the waves as the targets
report. It announces one image set per pipeline, then for ``--duration`` s (300) posts
``--rate`` Argo CD reports a second (1,000) through ``POST /v1/webhooks/argocd``, every target
in turn at its repo's current watched head, Synced/Healthy, and ``--sets`` new image sets a
second (5) over the pipelines; every ``--sample-every`` s (10) it records each consumer
group's lag, and the CPU (share of one core) and RSS of the status-tracker and promoter.

The plans: PostgreSQL's ``auto_explain`` logs the plan of a sample (``--plan-sample``, 2%) of
the statements the services run (set before they connect); at the end the distinct plans
are printed per statement, with any sequential scan flagged, and each table's sequential
and index scans during the run (``pg_stat_user_tables``).

At the end every remote gets ``git fsck --full``.

Run: ``.venv/bin/python -m bench.fleet [--duration 300] [--rate 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pygit2

from bench.common import fsck, image_set
from bench.soak_measure import Meter, processes, rss_mib
from waveline.devstack import postgres
from waveline.devstack.paths import StackPaths
from waveline.devstack.procs import port_open

WAVES = (("staging", 4), ("internal", 3), ("production", 3))
SERVICES = ("status-tracker", "promoter")


def _pipeline(n: int) -> str:
    return f"p{n:04d}"


def build(paths: StackPaths, repos: int, pipelines: int) -> dict[str, list[str]]:
    """The remotes and the config; returns each repo's pipelines."""
    by_repo: dict[str, list[str]] = {f"r{r:03d}": [] for r in range(repos)}
    for n in range(pipelines):
        by_repo[f"r{n % repos:03d}"].append(_pipeline(n))
    remotes = paths.run / "fleet"
    config: dict[str, Any] = {"repos": {}, "pipelines": {}}
    for repo, names in by_repo.items():
        bare = remotes / f"{repo}.git"
        git = pygit2.init_repository(str(bare), bare=True, initial_head="master")
        empty = git.create_blob(b"{}\n")
        apps = git.TreeBuilder()
        for name in names:
            pipeline_tree = git.TreeBuilder()
            for wave, _ in WAVES:
                files = git.TreeBuilder()
                for file in ("tags.json", "digests.json"):
                    files.insert(file, empty, pygit2.enums.FileMode.BLOB)
                pipeline_tree.insert(wave, files.write(), pygit2.enums.FileMode.TREE)
            apps.insert(name, pipeline_tree.write(), pygit2.enums.FileMode.TREE)
        root = git.TreeBuilder()
        root.insert("apps", apps.write(), pygit2.enums.FileMode.TREE)
        sig = pygit2.Signature("bench", "bench@example.com")
        git.create_commit("refs/heads/master", sig, sig, "fleet", root.write(), [])
        config["repos"][repo] = {
            "url": bare.as_uri(),
            "watched_branch": "master",
            "auto_branch": "auto",
            "author": {"name": "waveline", "email": "waveline@example.com"},
        }
        for name in names:
            config["pipelines"][name] = {
                "repo": repo,
                "layout": {"kind": "images-json", "path": f"apps/{name}/{{wave}}"},
                "waves": [
                    {"name": wave, "targets": [f"{name}-{wave}-{i}" for i in range(count)]}
                    for wave, count in WAVES
                ],
            }
    target = paths.run / "demo" / "waveline.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(config, indent=1) + "\n")  # JSON is YAML
    return by_repo


async def enable_plans(paths: StackPaths, sample: float) -> None:
    """Have every session opened from now on log a sample of its plans (auto_explain)."""
    conn = await asyncpg.connect(paths.database_url)
    try:
        await conn.execute("LOAD 'auto_explain'")  # so ALTER SYSTEM knows its settings
        for setting, value in (
            ("session_preload_libraries", "auto_explain"),
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.sample_rate", str(sample)),
            ("auto_explain.log_format", "text"),
        ):
            await conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


def _tokens(paths: StackPaths) -> dict[str, str]:
    tokens = {}
    for line in (paths.run / "demo" / "secrets.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            tokens[key] = value
    return tokens


class Fleet:
    def __init__(self, paths: StackPaths, by_repo: dict[str, list[str]], http_port: int) -> None:
        self.paths = paths
        self.url = f"http://127.0.0.1:{http_port}"
        self.tokens = _tokens(paths)
        self.repo_of = {p: repo for repo, names in by_repo.items() for p in names}
        self.targets = [
            (f"{p}-{wave}-{i}", self.repo_of[p])
            for p in sorted(self.repo_of)
            for wave, count in WAVES
            for i in range(count)
        ]
        self.heads: dict[str, str] = {}
        self.sent = Counter[str]()

    def refresh_heads(self) -> None:
        for repo in set(self.repo_of.values()):
            git = pygit2.Repository(str(self.paths.run / "fleet" / f"{repo}.git"))
            ref = git.references.get("refs/heads/master")
            if ref is not None:
                self.heads[repo] = str(ref.target)

    async def post(self, session: aiohttp.ClientSession, path: str, doc: Any, token: str) -> None:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"}
        try:
            async with session.post(f"{self.url}{path}", json=doc, headers=headers) as resp:
                await resp.read()
                self.sent[f"{path} {resp.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.sent[f"{path} {type(exc).__name__}"] += 1

    async def paced(self, rate: float, seconds: float, make: Any) -> None:
        """``make(n)`` → (path, doc, token), ``rate`` a second, 64 in flight at most."""
        limit = asyncio.Semaphore(64)
        async with aiohttp.ClientSession() as session:
            start, n, tasks = time.monotonic(), 0, set()
            while (now := time.monotonic()) - start < seconds:
                due = int((now - start) * rate) + 1
                # When the stack answers slower than the rate, the backlog is dropped at the
                # end rather than sent after it (a 300 s run once sent for 449 s).
                while n < due and time.monotonic() - start < seconds:
                    path, doc, token = make(n)
                    await limit.acquire()
                    task = asyncio.create_task(self.post(session, path, doc, token))
                    task.add_done_callback(lambda _: limit.release())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    n += 1
                await asyncio.sleep(0.005)
            await asyncio.gather(*tasks)

    def report(self, n: int) -> tuple[str, dict[str, Any], str]:
        target, repo = self.targets[n % len(self.targets)]
        doc = {
            "app": target,
            "revision": self.heads.get(repo, ""),
            "phase": "Succeeded",
            "health": "Healthy",
            "sync": "Synced",
        }
        return "/v1/webhooks/argocd", doc, "WAVELINE_ARGOCD_TOKEN"

    def announcement(self, n: int) -> tuple[str, dict[str, Any], str]:
        pipelines = sorted(self.repo_of)
        return (
            "/v1/images",
            image_set(pipeline=pipelines[n % len(pipelines)])[1],
            "WAVELINE_CI_TOKEN",
        )


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample_loop(
    fleet: Fleet, meter: Meter, started: float, until: float, every: float
) -> None:
    pids = {name: pid for name, pid in processes(fleet.paths).items() if name in SERVICES}
    last = {name: _cpu_s(pid) for name, pid in pids.items()}
    last_t = time.monotonic()
    while time.monotonic() < until:
        await asyncio.sleep(every)
        fleet.refresh_heads()
        _, _, _, lag = await meter.read()
        now = time.monotonic()
        cpu = {name: _cpu_s(pid) for name, pid in pids.items()}
        rss = rss_mib(pids)
        parts = [
            f"{name} cpu {(cpu[name] - last[name]) / (now - last_t):.0%} rss {rss[name]:.0f}"
            for name in pids
        ]
        lags = ", ".join(f"{k} {v}" for k, v in sorted(lag.items()))
        sent = sum(v for k, v in fleet.sent.items() if "argocd 202" in k)
        print(
            f"{now - started:4.0f} s | reports {sent} | lag {lags} | {'; '.join(parts)}", flush=True
        )
        last, last_t = cpu, now


async def scans(paths: StackPaths) -> dict[str, tuple[int, int]]:
    conn = await asyncpg.connect(paths.database_url)
    try:
        rows = await conn.fetch(
            "SELECT relname, seq_scan, coalesce(idx_scan, 0) AS idx_scan"
            " FROM pg_stat_user_tables WHERE schemaname = 'waveline'"
        )
    finally:
        await conn.close()
    return {r["relname"]: (r["seq_scan"], r["idx_scan"]) for r in rows}


def plans(log: Path) -> dict[str, tuple[int, str]]:
    """Each sampled statement (its text) → how often sampled and its first plan."""
    found: dict[str, tuple[int, str]] = {}
    text = log.read_text(errors="replace")
    for block in re.split(r"\n(?=\S.*LOG:  duration: )", text):
        match = re.search(r"Query Text: (.*?)\n(.*)", block, re.S)
        if not match:
            continue
        query = " ".join(match.group(1).split())[:160]
        plan = "\n".join(
            line.strip() for line in match.group(2).splitlines() if line.startswith(("\t", " "))
        )
        count, first = found.get(query, (0, plan))
        found[query] = (count + 1, first)
    return found


async def run(args: argparse.Namespace, paths: StackPaths, by_repo: dict[str, list[str]]) -> None:
    fleet = Fleet(paths, by_repo, int(os.environ.get("WAVELINE_HTTP_PORT", "8080")))
    meter = await Meter.open(paths, paths.database_url, "waveline", paths.bootstrap)
    try:
        fleet.refresh_heads()
        pipelines = len(fleet.repo_of)
        await fleet.paced(200, pipelines / 200, fleet.announcement)
        print(f"announced one set per pipeline: {dict(fleet.sent)}", flush=True)
        fleet.sent.clear()
        before = await scans(paths)
        started = time.monotonic()
        until = started + args.duration
        await asyncio.gather(
            sample_loop(fleet, meter, started, until, args.sample_every),
            fleet.paced(args.rate, args.duration, fleet.report),
            fleet.paced(args.sets, args.duration, fleet.announcement),
        )
        took = time.monotonic() - started
        after = await scans(paths)
    finally:
        await meter.close()
    sent = sum(v for k, v in fleet.sent.items() if "argocd 202" in k)
    print(f"\n{sent} reports in {took:.0f} s ({sent / took:.0f}/s); answers {dict(fleet.sent)}")
    print("\ntable: sequential scans, index scans during the run")
    for table in sorted(after):
        seq = after[table][0] - before.get(table, (0, 0))[0]
        idx = after[table][1] - before.get(table, (0, 0))[1]
        if seq or idx:
            print(f"  {table}: {seq} seq, {idx} idx")
    print("\nsampled plans (count, statement, plan):")
    for query, (count, plan) in sorted(
        plans(paths.logs / "postgres.log").items(), key=lambda kv: -kv[1][0]
    ):
        flag = "  <-- Seq Scan" if "Seq Scan" in plan else ""
        print(f"\n[{count}] {query}{flag}\n    " + plan.replace("\n", "\n    "))
    checked = {bare.name: fsck(bare) for bare in sorted((paths.run / "fleet").glob("*.git"))}
    failed = {name: said for name, (ok, said) in checked.items() if not ok}
    print(f"\ngit fsck --full: {len(checked) - len(failed)} of {len(checked)} remotes ok")
    for name, said in failed.items():
        print(f"  {name}: {said}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=100)
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="Argo CD reports a second")
    parser.add_argument("--sets", type=float, default=5.0, help="image sets a second")
    parser.add_argument("--sample-every", type=float, default=10.0)
    parser.add_argument("--plan-sample", type=float, default=0.02)
    parser.add_argument("--down", action="store_true", help="stop the stack at the end")
    args = parser.parse_args()
    paths = StackPaths.from_env()
    if port_open(int(os.environ.get("WAVELINE_HTTP_PORT", "8080"))):
        raise SystemExit("the stack runs: bring it down first (this benchmark builds its own)")
    by_repo = build(paths, args.repos, args.pipelines)
    postgres.start(paths)
    asyncio.run(enable_plans(paths, args.plan_sample))
    waveline = [sys.executable, "-m", "waveline"]
    try:
        subprocess.run([*waveline, "dev", "up"], check=True, stdout=subprocess.DEVNULL)
        asyncio.run(run(args, paths, by_repo))
    finally:
        if args.down:
            subprocess.run([*waveline, "dev", "down"], check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()

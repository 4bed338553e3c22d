"""What the soak benchmark measures: each process's memory, from /proc, and the database's
size (bench/soak.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from waveline.devstack.paths import StackPaths
from waveline.shared import kafka_clients


def _proc_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _parents() -> dict[int, int]:
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            found[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return found


def processes(paths: StackPaths) -> dict[str, int]:
    """Name → pid of every live process the stack's pid files name, and the postmaster."""
    pids = {}
    for pidfile in sorted(paths.pids.glob("*.pid")):
        try:
            # "pid [start ticks]" (waveline/devstack/procs.py)
            pids[pidfile.stem] = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    lock = paths.run / "pg" / "data" / "postmaster.pid"
    if lock.exists():
        pids["postgres"] = int(lock.read_text().split("\n", 1)[0])
    return {name: pid for name, pid in pids.items() if Path(f"/proc/{pid}").exists()}


# Processes whose descendants' private memory is also shown on its own, as
# ``"<name> children"``: the git-writer's repo and packing processes, so a growing total says
# which side grows (the service's Kafka and PostgreSQL side, or libgit2 and the repo state).
SPLIT = ("git-writer",)


def rss_mib(pids: dict[str, int]) -> dict[str, float]:
    """Each process's private memory (its RssAnon and RssShmem, plus its descendants' RssAnon:
    the git-writer's repo and packing processes, PostgreSQL's backends), in MiB, under its
    name; and the file-backed pages they map (pack files, libraries: page cache the kernel
    can take back) under ``"<name> file"``, reported but not judged."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, pid in pids.items():
        own_kb = _proc_kb(pid, "RssAnon") + _proc_kb(pid, "RssShmem")
        kids_kb, file_kb = 0, _proc_kb(pid, "RssFile")
        todo = list(children.get(pid, []))
        while todo:
            child = todo.pop()
            kids_kb += _proc_kb(child, "RssAnon")
            file_kb += _proc_kb(child, "RssFile")
            todo.extend(children.get(child, []))
        out[name] = (own_kb + kids_kb) / 1024
        if name in SPLIT:
            out[f"{name} children"] = kids_kb / 1024
        if name == "postgres" and children.get(pid):
            # Its total grows with the backends the pools open (up to their max_size);
            # per backend, it says whether each one grows.
            out["postgres per backend"] = kids_kb / 1024 / len(children[pid])
        out[f"{name} file"] = file_kb / 1024
    return out


async def database(
    conn: asyncpg.Connection, schema: str
) -> tuple[float, dict[str, tuple[float, int]]]:
    """``pg_database_size`` in MiB, and each table of ``schema``: total size (MiB, with its
    indexes and TOAST) and live rows."""
    total = await conn.fetchval("SELECT pg_database_size(current_database())")
    rows = await conn.fetch(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes,"
        " coalesce(s.n_live_tup, 0) AS live"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
        " WHERE n.nspname = $1 AND c.relkind = 'r'",
        schema,
    )
    return total / 2**20, {r["relname"]: (r["bytes"] / 2**20, int(r["live"])) for r in rows}


async def consumer_lag(admin: AIOKafkaAdminClient, probe: AIOKafkaConsumer) -> dict[str, int]:
    """Messages not yet handled, per service (its consumer groups' committed offsets
    against the topics' ends): a stack that cannot keep up shows here, not in RSS."""
    lag: dict[str, int] = {}
    for group, _ in await admin.list_consumer_groups():
        service = group.split(".", 1)[0].removeprefix("waveline-")
        committed = await admin.list_consumer_group_offsets(group)
        if not committed or not group.startswith("waveline-"):
            continue
        ends = await probe.end_offsets(list(committed))
        behind = sum(max(0, ends[tp] - meta.offset) for tp, meta in committed.items())
        lag[service] = lag.get(service, 0) + behind
    return lag


@dataclass
class Meter:
    """Connections to read the stack's numbers from (``open``, then ``close``)."""

    paths: StackPaths
    schema: str
    conn: asyncpg.Connection
    admin: AIOKafkaAdminClient
    probe: AIOKafkaConsumer

    @classmethod
    async def open(cls, paths: StackPaths, database_url: str, schema: str, bootstrap: str) -> Meter:
        conn = await asyncpg.connect(database_url)
        admin = kafka_clients.admin(bootstrap)
        probe = kafka_clients.consumer(bootstrap, group_id=None)
        await admin.start()
        await probe.start()
        return cls(paths, schema, conn, admin, probe)

    async def close(self) -> None:
        await self.probe.stop()
        await self.admin.close()
        await self.conn.close()

    async def read(
        self,
    ) -> tuple[dict[str, float], float, dict[str, tuple[float, int]], dict[str, int]]:
        """RSS per process, database MiB, tables, consumer lag per service."""
        total, tables = await database(self.conn, self.schema)
        lag = await consumer_lag(self.admin, self.probe)
        return rss_mib(processes(self.paths)), total, tables, lag

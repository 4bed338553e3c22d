"""``waveline dev up|down|status`` (and ``make up`` / ``make down``).

``up`` is safe to repeat: whatever already runs is kept, whatever died is restarted.
Environment variables set by the user win over the demo defaults: ``WAVELINE_CONFIG``,
``WAVELINE_HTTP_PORT`` and the secret variables README.md lists.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from waveline.devstack import demo, kafka, postgres, procs
from waveline.devstack.paths import CONSUMERS, StackPaths

SERVICES = ("ingest", "git-writer", "status-tracker", "promoter", "notifier", "reconciler")
# Not a Waveline service: stands in for a git server's own housekeeping (see remote_gc).
REMOTE_GC = "demo-remote-gc"

# CPU weights (nice of each process's session, shared/cpu.py) for one host shared by the
# whole stack, as CPU requests would be on a cluster. Unweighted, every session gets an equal
# share of a contended CPU, and a burst of announcements left ingest ~0.35 of a core beside
# the consumers working through the sets it had accepted: 1,412-1,583 accepted/s against
# 1,991-2,516 with these weights, in the same hour (docs/benchmarks.md). The front door and
# the broker keep the default; the promoter and git-writer, on the announce-to-commit path,
# yield a little; what is off that path yields most. WAVELINE_DEV_CPU_WEIGHTS=off runs all
# at the default.
NICE = {
    "ingest": 0,
    "promoter": 3,
    "git-writer": 3,
    "status-tracker": 10,
    "notifier": 10,
    "reconciler": 10,
    REMOTE_GC: 10,
}


def service_env(paths: StackPaths) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in {**demo.demo_secrets(paths), **demo.DEMO_ENV}.items():
        env.setdefault(key, value)
    env.setdefault("WAVELINE_CONFIG", str(paths.run / "demo" / "waveline.yaml"))
    env.setdefault("WAVELINE_KAFKA_BOOTSTRAP", paths.bootstrap)
    env.setdefault("WAVELINE_DATABASE_URL", paths.database_url)
    env.setdefault("WAVELINE_HTTP_PORT", str(paths.http_port))
    env.setdefault("WAVELINE_DATA_DIR", str(paths.run / "data"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def demo_remote(paths: StackPaths) -> Path:
    return paths.run / "demo" / "cfg-app.git"


def _prepare(paths: StackPaths, env: dict[str, str]) -> None:
    from waveline.cli.topics import ensure_and_compare
    from waveline.shared.config import Settings
    from waveline.shared.db import migrate

    bare = demo_remote(paths)
    if demo.seed_repo(bare):
        print(f"seeded demo config repo {bare}")
    default_config = paths.run / "demo" / "waveline.yaml"
    if env["WAVELINE_CONFIG"] == str(default_config) and not default_config.exists():
        demo.write_config(default_config, bare.as_uri())
    settings = Settings(
        kafka_bootstrap=env["WAVELINE_KAFKA_BOOTSTRAP"],
        database_url=env["WAVELINE_DATABASE_URL"],
        topic_prefix=env.get("WAVELINE_TOPIC_PREFIX", ""),
        database_schema=env.get("WAVELINE_DATABASE_SCHEMA", "waveline"),
    )

    async def setup() -> None:
        # Replication as WAVELINE_TOPIC_* say (1/1 by default, all one broker can hold);
        # topics that differ are reported, not changed.
        for difference in await ensure_and_compare(settings):
            print(f"topics: {difference}")
        await migrate(settings)

    asyncio.run(setup())


def _free_port(paths: StackPaths, port: int) -> None:
    """Stop our services holding ``port`` in a connection to itself (procs.self_connected:
    one retrying the broker or the database while it was down) and wait until the port is
    free, so the server can listen there again; the services are started again below.
    Anyone else's such connection is an error that says so."""
    for holder in procs.self_connected(port):
        owners = [
            name
            for name in (*SERVICES, REMOTE_GC)
            if (pid := procs.pid_of(paths.pids / f"{name}.pid")) is not None
            and pid in (holder, procs.session_of(holder))
        ]
        if not owners:
            raise RuntimeError(
                f"port {port} is held by pid {holder} in a TCP connection to itself (a client "
                "that kept reconnecting to it): stop that process, or move the port"
            )
        for name in owners:
            procs.stop(paths.pids / f"{name}.pid")
            print(f"{name}: stopped, it held port {port} in a TCP connection to itself")
    # Closed, such a connection still holds the port for a minute (TIME_WAIT).
    procs.wait_self_connection_gone(port)


def up(paths: StackPaths) -> int:
    started = time.monotonic()
    weights = os.environ.get("WAVELINE_DEV_CPU_WEIGHTS", "on")
    if weights not in ("on", "off"):
        print(f"WAVELINE_DEV_CPU_WEIGHTS must be on or off, not {weights!r}", file=sys.stderr)
        return 2
    paths.run.mkdir(parents=True, exist_ok=True)
    env = service_env(paths)
    for port in (paths.kafka_port, paths.pg_port):
        _free_port(paths, port)
    print("kafka:", "started" if kafka.start(paths) else "running", paths.bootstrap)
    print("postgres:", "started" if postgres.start(paths) else "running", f"port {paths.pg_port}")
    _prepare(paths, env)
    commands = {name: [sys.executable, "-m", "waveline", "run", name] for name in SERVICES}
    commands[REMOTE_GC] = [
        sys.executable,
        "-m",
        "waveline.devstack.remote_gc",
        str(demo_remote(paths)),
    ]
    started_now = []
    for name, argv in commands.items():
        pidfile = paths.pids / f"{name}.pid"
        if procs.pid_of(pidfile) is not None:
            print(f"{name}: running")
            continue
        started_now.append(name)
        own = dict(env)
        if name in CONSUMERS:
            own["WAVELINE_HEALTH_PORT"] = str(paths.health_port_of(name))
        procs.start(
            argv,
            pidfile=pidfile,
            logfile=paths.logs / f"{name}.log",
            env=own,
            cwd=paths.root,
            nice=NICE[name] if weights == "on" else 0,
        )
        print(f"{name}: started")
    procs.wait_port(int(env["WAVELINE_HTTP_PORT"]), 60, "ingest", paths.logs / "ingest.log")
    # Up means consuming: a service still connecting when `up` returned would otherwise
    # die with the first broker outage after it, while `up` had called the stack up. (Those
    # already running were waited for by the `up` that started them.)
    deadline = time.monotonic() + 90
    failed = {
        name: why
        for name in CONSUMERS
        if name in started_now
        and (
            why := procs.wait_started(
                paths.health_port_of(name), paths.pids / f"{name}.pid", deadline
            )
        )
    }
    time.sleep(0.5)
    failed |= {n: "exited" for n in SERVICES if procs.pid_of(paths.pids / f"{n}.pid") is None}
    if failed:
        print(f"services that did not start: {failed}; see {paths.logs}", file=sys.stderr)
        return 1
    print(
        f"stack up in {time.monotonic() - started:.1f}s; ingest on "
        f"http://127.0.0.1:{env['WAVELINE_HTTP_PORT']}; logs in {paths.logs}"
    )
    print(f"demo tokens: {paths.run / 'demo' / 'secrets.env'}")
    return 0


def down(paths: StackPaths) -> int:
    for name in (REMOTE_GC, *SERVICES):
        if procs.stop(paths.pids / f"{name}.pid"):
            print(f"{name}: stopped")
    if kafka.stop(paths):
        print("kafka: stopped")
    if postgres.stop(paths):
        print("postgres: stopped")
    return 0


def status(paths: StackPaths) -> int:
    rows = [("kafka", procs.pid_of(paths.pids / "kafka.pid") is not None)]
    rows.append(("postgres", postgres.running(paths)))
    rows += [(n, procs.pid_of(paths.pids / f"{n}.pid") is not None) for n in SERVICES]
    for name, alive in rows:
        print(f"{name:15} {'running' if alive else 'stopped'}")
    return 0 if all(alive for _, alive in rows) else 3


def main(action: str) -> int:
    paths = StackPaths.from_env()
    return {"up": up, "down": down, "status": status}[action](paths)

"""`waveline dev up/down` on a fresh directory: a real Kafka, PostgreSQL and the five
services; an announcement lands on `auto` of the demo repo; `dev up` after a process died
(a service, the broker, PostgreSQL, whatever its lock file names then) brings the stack
back; `down` leaves no process behind. One private stack for the module, with its own
directory and ports, so it never touches a developer's running stack or the shared one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import APP_SHA, branch_log, children_of, cmdline, image_set
from waveline.devstack.paths import CONSUMERS, StackPaths
from waveline.devstack.pidlock import pidfile_text
from waveline.devstack.procs import pid_of, port_open
from waveline.devstack.stack import NICE, SERVICES
from waveline.shared import cpu

pytestmark = pytest.mark.e2e

# Each recovery (the `dev up` and an announcement through the stack) is bounded by this.
RECOVERY_S = 90.0
# The broker outage the log test holds, and the most lines a service may log during it.
OUTAGE_S = 15.0
MAX_OUTAGE_LINES = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    for _ in range(50):
        first = free_port()
        if first + count > 65535:
            continue
        try:
            with contextlib.ExitStack() as held:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise AssertionError(f"no {count} consecutive free ports")


def dev(action: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waveline", "dev", action],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except FileNotFoundError:
        return False


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} survived SIGKILL"
        time.sleep(0.05)


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    run: Path

    @property
    def pids(self) -> Path:
        return self.run / "pids"

    @property
    def postmaster_pid(self) -> Path:
        return self.run / "pg" / "data" / "postmaster.pid"

    def postmaster(self) -> int:
        return int(self.postmaster_pid.read_text().splitlines()[0])

    def up(self, timeout: float = RECOVERY_S) -> str:
        result = dev("up", self.env, timeout)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def announce(self, app_sha: str | None = None, timeout_s: float = 45.0) -> None:
        """POST an image set to ingest and wait for its commit on `auto`."""
        sha = app_sha or uuid.uuid4().hex + uuid.uuid4().hex[:8]
        tokens = dict(
            line.split("=", 1)
            for line in (self.run / "demo" / "secrets.env").read_text().splitlines()
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.env['WAVELINE_HTTP_PORT']}/v1/images",
            data=json.dumps(image_set(sha)).encode(),
            headers={
                "Authorization": f"Bearer {tokens['WAVELINE_CI_TOKEN']}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 (loopback)
            assert resp.status == 202
        bare = str(self.run / "demo" / "cfg-app.git")
        trailer = f"Autocommit-App-SHA: {sha}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(trailer in c.message for c in branch_log(bare, "auto")):
                return
            time.sleep(0.2)
        logs = (self.run / "logs" / "git-writer.log").read_text()[-3000:]
        raise AssertionError(f"{sha} not committed on auto within {timeout_s}s:\n{logs}")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Not under pytest's tmp_path: a concurrent pytest run on the machine prunes older
    # base directories, which would pull the data directory from under a running server.
    home = Path(tempfile.mkdtemp(prefix="waveline-devstack-"))
    run = home / "run"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WAVELINE_") and k != "PYTEST_CURRENT_TEST"
    }
    env |= {
        "WAVELINE_DEV_DIR": str(run),
        "WAVELINE_DEV_CACHE": str(StackPaths.from_env().cache),
        "WAVELINE_DEV_KAFKA_PORT": str(free_port()),
        "WAVELINE_DEV_KAFKA_CONTROLLER_PORT": str(free_port()),
        "WAVELINE_DEV_PG_PORT": str(free_port()),
        "WAVELINE_HTTP_PORT": str(free_port()),
        "WAVELINE_DEV_HEALTH_PORT": str(free_port_run(len(CONSUMERS))),
    }
    stack = Stack(env, run)
    try:
        # The first `up` may fetch the broker's jars and install PostgreSQL.
        stack.up(timeout=400)
        yield stack
    finally:
        dev("down", env)
        shutil.rmtree(home, ignore_errors=True)


def write_lock_pid(stack: Stack, pid: int) -> None:
    """Make postmaster.pid name ``pid``, its other lines as the dead postmaster left them."""
    lines = stack.postmaster_pid.read_text().split("\n")
    lines[0] = str(pid)
    stack.postmaster_pid.write_text("\n".join(lines))


def cluster_owner(stack: Stack) -> int | None:
    """The uid PostgreSQL runs as, when it is not ours (as root: the postgres user). Its
    own check treats a pid of another user as dead; one of its own user as a live server."""
    owner = (stack.run / "pg" / "data").stat().st_uid
    return owner if owner != os.geteuid() else None


@pytest.fixture
def zombie_of_the_cluster_owner(stack: Stack) -> Iterator[int]:
    """A real zombie, of PostgreSQL's user: the shell forks a short sleep, then becomes a
    long one, which never reaps it. (Once the test ends it is init's to reap.)"""
    parent = subprocess.Popen(
        ["sh", "-c", "sleep 0.5 & echo $!; exec sleep 120"],
        stdout=subprocess.PIPE,
        text=True,
        user=cluster_owner(stack),
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "no zombie"
        time.sleep(0.02)
    yield pid
    parent.kill()
    parent.wait()


@pytest.fixture
def other_program_of_the_cluster_owner(stack: Stack) -> Iterator[int]:
    """A live process of PostgreSQL's user that is not a postgres: a reused pid."""
    proc = subprocess.Popen(["sleep", "120"], user=cluster_owner(stack))
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.timeout(900)
def test_dev_up_announce(stack: Stack) -> None:
    stack.announce(APP_SHA)
    log = branch_log(str(stack.run / "demo" / "cfg-app.git"), "auto")
    assert f"Autocommit-App-SHA: {APP_SHA}" in log[0].message
    assert "Autocommit-Event-Id: " in log[0].message

    # CPU weights: each service's session as the stack's table says, and the
    # git-writer's repo process (a session of its own) as the git-writer.
    for name, nice in NICE.items():
        pid = pid_of(stack.pids / f"{name}.pid")
        assert pid is not None, name
        assert cpu.nice_of(pid) == nice, name
    writer = pid_of(stack.pids / "git-writer.pid")
    assert writer is not None
    repo_processes = [p for p in children_of(writer) if b"git_writer.host" in cmdline(p)]
    assert repo_processes, "the git-writer's repo process is not running"
    assert {cpu.nice_of(p) for p in repo_processes} == {NICE["git-writer"]}

    # `up` returned once every consumer said it consumes, on its own health port.
    base = int(stack.env["WAVELINE_DEV_HEALTH_PORT"])
    for offset, name in enumerate(CONSUMERS):
        url = f"http://127.0.0.1:{base + offset}/readyz"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["started"] is True and body["ready"] is True, (name, body)


def test_dev_up_again_keeps_what_runs(stack: Stack) -> None:
    kafka_pid = pid_of(stack.pids / "kafka.pid")
    postmaster = stack.postmaster()
    lock = stack.postmaster_pid.read_text()
    out = stack.up()
    assert "kafka: running" in out and "postgres: running" in out
    assert "removed stale" not in out
    assert pid_of(stack.pids / "kafka.pid") == kafka_pid
    assert stack.postmaster() == postmaster and alive(postmaster)
    assert stack.postmaster_pid.read_text() == lock


def test_dev_up_restarts_killed_services(stack: Stack) -> None:
    kafka_pid = pid_of(stack.pids / "kafka.pid")
    killed = {}
    for name in ("promoter", "git-writer"):
        pid = pid_of(stack.pids / f"{name}.pid")
        assert pid is not None
        sigkill(pid)
        killed[name] = pid
    assert dev("status", stack.env).returncode != 0
    started = time.monotonic()
    out = stack.up()
    assert "promoter: started" in out and "git-writer: started" in out, out
    assert "ingest: running" in out
    assert pid_of(stack.pids / "kafka.pid") == kafka_pid
    assert dev("status", stack.env).returncode == 0
    stack.announce()
    assert time.monotonic() - started < RECOVERY_S


def test_dev_up_recovers_postgres_whose_lock_names_a_dead_pid(stack: Stack) -> None:
    postmaster = stack.postmaster()
    sigkill(postmaster)
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_lock_pid(stack, gone.pid)
    started = time.monotonic()
    out = stack.up()
    assert f"removed stale postmaster.pid: pid {gone.pid} is not running" in out, out
    assert "postgres: started" in out
    assert alive(stack.postmaster()) and stack.postmaster() != postmaster
    stack.announce()
    assert time.monotonic() - started < RECOVERY_S


def test_dev_up_recovers_postgres_whose_lock_names_a_zombie(
    stack: Stack, zombie_of_the_cluster_owner: int
) -> None:
    sigkill(stack.postmaster())
    write_lock_pid(stack, zombie_of_the_cluster_owner)
    started = time.monotonic()
    out = stack.up()
    assert f"pid {zombie_of_the_cluster_owner} is a zombie" in out, out
    assert "postgres: started" in out
    assert alive(stack.postmaster())
    stack.announce()
    assert time.monotonic() - started < RECOVERY_S


def test_dev_up_recovers_postgres_whose_lock_names_another_program(
    stack: Stack, other_program_of_the_cluster_owner: int
) -> None:
    sigkill(stack.postmaster())
    write_lock_pid(stack, other_program_of_the_cluster_owner)
    started = time.monotonic()
    out = stack.up()
    assert f"pid {other_program_of_the_cluster_owner} is now 'sleep'" in out, out
    assert alive(other_program_of_the_cluster_owner), "dev up must not touch that process"
    assert alive(stack.postmaster())
    stack.announce()
    assert time.monotonic() - started < RECOVERY_S


def log_lines(stack: Stack) -> dict[str, int]:
    return {
        name: len((stack.run / "logs" / f"{name}.log").read_bytes().splitlines())
        for name in SERVICES
    }


# A stand-in for a service that kept reconnecting to the database while it was down and was
# given the database's own port for its end: it holds a connection to itself on that port.
HOLDS_A_CONNECTION_TO_ITSELF = """
import socket, sys, time
port = int(sys.argv[1])
s = socket.socket()
# The server's side of the connections it had lingers in TIME_WAIT on the port, so bind with
# SO_REUSEADDR; then hold it as a client does, without (a listener may share it otherwise).
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
s.connect(("127.0.0.1", port))
print("held", flush=True)
time.sleep(120)
"""


def test_dev_up_frees_a_port_a_service_holds_in_a_connection_to_itself(stack: Stack) -> None:
    port = int(stack.env["WAVELINE_DEV_PG_PORT"])
    sigkill(stack.postmaster())
    notifier = pid_of(stack.pids / "notifier.pid")
    assert notifier is not None
    sigkill(notifier)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDS_A_CONNECTION_TO_ITSELF, str(port)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # as dev up starts a service
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        (stack.pids / "notifier.pid").write_text(pidfile_text(holder.pid))
        started = time.monotonic()
        out = stack.up()
        assert f"notifier: stopped, it held port {port} in a TCP connection to itself" in out
        # Closed, the connection keeps the port for TIME_WAIT's minute: up waits it out.
        assert f"port {port}: waiting for its connection to itself to time out" in out
        assert "postgres: started" in out and "notifier: started" in out, out
        assert holder.wait(timeout=5) is not None
        stack.announce()
        assert time.monotonic() - started < RECOVERY_S
    finally:
        holder.kill()
        holder.wait()


def test_dev_up_recovers_a_killed_broker(stack: Stack) -> None:
    kafka_pid = pid_of(stack.pids / "kafka.pid")
    assert kafka_pid is not None
    before = log_lines(stack)
    sigkill(kafka_pid)
    started = time.monotonic()
    # An outage the services notice (they retry every few hundred ms) before it ends.
    time.sleep(OUTAGE_S)
    during = {name: n - before[name] for name, n in log_lines(stack).items()}
    out = stack.up()
    assert "kafka: started" in out, out
    restarted = pid_of(stack.pids / "kafka.pid")
    assert restarted is not None and restarted != kafka_pid
    stack.announce()
    assert time.monotonic() - started < RECOVERY_S
    # One line per state change, not one per retry: a few lines each, never thousands.
    print(f"log lines during a {OUTAGE_S:.0f}s broker outage: {during}")
    assert max(during.values()) < MAX_OUTAGE_LINES, during


def test_dev_down_leaves_nothing(stack: Stack) -> None:
    recorded = [pid_of(p) for p in stack.pids.glob("*.pid")]
    recorded.append(stack.postmaster())
    down = dev("down", stack.env)
    assert down.returncode == 0, down.stdout + down.stderr
    survivors = [pid for pid in recorded if pid is not None and alive(pid)]
    assert survivors == []
    for key in ("WAVELINE_DEV_KAFKA_PORT", "WAVELINE_DEV_PG_PORT", "WAVELINE_HTTP_PORT"):
        assert not port_open(int(stack.env[key])), key
    leftovers = []
    for command in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(stack.run).encode() in command.read_bytes():
                leftovers.append(command.parent.name)
        except OSError:
            continue
    assert leftovers == []

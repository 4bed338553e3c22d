"""The dev stack's judgement of pid and lock files, against real processes: a dead pid, a
zombie, a reused pid (another program, or a postgres started later) are stale; a postgres
that started before its lock was written is not, and its lock is never removed."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from waveline.devstack import pidlock, postgres, procs
from waveline.devstack.paths import StackPaths


def lock_text(pid: int, data: Path, start: float, port: int = 5432) -> str:
    """postmaster.pid as PostgreSQL writes it."""
    return f"{pid}\n{data}\n{int(start)}\n{port}\n/tmp\n127.0.0.1\n  5341277        17\nready   \n"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def fake_postgres() -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line reads like a postmaster's."""
    proc = subprocess.Popen(["bash", "-c", "exec -a postgres sleep 60"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        info = pidlock.proc_info(proc.pid)
        if info is not None and info.argv[:1] == ("postgres",):
            break
        time.sleep(0.02)
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child that exited and that this process has not reaped (yet)."""
    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while (info := pidlock.proc_info(proc.pid)) is None or info.state != "Z":
        assert time.monotonic() < deadline, "the child did not become a zombie"
        time.sleep(0.02)
    yield proc.pid
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def judge(pid: int, start: float) -> str | None:
    lock = pidlock.parse_pg_lock(lock_text(pid, Path("/d"), start))
    assert lock is not None
    return pidlock.pg_lock_stale(lock, pidlock.proc_info(pid))


def test_parse_the_lines_postgres_writes() -> None:
    lock = pidlock.parse_pg_lock(lock_text(123, Path("/x/data"), 1796640466, 55432))
    assert lock == pidlock.PgLock(123, "/x/data", 1796640466, 55432, "ready")
    assert pidlock.parse_pg_lock("") is None
    assert pidlock.parse_pg_lock("123\n/x/da") is None  # being written


def test_a_dead_pid_is_stale() -> None:
    pid = dead_pid()
    assert judge(pid, time.time()) == f"pid {pid} is not running"


def test_a_zombie_is_stale(zombie: int) -> None:
    why = judge(zombie, time.time() - 60)
    assert why is not None and "zombie" in why


def test_another_program_on_the_pid_is_stale(sleeper: subprocess.Popen[bytes]) -> None:
    why = judge(sleeper.pid, time.time() + 60)
    assert why is not None and "'sleep', not a PostgreSQL" in why


def test_a_postgres_started_after_the_lock_is_stale(
    fake_postgres: subprocess.Popen[bytes],
) -> None:
    why = judge(fake_postgres.pid, time.time() - 600)
    assert why is not None and "started" in why and "reused" in why


def test_a_postgres_started_before_its_lock_is_live(
    fake_postgres: subprocess.Popen[bytes],
) -> None:
    assert judge(fake_postgres.pid, time.time() + 1) is None


def test_pid_files_carry_the_start_time(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(pidlock.pidfile_text(sleeper.pid))
    assert procs.pid_of(pidfile) == sleeper.pid
    # The same pid with another start time: a process that got the pid later.
    ticks = int(pidfile.read_text().split()[1])
    pidfile.write_text(f"{sleeper.pid} {ticks - 100}\n")
    assert procs.pid_of(pidfile) is None
    assert not pidfile.exists()


def test_pid_files_naming_a_zombie_or_a_dead_pid(tmp_path: Path, zombie: int) -> None:
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{zombie}\n")
    # pid_of reaps its own zombie child; either way it is not running.
    assert procs.pid_of(pidfile) is None
    pidfile.write_text(f"{dead_pid()}\n")
    assert procs.pid_of(pidfile) is None


def stack(tmp_path: Path) -> StackPaths:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = int(sock.getsockname()[1])  # nothing listens there once closed
    return StackPaths(tmp_path, tmp_path / "run", tmp_path / "cache", 1, 2, closed_port, 3)


def write_locks(paths: StackPaths, pid: int, start: float) -> tuple[Path, Path]:
    data = paths.run / "pg" / "data"
    sock = paths.run / "pg" / "sock"
    data.mkdir(parents=True)
    sock.mkdir(parents=True)
    text = lock_text(pid, data, start, paths.pg_port)
    (data / "postmaster.pid").write_text(text)
    (sock / f".s.PGSQL.{paths.pg_port}.lock").write_text(text)
    return data / "postmaster.pid", sock / f".s.PGSQL.{paths.pg_port}.lock"


def test_stale_locks_are_removed(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    paths = stack(tmp_path)
    locks = write_locks(paths, sleeper.pid, time.time() + 60)
    assert postgres.live_postmaster(paths) is None
    postgres._clear_stale_locks(paths)
    assert not any(lock.exists() for lock in locks)


def test_the_lock_of_a_live_postgres_is_never_removed(
    tmp_path: Path, fake_postgres: subprocess.Popen[bytes]
) -> None:
    paths = stack(tmp_path)
    pidfile, _ = write_locks(paths, fake_postgres.pid, time.time() + 1)
    live = postgres.live_postmaster(paths)
    assert live is not None and live.pid == fake_postgres.pid
    with pytest.raises(RuntimeError, match="names a running PostgreSQL"):
        postgres._clear_stale_locks(paths)
    assert pidfile.exists()
    # dev down does not take it for stale either (it would run pg_ctl stop instead).
    assert postgres.running(paths) is False  # nothing listens on the port
    assert pidfile.exists()


def test_a_connection_to_itself_is_found_with_its_holder() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    assert procs.self_connected(port) == []
    with socket.socket() as itself:
        # What a client retrying a closed loopback port may end up with: its own end is
        # given the port it dials, and the connection opens to itself.
        itself.bind(("127.0.0.1", port))
        itself.connect(("127.0.0.1", port))
        assert itself.getpeername() == itself.getsockname()
        assert procs.self_connected(port) == [os.getpid()]
    assert procs.self_connected(port) == []

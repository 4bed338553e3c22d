"""Background processes with pid files: start detached, probe, stop without leftovers."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from waveline.devstack import pidlock
from waveline.shared import cpu


def pid_of(pidfile: Path) -> int | None:
    """The live pid recorded in ``pidfile``, or None: a file naming no process, a zombie or
    a process that started at another time than the one recorded (a reused pid) is stale,
    and removed."""
    try:
        text = pidfile.read_text()
        pid = int(text.split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    # A zombie that is our child can be reaped; any other stays a zombie (in a container
    # nobody may ever reap it) and counts as dead.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    if pidlock.pidfile_stale(text, pidlock.proc_info(pid)):
        pidfile.unlink(missing_ok=True)
        return None
    return pid


@contextlib.contextmanager
def exclusive(lockfile: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lockfile`` for the block: two ``dev up`` runs (or test
    sessions sharing a stack) must not both judge a lock stale and start a server."""
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with lockfile.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start(
    cmd: Sequence[str],
    *,
    pidfile: Path,
    logfile: Path,
    env: Mapping[str, str],
    cwd: Path,
    nice: int = 0,
) -> int:
    """Start ``cmd`` in a session of its own, at CPU weight ``nice`` (see shared/cpu.py)."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # its own process group: `down` can stop the whole tree
        )
    if nice:
        cpu.set_nice(proc.pid, nice)
    pidfile.write_text(pidlock.pidfile_text(proc.pid))
    return proc.pid


def stop(pidfile: Path, *, timeout_s: float = 20.0) -> bool:
    """SIGTERM the process group, then SIGKILL after ``timeout_s``. True if one was running."""
    pid = pid_of(pidfile)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_of(pidfile) is not None:
        time.sleep(0.1)
    if pid_of(pidfile) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.2)
    pidfile.unlink(missing_ok=True)
    return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_port(port: int, timeout_s: float, what: str, logfile: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.2)
    hint = f"; see {logfile}" if logfile else ""
    raise RuntimeError(f"{what} did not open port {port} within {timeout_s:.0f}s{hint}")


def wait_started(port: int, pidfile: Path, deadline: float) -> str | None:
    """Wait until the service on ``port`` says (``/readyz``) that it has started consuming
    and every consumer holds its partitions, whether or not it is ready: a service waiting
    out an outage has started. None when it has; otherwise why not (its process died, or it
    did not say so by ``deadline``)."""
    url = f"http://127.0.0.1:{port}/readyz"
    while time.monotonic() < deadline:
        if pid_of(pidfile) is None:
            return "exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:  # 503: not ready, yet it answers
            body = exc.read()
        except OSError:
            body = b""
        try:
            said = json.loads(body or b"{}")
            if said.get("started") is True and not said.get("joining"):
                return None
        except ValueError:
            pass
        time.sleep(0.2)
    return f"did not start consuming (http://127.0.0.1:{port}/readyz)"


def self_connected(port: int) -> list[int]:
    """Pids holding a loopback TCP connection from ``port`` to ``port`` itself.

    A client that keeps reconnecting to a loopback port nobody listens on, when that port is
    in the ephemeral range (PostgreSQL's 55432 is), is now and then given that very port as
    its own end: the connection then opens to itself (TCP's simultaneous open), and the
    port stays taken until that client closes it, so the server cannot listen there again.
    """
    inodes = {f"socket:[{inode}]" for inode in _self_connections(port) if inode != "0"}
    if not inodes:
        return []
    holders = []
    for fds in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fds.iterdir()):
                holders.append(int(fds.parent.name))
        except OSError:
            continue
    return holders


def _self_connections(port: int) -> list[str]:
    """Inodes of the sockets connected from ``port`` to itself; a connection closed since,
    which lingers in TIME_WAIT for a minute, has inode 0."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote = fields[1], fields[2]
            if local == remote and int(local.rsplit(":", 1)[1], 16) == port:
                found.append(fields[9])
    return found


def wait_self_connection_gone(port: int, timeout_s: float = 65.0) -> bool:
    """Wait until no connection from ``port`` to itself holds the port, the TIME_WAIT it
    leaves once closed included (a minute on Linux: a server cannot listen there meanwhile);
    False when there was none."""
    if not _self_connections(port):
        return False
    print(f"port {port}: waiting for its connection to itself to time out (TIME_WAIT, 60 s)")
    deadline = time.monotonic() + timeout_s
    while _self_connections(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    return True


def session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[3])

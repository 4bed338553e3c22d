"""Background processes with pid files: start detached, probe, stop without leftovers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from waveline.shared import cpu


def pid_of(pidfile: Path) -> int | None:
    """The live pid recorded in ``pidfile``, or None (a stale file is removed)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return None
    except PermissionError:
        return pid
    # A zombie still answers kill(0): reap it if it is our child, and call it dead either
    # way (in a container nobody may ever reap it).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    if _zombie(pid):
        pidfile.unlink(missing_ok=True)
        return None
    return pid


def _zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return "\nState:\tZ" in status


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
    pidfile.write_text(str(proc.pid))
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

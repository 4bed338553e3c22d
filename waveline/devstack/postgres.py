"""A private PostgreSQL cluster under ``.run/pg`` on a loopback port.

Installs Debian's server package when its binaries are missing. PostgreSQL refuses to run as
root, so as root the cluster belongs to the ``postgres`` system user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from waveline.devstack import pidlock, procs
from waveline.devstack.paths import StackPaths


@dataclass(frozen=True)
class ServerTls:
    """TLS for a private cluster (the dev stack runs without): the server's certificate
    and key (PEM), copied next to the data directory for the server's user; with
    ``hostssl_only``, TCP clients that do not use TLS are refused (pg_hba ``hostssl``)."""

    cert_file: Path
    key_file: Path
    hostssl_only: bool = False


def bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    if os.geteuid() != 0:
        raise RuntimeError("PostgreSQL server binaries are missing: apt-get install postgresql")
    print("installing PostgreSQL server (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
        check=True,
        env=env,
    )
    return bin_dir()


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _ensure_owner(path: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    shutil.chown(path, "postgres", "postgres")
    # The server must be able to reach its data directory through every parent.
    for parent in path.parents:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _lock_of(path: Path) -> pidlock.PgLock | None:
    """The lock file's contents, waiting out a server that is writing it right now."""
    for _ in range(30):
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        lock = pidlock.parse_pg_lock(text)
        if lock is not None:
            return lock
        time.sleep(0.1)
    # Still empty or cut short after 3 s: no server is writing it (PostgreSQL writes the
    # first lines at once). Its pid line, if any, is judged without a start time.
    first = path.read_text().split("\n", 1)[0].strip().lstrip("-")
    return pidlock.PgLock(int(first) if first.isdigit() else 0, "", None, 0, "")


def live_postmaster(paths: StackPaths) -> pidlock.PgLock | None:
    """The lock of the postmaster that runs on this stack's data directory, or None."""
    lock = _lock_of(paths.run / "pg" / "data" / "postmaster.pid")
    if lock is None or lock.pid <= 0:
        return None
    if pidlock.pg_lock_stale(lock, pidlock.proc_info(lock.pid)) is not None:
        return None
    return lock


def _clear_stale_locks(paths: StackPaths) -> None:
    """Remove ``postmaster.pid`` and the socket lock when they name no running
    PostgreSQL (a dead pid, a zombie, a reused pid), and wait for the dead postmaster's
    server processes to go (they would keep its shared memory in use). Never removes the
    lock of a postgres that runs."""
    data = paths.run / "pg" / "data"
    sock_lock = paths.run / "pg" / "sock" / f".s.PGSQL.{paths.pg_port}.lock"
    for path in (data / "postmaster.pid", sock_lock):
        lock = _lock_of(path)
        if lock is None:
            continue
        proc = pidlock.proc_info(lock.pid) if lock.pid > 0 else None
        why = pidlock.pg_lock_stale(lock, proc)
        if why is None:
            raise RuntimeError(f"{path} names a running PostgreSQL (pid {lock.pid})")
        path.unlink(missing_ok=True)
        print(f"postgres: removed stale {path.name}: {why}", flush=True)
    _wait_for_orphans(data)


def _orphans(data: Path) -> list[int]:
    """Live postgres processes working in ``data`` (a server process chdirs there)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(entry / "cwd")) != data:
                continue
        except OSError:
            continue
        proc = pidlock.proc_info(int(entry.name))
        if proc is not None and proc.state not in ("Z", "X") and pidlock.is_postgres(proc.argv):
            found.append(proc.pid)
    return found


def _wait_for_orphans(data: Path, timeout_s: float = 15.0) -> None:
    # Each notices its postmaster died and exits within moments; one that does not would
    # make the new postmaster refuse the shared memory it still holds.
    deadline = time.monotonic() + timeout_s
    while (left := _orphans(data.resolve())) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        print(f"postgres: killing pid {pid}, left over from a dead postmaster", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start(paths: StackPaths, tls: ServerTls | None = None) -> bool:
    """Start the cluster unless its postmaster runs; True when it was started now. A lock
    file left by a postmaster that died (whatever its pid names now) is removed first.
    ``tls`` turns TLS on for this start (a running postmaster is left as it is)."""
    with procs.exclusive(paths.run / "pg" / "start.lock"):
        return _start(paths, tls)


def _tls_options(paths: StackPaths, tls: ServerTls) -> str:
    """pg_ctl ``-o`` options serving ``tls``; the certificate and key are copied where the
    server's user may read them (PostgreSQL refuses a key others can read)."""
    where = paths.run / "pg" / "tls"
    where.mkdir(parents=True, exist_ok=True)
    cert, key = where / "server.crt", where / "server.key"
    shutil.copyfile(tls.cert_file, cert)
    shutil.copyfile(tls.key_file, key)
    key.chmod(0o600)
    for path in (where, cert, key):
        _ensure_owner(path)
    options = f" -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}"
    if tls.hostssl_only:
        hba = where / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 trust\n"
            "hostssl all all ::1/128 trust\n"
        )
        _ensure_owner(hba)
        options += f" -c hba_file={hba}"
    return options


def _start(paths: StackPaths, tls: ServerTls | None = None) -> bool:
    data = paths.run / "pg" / "data"
    sock = paths.run / "pg" / "sock"
    logfile = paths.logs / "postgres.log"
    binaries = bin_dir()
    running = live_postmaster(paths)
    if running is not None and running.status == "stopping":
        _wait_gone(running.pid, 60)
        running = live_postmaster(paths)
    if running is not None:
        if running.port != paths.pg_port:
            raise RuntimeError(
                f"PostgreSQL of {data} runs (pid {running.pid}) on port {running.port}, not "
                f"{paths.pg_port}: stop it with WAVELINE_DEV_PG_PORT={running.port} waveline "
                "dev down, or use that port"
            )
        procs.wait_port(paths.pg_port, 60, "PostgreSQL", logfile)
        return False
    _clear_stale_locks(paths)
    if procs.port_open(paths.pg_port):
        raise RuntimeError(f"port {paths.pg_port} is taken by something that is not our PostgreSQL")
    for d in (data.parent, sock, paths.logs):
        d.mkdir(parents=True, exist_ok=True)
    _ensure_owner(data.parent)
    _ensure_owner(sock)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        _ensure_owner(data)
        subprocess.run(
            _as_owner(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "waveline",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    logfile.touch()
    _ensure_owner(logfile)
    subprocess.run(
        _as_owner(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(logfile),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {paths.pg_port} -k {sock} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c max_connections=200"
                + (_tls_options(paths, tls) if tls is not None else ""),
                "start",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _createdb(paths, binaries, sock)
    return True


def _createdb(paths: StackPaths, binaries: Path, sock: Path) -> None:
    psql = shutil.which("psql") or str(binaries / "psql")
    exists = subprocess.run(
        [
            psql,
            "-h",
            str(sock),
            "-p",
            str(paths.pg_port),
            "-U",
            "waveline",
            "-d",
            "postgres",
            "-tAc",
            "SELECT 1 FROM pg_database WHERE datname = 'waveline'",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(
            [
                psql,
                "-h",
                str(sock),
                "-p",
                str(paths.pg_port),
                "-U",
                "waveline",
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE waveline",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc = pidlock.proc_info(pid)
        if proc is None or proc.state in ("Z", "X"):
            return
        time.sleep(0.2)


def running(paths: StackPaths) -> bool:
    return live_postmaster(paths) is not None and procs.port_open(paths.pg_port)


def stop(paths: StackPaths) -> bool:
    """Stop the postmaster (fast shutdown); True if one was running. Stale locks go."""
    with procs.exclusive(paths.run / "pg" / "start.lock"):
        data = paths.run / "pg" / "data"
        if not (data / "postmaster.pid").exists():
            return False
        if live_postmaster(paths) is None:
            _clear_stale_locks(paths)
            return False
        subprocess.run(
            _as_owner([str(bin_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
        )
        return True

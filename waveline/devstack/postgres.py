"""A private PostgreSQL cluster under ``.run/pg`` on a loopback port.

Installs Debian's server package when its binaries are missing. PostgreSQL refuses to run as
root, so as root the cluster belongs to the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from waveline.devstack import procs
from waveline.devstack.paths import StackPaths


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


def start(paths: StackPaths) -> bool:
    data = paths.run / "pg" / "data"
    sock = paths.run / "pg" / "sock"
    logfile = paths.logs / "postgres.log"
    binaries = bin_dir()
    pidfile = data / "postmaster.pid"
    if pidfile.exists() and procs.port_open(paths.pg_port):
        return False
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
                "-c fsync=off -c max_connections=200",
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


def running(paths: StackPaths) -> bool:
    return (paths.run / "pg" / "data" / "postmaster.pid").exists() and procs.port_open(
        paths.pg_port
    )


def stop(paths: StackPaths) -> bool:
    data = paths.run / "pg" / "data"
    if not (data / "postmaster.pid").exists():
        return False
    subprocess.run(
        _as_owner([str(bin_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        check=False,
        stdout=subprocess.DEVNULL,
    )
    return True

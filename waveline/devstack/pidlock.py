"""Whose pid a pid file or PostgreSQL lock file names, and whether that process still is
the one that wrote it.

A process that was SIGKILLed leaves its pid file behind. What the pid names then is one of:
nothing (the usual case), a zombie (where nobody reaps orphans, e.g. an init that does not,
the dead process stays one forever and still answers ``kill(pid, 0)``), or an unrelated
process that was given the same pid later. PostgreSQL itself treats any live pid of its
own user as a running postmaster and refuses to start, so ``waveline dev up`` judges the
lock first: the state and start time in ``/proc/<pid>/stat`` and the command line in
``/proc/<pid>/cmdline`` against the lock file's pid and start-time lines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# /proc's start times count clock ticks since boot, and the boot time is whole seconds: a
# process is "the same" when it started at most this long after the file says it did.
START_SLACK_S = 2.0


@dataclass(frozen=True)
class ProcInfo:
    """What /proc says about a pid."""

    pid: int
    state: str  # R, S, D, Z (zombie), X (dead), ...
    start_ticks: int  # clock ticks after boot
    start_epoch: float
    argv: tuple[str, ...]  # empty for a zombie


@dataclass(frozen=True)
class PgLock:
    """The lines of ``postmaster.pid`` (or a socket's ``.s.PGSQL.<port>.lock``) that say
    whose it is: pid, data directory, start time (epoch seconds) and port."""

    pid: int
    data_dir: str
    start_epoch: int | None  # None: unknown (the file was cut short)
    port: int
    status: str  # "starting", "ready", "stopping", "standby"; "" when not yet written


def boot_epoch() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise RuntimeError("/proc/stat has no btime")


def proc_info(pid: int) -> ProcInfo | None:
    """The process ``pid`` as /proc shows it, or None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[19])
    argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    start = boot_epoch() + ticks / os.sysconf("SC_CLK_TCK")
    return ProcInfo(pid, fields[0], ticks, start, argv)


def is_postgres(argv: tuple[str, ...]) -> bool:
    """A postmaster (``.../postgres -D ...``) or a server process (``postgres: ...``,
    the title PostgreSQL gives its children)."""
    if not argv:
        return False
    first = argv[0]
    return Path(first.split(" ")[0]).name in ("postgres", "postmaster") or first.startswith(
        "postgres:"
    )


def parse_pg_lock(text: str) -> PgLock | None:
    """The lock's first lines, or None while it is empty or half written."""
    lines = text.split("\n")
    if len(lines) < 5:
        return None
    try:
        # A single-user backend writes its pid negated.
        pid, start, port = abs(int(lines[0])), int(lines[2]), int(lines[3])
    except ValueError:
        return None
    status = lines[7].strip() if len(lines) > 7 else ""
    return PgLock(pid, lines[1], start, port, status)


def pg_lock_stale(lock: PgLock, proc: ProcInfo | None) -> str | None:
    """Why ``lock`` belongs to no running PostgreSQL, or None when its postmaster may
    still run (and the lock must stay)."""
    if proc is None:
        return f"pid {lock.pid} is not running"
    if proc.state in ("Z", "X"):
        return f"pid {lock.pid} is a zombie (it exited and nobody reaped it)"
    if not is_postgres(proc.argv):
        name = Path(proc.argv[0]).name if proc.argv else "?"
        return f"pid {lock.pid} is now {name!r}, not a PostgreSQL (the pid was reused)"
    if lock.start_epoch is not None and proc.start_epoch > lock.start_epoch + START_SLACK_S:
        return (
            f"pid {lock.pid} is a PostgreSQL started {proc.start_epoch - lock.start_epoch:.0f}s "
            "after the lock was written (the pid was reused)"
        )
    return None


def pidfile_text(pid: int) -> str:
    """What ``procs.start`` writes: the pid and its start time, so a later reader can tell
    the process from another that got the same pid."""
    info = proc_info(pid)
    return f"{pid} {info.start_ticks}\n" if info is not None else f"{pid}\n"


def pidfile_stale(text: str, proc: ProcInfo | None) -> bool:
    """Whether a pid file (``pid [start ticks]``) names no live process of its own: none,
    a zombie, or one that started at another time (a reused pid)."""
    parts = text.split()
    if proc is None or proc.state in ("Z", "X"):
        return True
    return len(parts) > 1 and parts[1] != str(proc.start_ticks)

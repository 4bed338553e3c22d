"""CPU weight of a process on a shared host (the dev stack, a single VM).

With autogroups on (``/proc/sys/kernel/sched_autogroup_enabled``, the default of most
distributions' kernels), Linux shares CPU time between *sessions* first: every process
started in a session of its own gets an equal share when the CPU is contended, whatever its
nice, and a task's nice only weighs against the tasks of its own session. The dev stack
starts every service in its own session, so each needs its weight set on its autogroup
(``/proc/<pid>/autogroup``); the task's own nice is set too, for kernels without autogroups.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

LOWEST = 19


def set_nice(pid: int, nice: int) -> bool:
    """Give process ``pid`` (a session leader, or a process of a session that should share
    its weight) the CPU weight of ``nice`` (0 the default, 19 the lowest): its session's
    autogroup and its main task, whose later threads inherit it. Only lowering a weight is
    portable (raising needs CAP_SYS_NICE). Returns whether either took; a kernel or a
    process that refuses leaves the weight as it was (logged), since a weight is a
    preference, never a reason to fail a start."""
    if not 0 <= nice <= LOWEST:
        raise ValueError(f"nice must be 0..{LOWEST}, not {nice}")
    took = False
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        took = True
    except FileNotFoundError:
        pass  # no autogroups (or no /proc): the task's nice below is the weight
    except OSError as exc:
        logger.warning("cpu weight: autogroup of %d left as is: %s", pid, exc)
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
        took = True
    except OSError as exc:
        logger.warning("cpu weight: nice of %d left as is: %s", pid, exc)
    return took


def nice_of(pid: int) -> int:
    """Process ``pid``'s weight as ``set_nice`` gives it: the larger of its autogroup's
    nice and its own (the autogroup file exists even where autogroups are switched off)."""
    task = os.getpriority(os.PRIO_PROCESS, pid)
    with contextlib.suppress(OSError, ValueError, IndexError):
        # "/autogroup-123 nice 3"
        return max(task, int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1]))
    return task


def own_nice() -> int:
    """This process's weight (``nice_of``)."""
    return nice_of(os.getpid())


def own_session(lower_by: int = 0) -> None:
    """Make this process a session of its own (unless it leads one already), keeping the
    weight it inherited lowered by ``lower_by``. A new session is a new autogroup at the
    default weight; the task's nice, which fork and exec carry over, still holds the
    parent's, so that is what is kept (``own_nice``, the larger of the two)."""
    weight = min(LOWEST, own_nice() + lower_by)
    with contextlib.suppress(OSError):  # EPERM: it leads a process group, so its session
        os.setsid()
    if weight:
        set_nice(os.getpid(), weight)

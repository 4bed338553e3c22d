"""``make test``'s suite: every test over parallel workers (pytest-xdist), then the log scan.

Two steps because the scan (``tests/test_zz_logs_hold_no_secrets.py``) must run after every
other test and read what all of them wrote: the workers' logs, dead letters and stored rows
land under the first step's base temp directory, which the second step is told about
(``WAVELINE_SCAN_BASES``). It collects the whole suite but runs only the scan, so the test
modules' credential constants are imported as in one run.

The shared Kafka and PostgreSQL are started here, once, before the workers: each worker's
session would otherwise race to start the same ports (tests/infra.py shares a stack it finds
running). They are stopped at the end only if this run started them.

Workers: ``WAVELINE_TEST_WORKERS`` (default 2, this machine's cores; ``0`` runs in-process).
A module's tests stay on one worker (``--dist loadscope``): module fixtures such as the
outage tests' private broker are started once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from waveline.devstack import kafka, postgres
from waveline.devstack.paths import StackPaths
from waveline.devstack.procs import port_open

BASE = Path(".run/pytest")


def _pytest(*args: str, env: dict[str, str] | None = None) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *args], env=env)


def main(argv: list[str]) -> int:
    workers = os.environ.get("WAVELINE_TEST_WORKERS", "2")
    parallel = ["-n", workers, "--dist", "loadscope"] if workers != "0" else []
    BASE.mkdir(parents=True, exist_ok=True)
    paths = StackPaths.from_env()
    stops: list[Callable[[StackPaths], object]] = []
    # A stack already serving these ports (`make up`, another checkout) is shared, as the
    # workers' own sessions would (tests/infra.py).
    if not (port_open(paths.kafka_port) and port_open(paths.pg_port)):
        if kafka.start(paths):
            stops.append(kafka.stop)
        if postgres.start(paths):
            stops.append(postgres.stop)
    try:
        run = BASE / "run"
        first = _pytest(
            "-q", "-ra", "--durations=40", *parallel, "-m", "not last", f"--basetemp={run}", *argv
        )
        scan_env = {**os.environ, "WAVELINE_SCAN_BASES": str(run.resolve())}
        second = _pytest("-q", "-m", "last", f"--basetemp={BASE / 'scan'}", "tests", env=scan_env)
    finally:
        for stop in reversed(stops):
            stop(paths)
    return first or second


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

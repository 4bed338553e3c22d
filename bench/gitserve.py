"""Serve the bare repositories under a folder over smart HTTP (tests/gitserver.py: ``git
http-backend`` behind basic auth) from a process of its own, so a benchmark's load
generator does not share an interpreter lock with the server it measures.

``python -m bench.gitserve ROOT``: the password is ``WAVELINE_BENCH_GIT_TOKEN``; prints the
base URL (``http://127.0.0.1:PORT/``) on one line, then serves until terminated.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from tests.gitserver import GitHttpServer

TOKEN_ENV = "WAVELINE_BENCH_GIT_TOKEN"  # noqa: S105 (a variable name)


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with GitHttpServer(Path(sys.argv[1]), os.environ[TOKEN_ENV]) as server:
        print(server.url(""), flush=True)
        stop.wait()


if __name__ == "__main__":
    main()

"""Push benchmark: what one push of a one-file commit costs as the repository grows, with
libgit2's push and Waveline's own (shared/gitengine/pushwire.py) side by side.

For each size, a bare remote of N files (``common.make_repo``, packed by ``git gc``) and a
clone like the git-writer's (``ConfigRepo`` with an ``ObjectStore``); then ``--pushes``
one-file commits, each pushed, alternating the two ways so both see the same repository,
the same load and the same remote history. ``--transport http`` serves the remote with
tests/gitserver.py (``git http-backend`` behind basic auth) instead of ``file://``. After
the run, ``git fsck --full`` of the remote must pass.

For ``file://`` three ways: ``libgit2``, ``own`` (localpush.py: the changed objects written
into the remote in process, as libgit2's local transport does with all of them) and
``receive_pack`` (the wire protocol through ``git receive-pack``, which runs the remote's
hooks and its connectivity check); for ``http`` the wire protocol is ``own``. The wire
protocol's time is also split: ``*_remote`` is the wait for the remote's report (unpacking,
checking connectivity, updating the refs), ``*_client`` the rest (choosing the objects, the
pack, the advertisement).

Run: ``.venv/bin/python -m bench.push [--files 2000,20000,200000] [--transport file,http]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pygit2

from bench.common import make_repo, pct
from waveline.shared.config import RepoConfig
from waveline.shared.gitengine import pushhttp, pushwire
from waveline.shared.gitengine.repo import ConfigRepo, Credentials
from waveline.shared.gitengine.storage import ObjectStore

TOKEN = "bench-push-token"  # noqa: S105 (the loopback test server's)
Push = Callable[[Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]]], None]


def _timed_sends(waits: list[float]) -> None:
    """Record how long each own push waits for the remote's report."""
    for wire in (pushwire.FileWire, pushhttp.HttpWire):
        send = wire.send

        def timed(self: object, request: bytes, send: Callable[..., bytes] = send) -> bytes:
            start = time.perf_counter()
            try:
                return send(self, request)
            finally:
                waits.append(time.perf_counter() - start)

        wire.send = timed  # type: ignore[method-assign]


def run(root: Path, files: int, transport: str, pushes: int) -> dict[str, object]:
    srv = root / "srv"
    remote = srv / "remote.git"
    make_repo(remote, files)
    subprocess.run(["git", f"--git-dir={remote}", "gc", "-q"], check=True)
    server = None
    url = remote.as_uri()
    if transport == "http":
        from tests.gitserver import GitHttpServer  # a test helper: only this mode needs it

        server = GitHttpServer(srv, TOKEN).__enter__()
        url = server.url("remote.git")
    try:
        cfg = RepoConfig.model_validate(
            {"url": url, "watched_branch": "master", "auto_branch": "auto"}
            | ({"allow_insecure_http": True} if server else {})
        )
        clone = root / "clone.git"
        repo = ConfigRepo(
            "r",
            cfg,
            clone,
            Credentials(token=TOKEN),
            store=ObjectStore(clone),
        )
        repo.fetch()
        tip = repo.remote_ref("master")
        assert tip is not None

        def receive_pack(updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]]) -> None:
            repo.receive_pack_for_files = True
            try:
                repo.push(updates)
            finally:
                repo.receive_pack_for_files = False

        # file://: "own" is the in-process write (localpush.py), "receive_pack" the wire
        # protocol through git receive-pack; http: "own" is the wire protocol.
        ways: dict[str, Push] = {"libgit2": repo._push_libgit2, "own": repo.push}
        if transport == "file":
            ways["receive_pack"] = receive_pack
        times: dict[str, list[float]] = {name: [] for name in ways}
        waits: list[float] = []
        _timed_sends(waits)
        for n in range(pushes):
            name = list(ways)[n % len(ways)]
            new = repo.create_commit(
                tip, {"images/staging/tags.json": f'{{"n": {n}}}\n'.encode()}, f"c{n}"
            )
            assert new is not None
            start = time.perf_counter()
            ways[name]({"master": (tip, new)})
            times[name].append(time.perf_counter() - start)
            wire = "own" if transport == "http" else "receive_pack"
            if name == wire:
                times.setdefault(f"{wire}_remote", []).append(waits[-1])
                times.setdefault(f"{wire}_client", []).append(times[name][-1] - waits[-1])
            tip = new
    finally:
        if server is not None:
            server.__exit__()
    fsck = subprocess.run(
        ["git", f"--git-dir={remote}", "fsck", "--full"], capture_output=True, check=False
    )
    head = subprocess.run(
        ["git", f"--git-dir={remote}", "rev-parse", "master"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {
        "files": files,
        "transport": transport,
        **{f"{name}_p50_ms": round(pct(t, 50) * 1000, 1) for name, t in times.items()},
        **{f"{name}_p99_ms": round(pct(t, 99) * 1000, 1) for name, t in times.items()},
        "fsck_ok": fsck.returncode == 0,
        "remote_at_last_push": head == str(tip),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", default="2000,20000,200000")
    parser.add_argument("--transport", default="file")
    parser.add_argument("--pushes", type=int, default=80)
    args = parser.parse_args()
    ok = True
    for transport in args.transport.split(","):
        for files in (int(f) for f in args.files.split(",")):
            with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
                result = run(Path(tmp), files, transport, args.pushes)
            print(json.dumps(result), flush=True)
            ok = ok and bool(result["fsck_ok"]) and bool(result["remote_at_last_push"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

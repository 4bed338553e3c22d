"""`waveline dev up/down` on a fresh directory: a real Kafka, PostgreSQL and the five
services; one curl-equivalent announcement lands on `auto` of the demo repo; `down` leaves
no process behind. Uses its own directory and ports, so it never touches a developer's
running stack."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import APP_SHA, branch_log, children_of, cmdline, image_set
from waveline.devstack.paths import StackPaths
from waveline.devstack.procs import pid_of, port_open
from waveline.devstack.stack import NICE
from waveline.shared import cpu

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dev(action: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waveline", "dev", action],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except FileNotFoundError:
        return False


@pytest.mark.timeout(900)
def test_dev_up_announce_down(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WAVELINE_") and k != "PYTEST_CURRENT_TEST"
    }
    env |= {
        "WAVELINE_DEV_DIR": str(run),
        "WAVELINE_DEV_CACHE": str(StackPaths.from_env().cache),
        "WAVELINE_DEV_KAFKA_PORT": str(free_port()),
        "WAVELINE_DEV_KAFKA_CONTROLLER_PORT": str(free_port()),
        "WAVELINE_DEV_PG_PORT": str(free_port()),
        "WAVELINE_HTTP_PORT": str(free_port()),
    }
    http = int(env["WAVELINE_HTTP_PORT"])
    try:
        up = dev("up", env)
        assert up.returncode == 0, up.stdout + up.stderr
        tokens = dict(
            line.split("=", 1) for line in (run / "demo" / "secrets.env").read_text().splitlines()
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{http}/v1/images",
            data=json.dumps(image_set()).encode(),
            headers={
                "Authorization": f"Bearer {tokens['WAVELINE_CI_TOKEN']}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 (loopback)
            assert resp.status == 202
        bare = str(run / "demo" / "cfg-app.git")
        deadline = time.monotonic() + 60
        while len(branch_log(bare, "auto")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        log = branch_log(bare, "auto")
        assert len(log) == 2, (run / "logs" / "git-writer.log").read_text()
        assert f"Autocommit-App-SHA: {APP_SHA}" in log[0].message
        assert "Autocommit-Event-Id: " in log[0].message

        # CPU weights: each service's session as the stack's table says, and the
        # git-writer's repo process (a session of its own) as the git-writer.
        pids = run / "pids"
        for name, nice in NICE.items():
            pid = pid_of(pids / f"{name}.pid")
            assert pid is not None, name
            assert cpu.nice_of(pid) == nice, name
        writer = pid_of(pids / "git-writer.pid")
        assert writer is not None
        repo_processes = [p for p in children_of(writer) if b"git_writer.host" in cmdline(p)]
        assert repo_processes, "the git-writer's repo process is not running"
        assert {cpu.nice_of(p) for p in repo_processes} == {NICE["git-writer"]}

        # `up` again is safe, and restarts a service that died.
        kafka_pid = pid_of(pids / "kafka.pid")
        promoter_pid = pid_of(pids / "promoter.pid")
        assert kafka_pid is not None and promoter_pid is not None
        os.kill(promoter_pid, signal.SIGKILL)
        while alive(promoter_pid):
            time.sleep(0.05)
        assert dev("status", env).returncode != 0
        again = dev("up", env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "promoter: started" in again.stdout
        assert "git-writer: running" in again.stdout
        assert pid_of(pids / "kafka.pid") == kafka_pid
        assert dev("status", env).returncode == 0
    finally:
        recorded = [pid_of(p) for p in (run / "pids").glob("*.pid")] if run.exists() else []
        postmaster = run / "pg" / "data" / "postmaster.pid"
        if postmaster.exists():
            recorded.append(int(postmaster.read_text().splitlines()[0]))
        down = dev("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    survivors = [pid for pid in recorded if pid is not None and alive(pid)]
    assert survivors == []
    for key in ("WAVELINE_DEV_KAFKA_PORT", "WAVELINE_DEV_PG_PORT", "WAVELINE_HTTP_PORT"):
        assert not port_open(int(env[key])), key
    leftovers = []
    for command in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(run).encode() in command.read_bytes():
                leftovers.append(command.parent.name)
        except OSError:
            continue
    assert leftovers == []

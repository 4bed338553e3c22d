"""The git-writer's repo process: a real child process against a bare remote (file://)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from typing import Any, cast

import pygit2
import pytest

from tests.integration.test_gitengine import OTHER_SHA, human_commit, introduce
from tests.support import branch_log, children_of, cmdline, make_config
from waveline.services.git_writer.client import RepoProcess
from waveline.services.git_writer.host import HostInit
from waveline.shared import cpu
from waveline.shared.errors import GitFailure, PreconditionFailed
from waveline.shared.gitengine.storage import PACKING_NICENESS
from waveline.shared.models.git import FastForward

pytestmark = pytest.mark.timeout(60)


def host_init(remote: Path, data: Path) -> HostInit:
    config = make_config(remote.as_uri())
    return HostInit(
        repo="cfg-app",
        repo_config=config.repos["cfg-app"],
        config=config,
        path=data / "cfg-app.git",
        log_level="INFO",
        log_secrets=[],
        gil_switch_interval_ms=0.5,
    )


def pid_of(proc: RepoProcess) -> int:
    assert proc.pid is not None
    return proc.pid


async def test_build_and_flush_commit_on_the_remote(remote: Path, tmp_path: Path) -> None:
    proc = RepoProcess(host_init(remote, tmp_path))
    cmds = [introduce(), introduce(OTHER_SHA)]
    results, failed, timings = await proc.build(cmds, False, 1.0)
    assert failed == []
    assert [results[c.command_id].outcome for c in cmds] == ["committed", "committed"]
    assert timings["batch_size"] == 2
    assert branch_log(str(remote), "auto") == []  # built, not pushed yet
    await proc.flush()
    log = branch_log(str(remote), "auto")
    assert [str(c.id) for c in log[:2]] == [
        results[cmds[1].command_id].sha,
        results[cmds[0].command_id].sha,
    ]
    await proc.close()
    assert not proc.running


async def test_failures_keep_their_class_and_retriable(remote: Path, tmp_path: Path) -> None:
    proc = RepoProcess(host_init(remote, tmp_path))
    try:
        # A precondition failure is that command's result, not the batch's.
        bad = FastForward(
            command_id=uuid.uuid4(), repo="cfg-app", issued_at=introduce().issued_at, sha=OTHER_SHA
        )
        results, _, _ = await proc.build([bad], False, 1.0)
        assert results[bad.command_id].outcome == "rejected"
        # Someone pushed to auto after our fetch: the lease refuses the push, retriable.
        await proc.build([introduce()], True, 1.0)
        await proc.flush()
        await proc.build([introduce(OTHER_SHA)], True, 1.0)
        human_commit(remote, "auto", "elsewhere.txt", b"x")
        with pytest.raises(GitFailure) as raised:
            await proc.flush()
        assert raised.value.retriable
        await proc.discard()
        # Anything but one of the protocol's requests is refused in the child, raised here.
        with pytest.raises(TypeError, match="unknown repo process call str"):
            await proc.call(cast(Any, "__init__"))
        assert not isinstance(raised.value, PreconditionFailed)
    finally:
        await proc.close()


async def test_a_killed_child_fails_its_call_retriably_and_is_restarted(
    remote: Path, tmp_path: Path
) -> None:
    proc = RepoProcess(host_init(remote, tmp_path))
    try:
        first, _, _ = await proc.build([introduce()], False, 1.0)
        os.kill(pid_of(proc), signal.SIGKILL)
        with pytest.raises(GitFailure) as raised:
            # Either the socket is already closed or the child dies under the call.
            await asyncio.wait_for(proc.flush(), 10)
        assert raised.value.retriable
        assert "exited" in str(raised.value)
        # The next call starts a new child on the same clone, from the remote's state: the
        # unpushed build died with the old one.
        cmd = introduce(OTHER_SHA)
        results, _, _ = await proc.build([cmd], True, 1.0)
        await proc.flush()
        tip = branch_log(str(remote), "auto")[0]
        assert str(tip.id) == results[cmd.command_id].sha
        assert str(tip.id) != next(iter(first.values())).sha
        assert len(branch_log(str(remote), "auto")) == 2  # on master's initial commit
    finally:
        await proc.close()


async def test_close_packs_what_memory_holds(remote: Path, tmp_path: Path) -> None:
    proc = RepoProcess(host_init(remote, tmp_path))
    cmd = introduce()
    results, _, _ = await proc.build([cmd], False, 1.0)
    await proc.flush()
    await proc.close()
    # The commit is in the clone's packs now, readable without the child's memory.
    clone = pygit2.Repository(str(tmp_path / "cfg-app.git"))
    sha = results[cmd.command_id].sha
    assert sha is not None
    assert isinstance(clone.get(sha), pygit2.Commit)
    assert not list((tmp_path / "cfg-app.git" / "objects").glob("[0-9a-f][0-9a-f]/*"))


async def test_stop_signals_leave_the_child_to_the_service(remote: Path, tmp_path: Path) -> None:
    proc = RepoProcess(host_init(remote, tmp_path))
    try:
        await proc.discard()  # answered: the child is past its start
        os.kill(pid_of(proc), signal.SIGTERM)
        os.kill(pid_of(proc), signal.SIGINT)
        results, _, _ = await proc.build([introduce()], False, 1.0)
        assert proc.running
        assert len(results) == 1
    finally:
        await proc.close()


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
async def test_the_packing_process_ends_with_a_killed_repo_process(
    remote: Path, tmp_path: Path
) -> None:
    proc = RepoProcess(host_init(remote, tmp_path))
    try:
        await proc.build([introduce()], False, 1.0)
        await proc.flush()  # the first flush packs what an earlier run left: it spawns
        child = pid_of(proc)
        async with asyncio.timeout(20):
            # multiprocessing's resource tracker, then the packing process
            while len(children_of(child)) < 2:  # noqa: ASYNC110 (polls /proc)
                await asyncio.sleep(0.05)
        helpers = children_of(child)
        packers = [p for p in helpers if b"resource_tracker" not in cmdline(p)]
        assert len(packers) == 1, [cmdline(p) for p in helpers]
        # Its weight holds across sessions (shared/cpu.py): a session of its own, niced.
        packer = packers[0]
        expected = cpu.nice_of(child) + PACKING_NICENESS
        async with asyncio.timeout(20):  # once its initializer ran (after the spawn's imports)
            while os.getsid(packer) != packer or cpu.nice_of(packer) != expected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert os.getsid(packer) != os.getsid(child)
        os.kill(child, signal.SIGKILL)
        async with asyncio.timeout(20):
            while any(running(pid) for pid in helpers):  # noqa: ASYNC110 (polls /proc)
                await asyncio.sleep(0.1)
    finally:
        await proc.close()

"""The git-writer's objects held in memory stay bounded when packing falls behind."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import make_config
from tests.unit.test_hostile_files import introduce
from waveline.devstack.demo import seed_repo
from waveline.services.git_writer.host import HostInit, RepoHost


def _host(tmp_path: Path) -> RepoHost:
    """A repo process's host on a seeded remote, packing due after every build."""
    bare = tmp_path / "cfg-app.git"
    seed_repo(bare)
    config = make_config(bare.as_uri())
    init = HostInit(
        repo="cfg-app",
        repo_config=config.repos["cfg-app"],
        config=config,
        path=tmp_path / "clone.git",
        log_level="INFO",
        log_secrets=[],
        gil_switch_interval_ms=0.5,
        memory_pack_bytes=1,
    )
    return RepoHost(init)


def test_builds_wait_for_a_packing_that_fell_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A packing held back (as a starved packing process is) while the next one is due:
    the flush waits for it instead of letting builds pile more objects on, and what it
    packed leaves memory."""
    host = _host(tmp_path)
    gate = threading.Event()
    offload: Callable[..., Any] = host.packing._elsewhere

    def held_back(fn: Callable[..., Any], *args: Any) -> Any:
        assert gate.wait(30), "the test never released packing"
        return offload(fn, *args)

    monkeypatch.setattr(host.packing, "_elsewhere", held_back)
    store = host.store
    try:
        host.build([introduce("a" * 40)], False, 0.0)
        host.flush()  # starts a packing, which waits on the gate
        assert store.held_count > 0
        host.build([introduce("b" * 40)], False, 0.0)
        held = store.held_count
        flushing = threading.Thread(target=host.flush)
        with caplog.at_level(logging.WARNING, logger="waveline.services.git_writer.host"):
            flushing.start()
            flushing.join(0.5)
            assert flushing.is_alive(), "flush went on while packing was behind"
            gate.set()
            flushing.join(30)
        assert not flushing.is_alive()
        assert store.held_count < held  # the first build's objects were packed and dropped
        assert any("packing fell behind" in r.getMessage() for r in caplog.records)
    finally:
        gate.set()
        host.close()
    assert store.held_count == 0  # close packs the rest


def test_a_packing_process_that_packed_many_objects_is_replaced(tmp_path: Path) -> None:
    """Its heap (a merge's index of every object it copied) is freed but not returned to
    the system: past the limit the next round gets a new process, and packing still works."""
    host = _host(tmp_path)
    host.packing.recycle_after = 1
    store = host.store
    try:
        first = host.packing._offload
        for sha in ("a" * 40, "b" * 40):
            host.build([introduce(sha)], False, 0.0)
            host.flush()
        host._wait_for_packing()
        assert host.packing._offload is not first
        assert store.held_count == 0  # what the rounds held is packed
    finally:
        host.close()

"""The git-writer's objects held in memory stay bounded when packing falls behind."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import image_set, make_config
from waveline.devstack.demo import seed_repo
from waveline.services.git_writer import host as host_module
from waveline.services.git_writer.host import HostInit, RepoHost
from waveline.shared.models.git import IntroduceImages
from waveline.shared.models.images import ImageSetAnnounced


def _introduce(app_sha: str) -> IntroduceImages:
    return IntroduceImages(
        command_id=uuid.uuid4(),
        repo="cfg-app",
        issued_at=datetime.now(UTC),
        pipeline="app",
        wave="staging",
        app_sha=app_sha,
        images=ImageSetAnnounced.model_validate(image_set(app_sha)).images,
    )


def test_builds_wait_for_a_packing_that_fell_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A packing held back (as a starved packing process is) while the next one is due:
    the flush waits for it instead of letting builds pile more objects on, and what it
    packed leaves memory."""
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
        memory_pack_bytes=1,  # packing is due after every build
    )
    host = RepoHost(init)
    gate = threading.Event()
    offload: Callable[..., Any] = host._elsewhere

    def held_back(fn: Callable[..., Any], *args: Any) -> Any:
        assert gate.wait(30), "the test never released packing"
        return offload(fn, *args)

    monkeypatch.setattr(host, "_elsewhere", held_back)
    memory = host.applier.repo.memory
    assert memory is not None
    try:
        host.build([_introduce("a" * 40)], False, 0.0)
        host.flush()  # starts a packing, which waits on the gate
        assert len(memory) > 0
        host.build([_introduce("b" * 40)], False, 0.0)
        held = len(memory)
        flushing = threading.Thread(target=host.flush)
        with caplog.at_level(logging.WARNING, logger="waveline.services.git_writer.host"):
            flushing.start()
            flushing.join(0.5)
            assert flushing.is_alive(), "flush went on while packing was behind"
            gate.set()
            flushing.join(30)
        assert not flushing.is_alive()
        assert len(memory) < held  # the first build's objects were packed and dropped
        assert any("packing fell behind" in r.getMessage() for r in caplog.records)
    finally:
        gate.set()
        host.close()
    assert len(memory) == 0  # close packs the rest


def test_a_packing_process_that_packed_many_objects_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its heap (a merge's index of every object it copied) is freed but not returned to
    the system: past the limit the next round gets a new process, and packing still works."""
    monkeypatch.setattr(host_module, "RECYCLE_PACKING_AFTER", 1)
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
    host = RepoHost(init)
    memory = host.applier.repo.memory
    assert memory is not None
    try:
        first = host._offload
        for sha in ("a" * 40, "b" * 40):
            host.build([_introduce(sha)], False, 0.0)
            host.flush()
        host._wait_for_packing()
        assert host._offload is not first
        assert len(memory) == 0  # what the rounds held is packed
    finally:
        host.close()

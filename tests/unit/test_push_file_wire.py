"""``git receive-pack`` for file:// remotes (pushwire.FileWire), run as a stand-in ``git``
script on PATH: its arguments and environment, and a deadline that ends its whole process
group, a process that ignores SIGTERM or stops reading included."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from waveline.shared.errors import GitUnreachable
from waveline.shared.gitengine import pushwire, sendpack

TIMEOUTS = sendpack.Timeouts(connect_s=1.0, io_s=0.5)


def fake_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """A ``git`` on PATH running ``body`` (sh); returns the folder it writes into."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "git"
    script.write_text(f"#!/bin/sh\ncd {tmp_path}\n{body}\n", encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_receive_pack_gets_the_path_after_dashes_and_a_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = fake_git(tmp_path, monkeypatch, 'printf "%s\\n" "$@" > args; env > env; printf 0000')
    for name in (
        "GIT_DIR",
        "GIT_QUARANTINE_PATH",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_CONFIG_KEY_0",
        "GIT_CONFIG_VALUE_0",
    ):
        monkeypatch.setenv(name, "/elsewhere")
    monkeypatch.setenv("WAVELINE_KEPT", "yes")
    wire = pushwire.FileWire("file:///srv/-cfg.git", TIMEOUTS)
    assert wire.advertise() == []
    wire.close()
    deadline = time.monotonic() + 5
    while not (out / "env").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (out / "args").read_text().splitlines() == ["receive-pack", "--", "/srv/-cfg.git"]
    names = {line.partition("=")[0] for line in (out / "env").read_text().splitlines()}
    assert "WAVELINE_KEPT" in names
    assert not {n for n in names if n.startswith(("GIT_DIR", "GIT_QUARANTINE", "GIT_CONFIG"))}


def test_a_silent_receive_pack_and_its_children_are_killed_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pushwire, "KILL_GRACE_S", 0.2)
    # SIGTERM ignored by the script and its child: only the group's SIGKILL ends them.
    out = fake_git(
        tmp_path, monkeypatch, "trap '' TERM\nsleep 30 &\necho $! > child\necho $$ > me\nwait"
    )
    wire = pushwire.FileWire(str(tmp_path / "cfg.git"), TIMEOUTS)
    started = time.monotonic()
    with pytest.raises(GitUnreachable, match="timed out") as info:
        wire.advertise()
    took = time.monotonic() - started
    wire.close()
    assert info.value.retriable
    assert took < 0.5 + 2 * 0.2 + 1.0
    for name in ("me", "child"):
        pid = int((out / name).read_text())
        deadline = time.monotonic() + 2
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not alive(pid), f"{name} ({pid}) still runs"


def test_a_receive_pack_that_stops_reading_cannot_hold_the_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pushwire, "KILL_GRACE_S", 0.2)
    fake_git(tmp_path, monkeypatch, "exec sleep 30")
    wire = pushwire.FileWire(str(tmp_path / "cfg.git"), TIMEOUTS)
    started = time.monotonic()
    # Far more than a pipe holds: the write itself would block for ever.
    with pytest.raises(GitUnreachable):
        wire.send(b"0000" + b"P" * (4 << 20))
    wire.close()
    assert time.monotonic() - started < 0.5 + 2 * 0.2 + 1.0

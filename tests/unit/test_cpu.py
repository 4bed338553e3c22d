"""shared/cpu.py against the running kernel: a weight set on a process in a session of
its own is what the kernel reports for it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from waveline.devstack import stack
from waveline.devstack.paths import StackPaths
from waveline.shared import cpu


@pytest.fixture
def sleeper() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_set_nice_weights_the_session_and_the_task(sleeper: int) -> None:
    assert cpu.set_nice(sleeper, 7)
    autogroup = Path(f"/proc/{sleeper}/autogroup")
    if autogroup.exists():
        assert autogroup.read_text().split()[-1] == "7"
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == 7
    assert cpu.nice_of(sleeper) == 7


@pytest.mark.parametrize("nice", [-1, 20])
def test_out_of_range_is_refused(sleeper: int, nice: int) -> None:
    with pytest.raises(ValueError, match="nice must be"):
        cpu.set_nice(sleeper, nice)
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == 0


def test_a_gone_process_is_not_an_error() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert cpu.set_nice(proc.pid, 5) is False


def test_own_nice_reads_what_set_nice_wrote() -> None:
    code = (
        "import os, sys; from waveline.shared import cpu; "
        "cpu.set_nice(os.getpid(), 4); print(cpu.own_nice())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        start_new_session=True,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "4"


def test_dev_up_refuses_an_unknown_weights_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WAVELINE_DEV_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("WAVELINE_DEV_CPU_WEIGHTS", "yes")
    assert stack.up(StackPaths.from_env()) == 2
    assert "WAVELINE_DEV_CPU_WEIGHTS must be on or off, not 'yes'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything started


def test_own_session_keeps_the_inherited_weight_lowered_by() -> None:
    # The child inherits nice 3 through its task, as from a weighted parent, then leaves
    # its parent's session for one of its own.
    code = (
        "import os; from waveline.shared import cpu; "
        "cpu.own_session(lower_by=2); print(os.getsid(0) == os.getpid(), cpu.own_nice())"
    )
    out = subprocess.run(
        ["nice", "-n", "3", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == ["True", "5"]

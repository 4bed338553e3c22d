"""Runs last (see conftest): no token or secret used anywhere in the suite appears in any
service's log — in-process services and real service processes alike (DESIGN §5)."""

from __future__ import annotations

import logging

import pytest

from tests.logscan import known_secrets, log_files


@pytest.mark.last
def test_no_secret_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.getbasetemp()
    for handler in logging.getLogger().handlers:
        handler.flush()
    secrets = known_secrets(base)
    files = list(log_files(base))
    assert any(f.name == "inprocess.log" for f in files)
    scanned = 0
    leaks: list[str] = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        scanned += len(text)
        leaks += [f"{path.relative_to(base)}: {s[:4]}…" for s in secrets if s in text]
    assert scanned > 0
    assert not leaks, f"secrets in logs: {leaks}"

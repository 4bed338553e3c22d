"""Runs last (see conftest): no token or secret used anywhere in the suite appears in any
service's log — in-process services and real service processes alike — nor in any dead
letter or any stored row (the notifier's delivery bodies among them) of any test's topics
and schema (README.md, Security; tests/logscan.py says how each is gathered)."""

from __future__ import annotations

import logging

import pytest

from tests.logscan import find_leaks, known_secrets, leftover_files, log_files


@pytest.mark.last
def test_no_secret_in_any_log_dead_letter_or_stored_row(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.getbasetemp()
    for handler in logging.getLogger().handlers:
        handler.flush()
    secrets = known_secrets(base)
    assert secrets
    assert any(f.name == "inprocess.log" for f in log_files(base))
    leaks, scanned = find_leaks(base, secrets)
    assert scanned > 0
    assert not leaks, f"secrets in logs, dead letters or stored rows: {leaks}"
    # Say what was covered: a run with integration tests kept their topics and tables.
    print(f"scanned {scanned} characters; {len(list(leftover_files(base)))} leftovers files")

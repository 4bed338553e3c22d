"""Runs last (see conftest): no token or secret used anywhere in the suite appears in any
service's log — in-process services and real service processes alike — nor in any dead
letter or any stored row (the notifier's delivery bodies among them) of any test's topics
and schema (README.md, Security; tests/logscan.py says how each is gathered).

``make test`` runs the suite over parallel workers first and this scan after them
(tests/suite.py): ``WAVELINE_SCAN_BASES`` (``os.pathsep``-separated) names the base temp
directories those workers wrote under, scanned beside this session's own."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.logscan import find_leaks, known_secrets, leftover_files, log_files


@pytest.mark.last
def test_no_secret_in_any_log_dead_letter_or_stored_row(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    elsewhere = [Path(p) for p in os.environ.get("WAVELINE_SCAN_BASES", "").split(os.pathsep) if p]
    bases = [tmp_path_factory.getbasetemp(), *elsewhere]
    secrets = set().union(*(known_secrets(base) for base in bases))
    assert secrets
    for base in bases:
        assert any(f.name == "inprocess.log" for f in log_files(base)), f"no logs under {base}"
    leaks: list[str] = []
    scanned = leftovers = 0
    for base in bases:
        found, chars = find_leaks(base, secrets)
        leaks += found
        scanned += chars
        leftovers += len(list(leftover_files(base)))
    assert scanned > 0
    assert not leaks, f"secrets in logs, dead letters or stored rows: {leaks}"
    # Say what was covered: a run with integration tests kept their topics and tables.
    print(f"scanned {scanned} characters; {leftovers} leftovers files")

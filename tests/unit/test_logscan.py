"""The suite's last test can fail: a secret planted in a log file, in a dead letter's copy or
in a stored row's copy is found, and so is a copy that could not be made whole.

The plants live outside the session's base temp directory, and their value is named so that
``known_secrets`` does not collect it: the suite's own scan must not trip over them.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import logscan
from tests.logscan import LEFTOVERS, UNREAD, find_leaks, known_secrets

PLANTED = "planted-value-3b9f0c2e7a"


@pytest.fixture
def base() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="logscan-") as tmp:
        yield Path(tmp)


def test_a_clean_run_has_no_leaks(base: Path) -> None:
    (base / "suite-logs").mkdir()
    (base / "suite-logs" / "inprocess.log").write_text("INFO all fine\n")
    leaks, scanned = find_leaks(base, [PLANTED])
    assert leaks == [] and scanned > 0


def test_a_secret_in_a_log_is_found(base: Path) -> None:
    (base / "t0" / "proc").mkdir(parents=True)
    (base / "t0" / "proc" / "git-writer.log").write_text(f"ERROR push to https://x:{PLANTED}@h\n")
    leaks, _ = find_leaks(base, [PLANTED])
    assert leaks == [f"t0/proc/git-writer.log: {PLANTED[:4]}…"]


@pytest.mark.parametrize(
    "line",
    [
        # A dead letter as keep_leftovers copies it, the secret JSON-escaped inside it.
        "t1.waveline.dlq: cfg-app\t"
        + logscan._text(json.dumps({"payload": json.dumps({"token": PLANTED})}).encode()),
        # A delivery row, its body a bytea.
        "deliveries: delivery_id=1\tbody=" + logscan._text(f'{{"k":"{PLANTED}"}}'.encode()),
    ],
    ids=["dead letter", "delivery body"],
)
def test_a_secret_in_a_dead_letter_or_a_stored_row_is_found(base: Path, line: str) -> None:
    (base / LEFTOVERS).mkdir()
    (base / LEFTOVERS / "t_abc.leftovers").write_text(line + "\n")
    leaks, _ = find_leaks(base, [PLANTED])
    assert leaks == [f"{LEFTOVERS}/t_abc.leftovers: {PLANTED[:4]}…"]


def test_an_escaped_secret_is_found_through_its_json() -> None:
    tricky = 'quote"and\\backslash-secret'
    copied = logscan._text(json.dumps({"payload": json.dumps({"t": tricky})}))
    assert tricky in copied


def test_a_copy_that_could_not_be_made_is_reported(base: Path) -> None:
    (base / LEFTOVERS).mkdir()
    (base / LEFTOVERS / "t_x.leftovers").write_text(f"{UNREAD}tables of t_x: OSError\n")
    leaks, _ = find_leaks(base, [PLANTED])
    assert leaks == [f"{LEFTOVERS}/t_x.leftovers: {UNREAD}tables of t_x: OSError"]


def test_known_secrets_collect_credential_named_constants_of_test_modules(base: Path) -> None:
    found = known_secrets(base)
    from tests import conftest

    assert conftest.CI_TOKEN in found
    # This module's own plant is not named like a credential.
    assert PLANTED not in found
    assert "ci-token-for-tests-0123456789" in found
    (base / "dev").mkdir()
    (base / "dev" / "secrets.env").write_text("WAVELINE_CI_TOKEN=generated-dev-token-1234\n")
    assert "generated-dev-token-1234" in known_secrets(base)

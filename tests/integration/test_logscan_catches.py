"""The suite scan can fail on the real path: a value planted in a dead letter on a test's real
``waveline.dlq`` and in a delivery body stored in its real PostgreSQL schema is copied by
``keep_leftovers`` (what ``isolated_settings`` runs before dropping them) and found by
``find_leaks``, the last test's scan.

The copies go to a directory outside the session's base, and the planted values are not
named like credentials, so the suite's own last test does not collect them.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.logscan import find_leaks, keep_leftovers
from tests.support import produce
from waveline.shared.config import Settings
from waveline.shared.models.dlq import DeadLetter

pytestmark = pytest.mark.timeout(60)

IN_LETTER = 'letter-plant-"quoted"-8c1d'
IN_BODY = "body-plant-4e7a90"
NOWHERE = "nowhere-plant-2f6b13"


async def _store_delivery(settings: Settings, body: bytes) -> None:
    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(),
        server_settings={"search_path": settings.database_schema},
    )
    try:
        await conn.execute(
            "INSERT INTO deliveries (delivery_id, kind, target, pipeline, promotion_id,"
            " event_type, source_topic, body, content_type)"
            " VALUES ($1, 'notification', 'notification:x', NULL, NULL, 'io.waveline.test',"
            " 't', $2, 'application/json')",
            uuid.uuid4(),
            body,
        )
    finally:
        await conn.close()


async def test_planted_values_in_a_dead_letter_and_a_stored_body_are_found(
    settings: Settings,
) -> None:
    letter = DeadLetter.about(
        f'{{"token": "{IN_LETTER}"}}'.encode(),
        service="git-writer",
        source_topic="waveline.git.commands",
        error_code="invalid_message",
        reason="planted",
        retriable=False,
    )
    await produce(settings, "waveline.dlq", [letter.to_bytes()])
    await _store_delivery(settings, f'{{"data": "{IN_BODY}"}}'.encode())
    with tempfile.TemporaryDirectory(prefix="logscan-real-") as tmp:
        copy = await keep_leftovers(settings, into=Path(tmp))
        assert copy is not None
        leaks, scanned = find_leaks(Path(tmp), [IN_LETTER, IN_BODY, NOWHERE])
    assert scanned > 0
    where = copy.relative_to(tmp)
    assert sorted(leaks) == sorted([f"{where}: {IN_LETTER[:4]}…", f"{where}: {IN_BODY[:4]}…"])
    assert not any("UNREAD" in leak for leak in leaks)


async def test_a_clean_test_leaves_nothing_to_find(settings: Settings) -> None:
    with tempfile.TemporaryDirectory(prefix="logscan-real-") as tmp:
        copy = await keep_leftovers(settings, into=Path(tmp))
        assert copy is not None
        text = copy.read_text()
        leaks, _ = find_leaks(Path(tmp), [IN_LETTER, IN_BODY, NOWHERE])
    assert leaks == []
    # The schema's tables were read (schema_migrations holds the applied migrations).
    assert "UNREAD" not in text
    assert "schema_migrations: " in text

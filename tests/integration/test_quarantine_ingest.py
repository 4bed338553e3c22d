"""Ingest's side of rollback quarantines on the real Kafka and PostgreSQL: a quarantined set
is refused (409) unless announced with ``force`` (which lifts it, recording the CI token's
name), a bad ``force`` is 422, and ``rollback`` with ``hold`` publishes both commands in
order (docs/gates.md, Rollback quarantines)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import CI_TOKEN, OPERATOR_TOKEN
from tests.support import APP_SHA, image_set, read_topic
from waveline.shared import quarantine_store
from waveline.shared.config import Settings

pytestmark = pytest.mark.timeout(60)
CI = {"Authorization": f"Bearer {CI_TOKEN}"}
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


async def db(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(
        settings.database_url.get_secret_value(),
        server_settings={"search_path": settings.database_schema},
    )


async def test_a_quarantined_set_is_refused_unless_forced(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    conn = await db(settings)
    try:
        await quarantine_store.quarantine(
            conn, "app", APP_SHA, wave="production", actor="alice", reason="rolled back to 1234"
        )
        refused = await client.post("/v1/images", json=image_set(APP_SHA), headers=CI)
        assert refused.status == 409
        doc = await refused.json()
        assert doc["error"] == "quarantined"
        assert "rolled back out of 'production' by alice" in doc["detail"]
        bare = await client.post(
            f"/v1/pipelines/app/images?app_sha={APP_SHA}",
            json=image_set(APP_SHA)["images"],
            headers=CI,
        )
        assert bare.status == 409
        bad = await client.post(
            "/v1/images", json={**image_set(APP_SHA), "force": "yes"}, headers=CI
        )
        assert bad.status == 422
        assert await quarantine_store.in_force(conn, "app", [APP_SHA])

        forced = await client.post(
            "/v1/images", json={**image_set(APP_SHA), "force": True}, headers=CI
        )
        assert forced.status == 202, await forced.text()
        assert await quarantine_store.in_force(conn, "app", [APP_SHA]) == {}
        lifted_by = await conn.fetchval(
            "SELECT lifted_by FROM quarantined_sets WHERE app_sha = $1", APP_SHA
        )
        assert lifted_by == "ci"  # the CI token's name
    finally:
        await conn.close()
    # The forced announcement was published as announced (without the request's flag).
    (announced,) = await read_topic(
        settings.kafka_bootstrap, f"{settings.topic_prefix}waveline.images", until=bool
    )
    assert announced["app_sha"] == APP_SHA and "force" not in announced


async def test_rollback_with_hold_sends_the_rollback_then_the_hold(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    resp = await client.post(
        "/v1/pipelines/app/waves/staging/rollback",
        json={"to": "previous", "hold": True},
        headers=OPERATOR,
    )
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    commands = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.operator",
        until=lambda ms: len(ms) >= 2,
    )
    assert [(c["action"], c["wave"], c["to"]) for c in commands] == [
        ("rollback", "staging", "previous"),
        ("hold", "staging", None),
    ]
    assert [c["event_id"] for c in commands] == [answer["event_id"], answer["hold_event_id"]]
    assert {c["actor"] for c in commands} == {"operator"}


async def test_unquarantine_needs_an_operator_token_and_a_real_set(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    conn = await db(settings)
    try:
        await quarantine_store.quarantine(
            conn, "app", APP_SHA, wave="staging", actor="alice", reason="rolled back to 1234"
        )
        path = f"/v1/pipelines/app/sets/{APP_SHA}/unquarantine"
        assert (await client.post(path)).status == 401
        assert (await client.post(path, headers=CI)).status == 403  # CI may not lift it
        bad = await client.post("/v1/pipelines/app/sets/not-a-sha/unquarantine", headers=OPERATOR)
        assert bad.status == 422
        assert await quarantine_store.in_force(conn, "app", [APP_SHA])  # nothing lifted yet
        lifted = await client.post(path, headers=OPERATOR)
        assert lifted.status == 200
        assert (await lifted.json())["was"]["actor"] == "alice"
        assert await quarantine_store.in_force(conn, "app", [APP_SHA]) == {}
    finally:
        await conn.close()

"""Ingest writes into approve, hold and release what they act on, looked up in PostgreSQL
when it accepts them (docs/security.md, Deploy reports, checks, approvals)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import OPERATOR_TOKEN
from tests.support import APP_SHA, count_topic, read_topic
from waveline.shared.config import Settings

OPS = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
OLDER = "1" * 40


async def db(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(
        settings.database_url.get_secret_value(),
        server_settings={"search_path": settings.database_schema},
    )


async def waiting(settings: Settings, wave: str, app_sha: str, status: str = "waiting") -> None:
    conn = await db(settings)
    try:
        await conn.execute(
            "INSERT INTO promotions (promotion_id, pipeline, wave, from_wave, app_sha, kind,"
            " status) VALUES ($1, 'app', $2, 'staging', $3, 'promote', $4)",
            uuid.uuid4(),
            wave,
            app_sha,
            status,
        )
    finally:
        await conn.close()


async def post(client: TestClient[Any, Any], wave: str, action: str) -> tuple[int, Any]:
    resp = await client.post(f"/v1/pipelines/app/waves/{wave}/{action}", headers=OPS)
    return resp.status, await resp.json()


async def test_approve_names_the_set_waiting_at_the_gate(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    status, answer = await post(client, "internal", "approve")
    assert (status, answer["error"]) == (409, "nothing_waiting")
    await waiting(settings, "internal", OLDER, status="superseded")
    await waiting(settings, "internal", APP_SHA)
    status, answer = await post(client, "internal", "approve")
    assert (status, answer["app_sha"]) == (202, APP_SHA)
    (command,) = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.operator",
        until=lambda m: len(m) >= 1,
    )
    assert (command["action"], command["app_sha"], command["hold_id"]) == (
        "approve",
        APP_SHA,
        None,
    )


async def test_hold_and_release_name_what_they_hold(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    topic = f"{settings.topic_prefix}waveline.operator"
    status, answer = await post(client, "internal", "release")
    assert (status, answer["error"]) == (409, "not_held")
    assert await count_topic(settings.kafka_bootstrap, topic) == 0
    # Nothing waits: the hold holds the gate all the same, naming no set.
    assert (await post(client, "internal", "hold"))[0] == 202
    await waiting(settings, "production", APP_SHA)
    assert (await post(client, "production", "hold"))[0] == 202
    holds = await read_topic(settings.kafka_bootstrap, topic, until=lambda m: len(m) >= 2)
    assert [(m["wave"], m["app_sha"]) for m in holds] == [
        ("internal", None),
        ("production", APP_SHA),
    ]
    # The promoter is not running here: the hold in force is written as it would.
    hold_id = uuid.UUID(holds[1]["event_id"])
    conn = await db(settings)
    try:
        await conn.execute(
            "INSERT INTO wave_gates (pipeline, wave, held, hold_id, held_app_sha, changed_at)"
            " VALUES ('app', 'production', true, $1, $2, now())",
            hold_id,
            APP_SHA,
        )
    finally:
        await conn.close()
    status, _ = await post(client, "production", "release")
    assert status == 202
    commands = await read_topic(settings.kafka_bootstrap, topic, until=lambda m: len(m) >= 3)
    release = commands[2]
    assert (release["action"], release["hold_id"], release["app_sha"]) == (
        "release",
        str(hold_id),
        APP_SHA,
    )

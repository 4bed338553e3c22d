"""Ingest writes into approve, hold and release what they act on, looked up in PostgreSQL
when it accepts them (docs/security.md, Deploy reports, checks, approvals)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import OPERATOR_TOKEN
from tests.support import APP_SHA, count_topic, produce, read_topic, running
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig

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


async def test_a_replayed_release_cannot_end_a_later_hold(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    """hold → release → hold again; the first release replayed on ``waveline.operator``
    (and the first hold, after its release) change nothing: the gate stays held."""
    topic = f"{settings.topic_prefix}waveline.operator"
    async with (
        running(["ingest", "promoter"], settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        assert (await post(client, "internal", "hold"))[0] == 202
        await held(settings, True)
        assert (await post(client, "internal", "release"))[0] == 202
        await held(settings, False)
        assert (await post(client, "internal", "hold"))[0] == 202
        await held(settings, True)
        first_hold, release, _ = await read_topic(
            settings.kafka_bootstrap, topic, until=lambda m: len(m) >= 3
        )
        replays = [json.dumps(release).encode(), json.dumps(first_hold).encode()]
        await produce(settings, "waveline.operator", replays, key=b"app")
        letters = await read_topic(
            settings.kafka_bootstrap,
            f"{settings.topic_prefix}waveline.dlq",
            until=lambda m: len(m) >= 2,
        )
        assert {m["error_code"] for m in letters} == {"operator_command_refused"}
        assert any("another hold" in m["reason"] for m in letters)
        assert any("replayed hold" in m["reason"] for m in letters)
        await held(settings, True)


async def held(settings: Settings, state: bool) -> None:
    async with asyncio.timeout(20):
        while True:
            conn = await db(settings)
            try:
                now = await conn.fetchval(
                    "SELECT held FROM wave_gates WHERE pipeline = 'app' AND wave = 'internal'"
                )
            finally:
                await conn.close()
            if now is state:
                return
            await asyncio.sleep(0.1)

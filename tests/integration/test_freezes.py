"""Manual freezes and break-glass through ingest's HTTP API and the CLI, on real PostgreSQL
and Kafka (docs/gates.md, Freeze windows): the operator token is required and its name
recorded, a reason is required, the gate reads what was recorded."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import CI_TOKEN, OPERATOR_TOKEN
from tests.support import APP_SHA, read_topic
from waveline.cli.main import main
from waveline.services.ingest.app import create_app
from waveline.services.ingest.context import CONTEXT_KEY, IngestContext
from waveline.services.promoter import freeze_store
from waveline.services.promoter.freeze import break_glass_for, wave_freeze
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.runtime import bootstrap

OPS = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def pool_of(client: TestClient[Any, Any]) -> asyncpg.Pool:
    ctx = client.app[CONTEXT_KEY]
    assert isinstance(ctx, IngestContext)
    return ctx.runtime.pool


async def send(
    client: TestClient[Any, Any], path: str, body: Any = None, token: str | None = OPERATOR_TOKEN
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with asyncio.timeout(10):
        resp = await client.post(path, json=body, headers=headers)
        return resp.status, await resp.json()


async def test_freeze_and_unfreeze_over_http(
    client: TestClient[Any, Any], config: WavelineConfig
) -> None:
    path = "/v1/pipelines/app/freeze"
    assert (await send(client, path, {"reason": "x"}, token=None))[0] == 401
    assert (await send(client, path, {"reason": "x"}, token=CI_TOKEN))[0] == 403
    assert (await send(client, "/v1/freeze", {"reason": "x"}, token=CI_TOKEN))[0] == 403
    for body in ({}, {"reason": "   "}, {"reason": 3}):
        status, answer = await send(client, path, body)
        assert (status, answer["detail"][0]["field"]) == (422, "reason"), body
    assert (await send(client, path))[0] == 400  # no body at all
    assert (await send(client, "/v1/pipelines/app/waves/nowhere/freeze", {"reason": "x"}))[0] == (
        404
    )
    assert (await send(client, "/v1/pipelines/nope/freeze", {"reason": "x"}))[0] == 404
    pool = pool_of(client)
    assert await pool.fetchval("SELECT count(*) FROM freezes") == 0

    status, answer = await send(client, path, {"reason": "incident 42"})
    assert status == 201
    frozen = answer["freeze"]
    assert (frozen["scope"], frozen["pipeline"], frozen["wave"], frozen["actor"]) == (
        "pipeline",
        "app",
        None,
        "operator",
    )
    assert (await send(client, "/v1/freeze", {"reason": "code freeze"}))[0] == 201
    listed = await client.get("/v1/freezes", headers=OPS)
    assert [f["reason"] for f in (await listed.json())["freezes"]] == ["incident 42", "code freeze"]
    assert (await client.get("/v1/freezes")).status == 401

    # The gate reads them: every wave of app is frozen, with no end.
    manual = await freeze_store.manual_freezes(pool, "app")
    now = datetime.now(UTC)
    verdict = wave_freeze("app", config.pipelines["app"], "production", manual, now)
    assert (verdict.waiting_for, verdict.until) == ("freeze", None)
    assert "frozen by operator: incident 42" in verdict.reason

    # Unfreezing the pipeline lifts its own freeze; the whole line's stays in force.
    status, answer = await send(client, "/v1/pipelines/app/unfreeze")
    assert status == 200
    assert [f["reason"] for f in answer["lifted"]] == ["incident 42"]
    assert [f["reason"] for f in answer["in_force"]] == ["code freeze"]
    row = await pool.fetchrow("SELECT lifted_at, lifted_by FROM freezes WHERE scope = 'pipeline'")
    assert row is not None and row["lifted_by"] == "operator" and row["lifted_at"] is not None
    assert (await send(client, "/v1/unfreeze", token=CI_TOKEN))[0] == 403
    status, answer = await send(client, "/v1/unfreeze", {})
    assert (status, len(answer["lifted"]), answer["in_force"]) == (200, 1, [])
    assert await freeze_store.manual_freezes(pool, "app") == []
    assert wave_freeze("app", config.pipelines["app"], "production", [], now).is_open


async def test_break_glass_is_recorded_with_who_and_why(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    pool = pool_of(client)
    path = "/v1/pipelines/app/waves/production/approve"
    glass = {"break_glass": {"reason": "hotfix for incident 42"}}
    # Nothing waits at the gate: nothing to let through, nothing recorded.
    status, answer = await send(client, path, glass)
    assert (status, answer["error"]) == (409, "nothing_waiting")
    await pool.execute(
        "INSERT INTO promotions (promotion_id, pipeline, wave, from_wave, app_sha, kind, status)"
        " VALUES ($1, 'app', 'production', 'internal', $2, 'promote', 'waiting')",
        uuid.uuid4(),
        APP_SHA,
    )
    assert (await send(client, path, glass, token=None))[0] == 401
    assert (await send(client, path, glass, token=CI_TOKEN))[0] == 403
    bad: list[dict[str, Any]] = [{"break_glass": {}}, {"break_glass": {"reason": ""}}]
    for body in bad:
        status, answer = await send(client, path, body)
        assert (status, answer["detail"][0]["field"]) == (422, "break_glass.reason")
    assert await pool.fetchval("SELECT count(*) FROM break_glasses") == 0

    status, answer = await send(client, path, glass)
    assert status == 202
    assert answer["break_glass"] == {"reason": "hotfix for incident 42", "actor": "operator"}
    row = await pool.fetchrow("SELECT * FROM break_glasses")
    assert row is not None
    assert (row["break_glass_id"], row["app_sha"], row["actor"], row["reason"]) == (
        uuid.UUID(answer["event_id"]),
        APP_SHA,
        "operator",
        "hotfix for incident 42",
    )
    (command,) = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.operator",
        until=lambda m: len(m) >= 1,
    )
    assert (command["action"], command["event_id"], command["app_sha"]) == (
        "approve",
        answer["event_id"],
        APP_SHA,
    )
    records = await freeze_store.break_glasses(pool, "app", "production", APP_SHA)
    found = break_glass_for(records, pipeline="app", wave="production", app_sha=APP_SHA)
    assert found is not None and (found.actor, found.created_at) == ("operator", row["created_at"])
    assert await freeze_store.break_glasses(pool, "app", "internal", APP_SHA) == []


@pytest.fixture
async def ingest_url(
    settings: Settings, config: WavelineConfig, secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    runtime = bootstrap("ingest", settings, config, secrets)
    await runtime.start()
    server = TestServer(create_app(runtime))
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    monkeypatch.setenv("WAVELINE_URL", url)
    monkeypatch.setenv("WAVELINE_OPERATOR_TOKEN", OPERATOR_TOKEN)
    yield url
    await server.close()
    await runtime.stop()


async def cli(*argv: str) -> int:
    async with asyncio.timeout(20):
        return await asyncio.to_thread(main, list(argv))


async def test_cli_freeze_and_unfreeze(
    ingest_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    del ingest_url
    assert await cli("freeze", "app", "--wave", "production", "--reason", "release day") == 0
    assert "frozen: wave production of app by operator" in capsys.readouterr().out
    assert await cli("freeze", "--all", "--reason", "year end") == 0
    assert await cli("freeze", "--all", "--wave", "production", "--reason", "x") == 1
    assert "--wave needs a pipeline" in capsys.readouterr().err
    assert await cli("freeze", "app", "--wave", "nowhere", "--reason", "x") == 1
    assert "HTTP 404" in capsys.readouterr().err

    assert await cli("unfreeze", "app", "--wave", "production") == 0
    out = capsys.readouterr().out
    assert "lifted: wave production of app by operator" in out
    assert "still frozen: every pipeline by operator" in out and "year end" in out
    assert await cli("unfreeze", "app") == 0
    assert "nothing was frozen at that scope" in capsys.readouterr().out

    monkeypatch.setenv("WAVELINE_OPERATOR_TOKEN", CI_TOKEN)
    assert await cli("unfreeze", "--all") == 1
    assert "HTTP 403" in capsys.readouterr().err
    monkeypatch.delenv("WAVELINE_OPERATOR_TOKEN")
    assert await cli("unfreeze", "--all") == 1
    assert "set WAVELINE_OPERATOR_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("WAVELINE_OPERATOR_TOKEN", OPERATOR_TOKEN)
    assert await cli("unfreeze", "--all") == 0

    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(),
        server_settings={"search_path": settings.database_schema},
    )
    try:
        rows = await conn.fetch("SELECT scope, reason, lifted_by FROM freezes ORDER BY created_at")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("wave", "release day", "operator"),
        ("all", "year end", "operator"),
    ]

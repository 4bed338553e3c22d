"""The freeze gate in the running promoter (docs/gates.md, Freeze windows): a promotion
waits while a freeze window covers its wave and goes when the window ends; during a manual
freeze an approval alone does not let it through, a break-glass approval does."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import CI_TOKEN, OPERATOR_TOKEN
from tests.support import APP_SHA, image_set, running
from waveline.services.ingest.app import create_app
from waveline.services.promoter.ids import promotion_id
from waveline.shared.config import Secrets, Settings, WavelineConfig

OPS = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
CFG_SHA = "c" * 40
INTO_INTERNAL = promotion_id("app", "internal", APP_SHA, "promote")
INTO_PRODUCTION = promotion_id("app", "production", APP_SHA, "promote")


async def waiting_at_both_gates(pool: asyncpg.Pool) -> None:
    """Staging and internal have run APP_SHA for an hour (bakes long over); its promotions
    into internal and into production wait at their gates."""
    await pool.execute(
        "INSERT INTO image_sets (pipeline, app_sha, images, event_id)"
        " VALUES ('app', $1, $2::jsonb, $3)",
        APP_SHA,
        json.dumps(image_set()["images"]),
        uuid.uuid4(),
    )
    since = datetime.now(UTC) - timedelta(hours=1)
    for pid, source, target in [
        (INTO_INTERNAL, "staging", "internal"),
        (INTO_PRODUCTION, "internal", "production"),
    ]:
        await pool.execute(
            "INSERT INTO wave_runs (pipeline, wave, app_sha, cfg_sha, since)"
            " VALUES ('app', $1, $2, $3, $4)",
            source,
            APP_SHA,
            CFG_SHA,
            since,
        )
        await pool.execute(
            "INSERT INTO promotions (promotion_id, pipeline, wave, from_wave, app_sha, kind,"
            " status, cfg_sha) VALUES ($1, 'app', $2, $3, $4, 'promote', 'waiting', $5)",
            pid,
            target,
            source,
            APP_SHA,
            CFG_SHA,
        )


async def status_of(pool: asyncpg.Pool, pid: uuid.UUID) -> str:
    found: str = await pool.fetchval("SELECT status FROM promotions WHERE promotion_id = $1", pid)
    return found


async def sent(pool: asyncpg.Pool, pid: uuid.UUID, timeout_s: float) -> datetime:
    """When the promotion left its gate (polled); fails after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while await status_of(pool, pid) == "waiting":  # noqa: ASYNC110 (a table has no events)
            await asyncio.sleep(0.1)
    return datetime.now(UTC)


def with_window(config: WavelineConfig, start: datetime, end: datetime) -> WavelineConfig:
    """``config`` with a one-off freeze of production from ``start`` to ``end``."""
    doc = config.model_dump(mode="json")
    doc["pipelines"]["app"]["waves"][2]["freeze"] = {
        "ranges": [{"start": start.isoformat(), "end": end.isoformat(), "reason": "deploy"}]
    }
    return WavelineConfig.model_validate(doc)


async def test_freeze_window_manual_freeze_and_break_glass(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    end = datetime.now(UTC) + timedelta(seconds=8)
    frozen = with_window(config, end - timedelta(hours=1), end)
    async with (
        running(["ingest", "promoter"], settings, frozen, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        pool = rts["promoter"].pool

        async def post(path: str, body: dict[str, Any]) -> int:
            async with asyncio.timeout(10):
                resp = await client.post(path, json=body, headers=OPS)
                return resp.status

        internal = "/v1/pipelines/app/waves/internal"
        assert await post(f"{internal}/freeze", {"reason": "incident 42"}) == 201
        await waiting_at_both_gates(pool)
        # Approvals alone: production's window and internal's manual freeze hold both.
        assert await post("/v1/pipelines/app/waves/production/approve", {}) == 202
        assert await post(f"{internal}/approve", {}) == 202
        await asyncio.sleep(1.5)  # three gate ticks
        # Room left for the gate to have sent production's early had it not waited.
        assert datetime.now(UTC) < end - timedelta(seconds=1), "the promoter started late"
        assert await status_of(pool, INTO_INTERNAL) == "waiting"
        assert await status_of(pool, INTO_PRODUCTION) == "waiting"

        glass = {"break_glass": {"reason": "hotfix for incident 42"}}
        assert await post(f"{internal}/approve", glass) == 202
        await sent(pool, INTO_INTERNAL, timeout_s=15)
        assert await pool.fetchval("SELECT count(*) FROM freezes WHERE lifted_at IS NULL") == 1

        left = await sent(pool, INTO_PRODUCTION, timeout_s=30)
    assert left >= end, f"sent at {left}, before the window's end {end}"
    assert left - end < timedelta(seconds=5)


async def test_a_break_glass_lets_an_introduction_through_a_freeze(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    """Introductions into the first wave freeze too (the default): an announced set waits,
    a plain approval of staging does not let it in, a break-glass one does."""
    into_staging = promotion_id("app", "staging", APP_SHA, "introduce")
    async with (
        running(["ingest", "promoter"], settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        pool = rts["promoter"].pool

        async def post(path: str, body: dict[str, Any], token: str = OPERATOR_TOKEN) -> int:
            async with asyncio.timeout(10):
                resp = await client.post(
                    path, json=body, headers={"Authorization": f"Bearer {token}"}
                )
                return resp.status

        assert await post("/v1/pipelines/app/freeze", {"reason": "incident 43"}) == 201
        assert await post("/v1/images", image_set(), token=CI_TOKEN) == 202
        async with asyncio.timeout(15):
            while await status_of(pool, into_staging) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert await status_of(pool, into_staging) == "waiting"
        assert await post("/v1/pipelines/app/waves/staging/approve", {}) == 202
        await asyncio.sleep(1.5)  # three gate ticks
        assert await status_of(pool, into_staging) == "waiting"
        glass = {"break_glass": {"reason": "hotfix for incident 43"}}
        assert await post("/v1/pipelines/app/waves/staging/approve", glass) == 202
        await sent(pool, into_staging, timeout_s=15)
        recorded = await pool.fetchrow("SELECT wave, app_sha, reason, actor FROM break_glasses")
    assert recorded is not None
    assert tuple(recorded) == ("staging", APP_SHA, "hotfix for incident 43", "operator")

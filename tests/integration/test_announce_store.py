"""The announcement's facts read in one statement before it is published
(services/ingest/announce_store.py) on the real PostgreSQL: a set never recorded, one recorded
with later attempts, one quarantined, one whose quarantine was lifted, and a forced read that
lifts; through ingest, a first announcement acquires one pool connection, and PostgreSQL too
slow leaves the announcement accepted as a first one."""

from __future__ import annotations

import asyncio
import contextvars
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import CI_TOKEN
from tests.infra import Infra
from tests.support import APP_SHA, fresh_schema, image_set
from waveline.services.ingest import announce_store, images, retry
from waveline.services.ingest.app import create_app
from waveline.shared import quarantine_store
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.runtime import Runtime, bootstrap

pytestmark = pytest.mark.timeout(60)
CI = {"Authorization": f"Bearer {CI_TOKEN}"}
OTHER_SHA = "3333333333333333333333333333333333333333"


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    async with fresh_schema(infra.database_url) as (_, pool):
        yield pool


async def record_set(conn: asyncpg.Pool, app_sha: str, images_doc: dict[str, Any]) -> None:
    """What the promoter records of a set it handled."""
    await conn.execute(
        "INSERT INTO image_sets (pipeline, app_sha, images, event_id) VALUES ('app', $1, $2, $3)",
        app_sha,
        json.dumps(images_doc),
        uuid.uuid4(),
    )


async def test_a_set_never_recorded_is_neither_quarantined_nor_known(pool: asyncpg.Pool) -> None:
    await record_set(pool, OTHER_SHA, {"api": {}})
    await quarantine_store.quarantine(pool, "app", OTHER_SHA, wave="prod", actor="a", reason="r")
    facts = await announce_store.announce_facts(pool, "app", APP_SHA)
    assert facts == announce_store.AnnounceFacts(in_force=None, lifted=None, known=None)


async def test_a_recorded_set_has_its_images_and_newest_attempt(pool: asyncpg.Pool) -> None:
    doc = image_set()["images"]
    await record_set(pool, APP_SHA, doc)
    first = await announce_store.announce_facts(pool, "app", APP_SHA)
    assert first.known == announce_store.KnownImages(doc, 1)
    for attempt in (2, 3):
        await pool.execute(
            "INSERT INTO set_attempts (pipeline, app_sha, attempt, command_id, source)"
            " VALUES ('app', $1, $2, $3, 'retry')",
            APP_SHA,
            attempt,
            uuid.uuid4(),
        )
    later = await announce_store.announce_facts(pool, "app", APP_SHA)
    assert later.known == announce_store.KnownImages(doc, 3)
    assert later.in_force is None
    # Another pipeline's set of the same sha is another set.
    assert (await announce_store.announce_facts(pool, "other", APP_SHA)).known is None


async def test_a_quarantine_is_in_force_until_lifted(pool: asyncpg.Pool) -> None:
    await record_set(pool, APP_SHA, {"api": {}})
    await quarantine_store.quarantine(
        pool, "app", APP_SHA, wave="production", actor="alice", reason="rolled back"
    )
    facts = await announce_store.announce_facts(pool, "app", APP_SHA)
    assert facts.in_force is not None and facts.lifted is None
    assert (facts.in_force.wave, facts.in_force.actor, facts.in_force.reason) == (
        "production",
        "alice",
        "rolled back",
    )
    assert facts.known is not None  # one statement answers both
    await quarantine_store.lift(pool, "app", APP_SHA, "bob")
    assert (await announce_store.announce_facts(pool, "app", APP_SHA)).in_force is None


async def test_a_forced_read_lifts_the_quarantine_once(pool: asyncpg.Pool) -> None:
    await quarantine_store.quarantine(
        pool, "app", APP_SHA, wave="production", actor="alice", reason="rolled back"
    )
    forced = await announce_store.announce_facts(pool, "app", APP_SHA, lift_by="ci")
    assert forced.in_force is None and forced.known is None
    assert forced.lifted is not None and forced.lifted.actor == "alice"
    assert await quarantine_store.in_force(pool, "app", [APP_SHA]) == {}
    lifted_by = await pool.fetchval(
        "SELECT lifted_by FROM quarantined_sets WHERE app_sha = $1", APP_SHA
    )
    assert lifted_by == "ci"
    again = await announce_store.announce_facts(pool, "app", APP_SHA, lift_by="ci")
    assert again.lifted is None and again.in_force is None


@pytest.fixture
async def ingest(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> AsyncIterator[tuple[Runtime, TestClient[Any, Any]]]:
    runtime = bootstrap("ingest", settings, config, secrets)
    await runtime.start()
    async with TestClient(TestServer(create_app(runtime))) as client:
        yield runtime, client
    await runtime.stop()


async def test_a_first_announcement_acquires_one_connection(
    ingest: tuple[Runtime, TestClient[Any, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted only inside the announcement's handling (``images._accept``), so the
    runtime's own uses of the pool, if any, do not count."""
    runtime, client = ingest
    accepting: contextvars.ContextVar[bool] = contextvars.ContextVar("accepting", default=False)
    acquired: list[str] = []
    real_accept = images._accept
    real_acquire = asyncpg.Pool.acquire

    async def accept(*args: Any, **kwargs: Any) -> Any:
        token = accepting.set(True)
        try:
            return await real_accept(*args, **kwargs)
        finally:
            accepting.reset(token)

    def acquire(self: asyncpg.Pool, *args: Any, **kwargs: Any) -> Any:
        if self is runtime.pool and accepting.get():
            acquired.append("acquire")
        return real_acquire(self, *args, **kwargs)

    monkeypatch.setattr(images, "_accept", accept)
    monkeypatch.setattr(asyncpg.Pool, "acquire", acquire)
    resp = await client.post("/v1/images", json=image_set(), headers=CI)
    assert resp.status == 202, await resp.text()
    assert {k: v for k, v in (await resp.json()).items() if k != "event_id"} == {
        "outcome": "announced",
        "attempt": 1,
    }
    assert acquired == ["acquire"]
    # A set already recorded goes on to where its attempt is (one more connection).
    acquired.clear()
    await record_set(runtime.pool, OTHER_SHA, image_set(OTHER_SHA)["images"])
    again = await client.post("/v1/images", json=image_set(OTHER_SHA), headers=CI)
    assert again.status == 202, await again.text()
    assert (await again.json())["outcome"] == "pending"
    assert acquired == ["acquire", "acquire"]


async def test_postgres_too_slow_leaves_the_announcement_accepted(
    ingest: tuple[Runtime, TestClient[Any, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, client = ingest
    await quarantine_store.quarantine(
        runtime.pool, "app", APP_SHA, wave="production", actor="alice", reason="rolled back"
    )
    real: Callable[..., Awaitable[announce_store.AnnounceFacts]] = announce_store.announce_facts

    async def slow(*args: Any, **kwargs: Any) -> announce_store.AnnounceFacts:
        await asyncio.sleep(1.0)
        return await real(*args, **kwargs)

    monkeypatch.setattr(retry, "ANNOUNCE_LOOKUP_S", 0.1)
    monkeypatch.setattr(images, "ANNOUNCE_LOOKUP_S", 0.1)
    monkeypatch.setattr(announce_store, "announce_facts", slow)
    resp = await client.post("/v1/images", json=image_set(), headers=CI)
    # Quarantined, but not read in time: accepted (the promoter's gate still refuses it).
    assert resp.status == 202, await resp.text()
    doc = await resp.json()
    assert (doc["outcome"], doc["attempt"]) == ("announced", 1)

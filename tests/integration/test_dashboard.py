"""``GET /``: the dashboard page, on real PostgreSQL rows, with the operator token (access
without one: tests/integration/test_tokens.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import OPERATOR_TOKEN
from tests.support import APP_SHA, DIGEST_1, image_set
from waveline.services.ingest.context import CONTEXT_KEY, IngestContext

pytestmark = pytest.mark.timeout(60)

B_SHA = "2222222222222222222222222222222222222222"
CFG_SHA = "c" * 40
PENDING_SHA = "d" * 40
HOSTILE = '<script>alert("x")</script>'
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def pool_of(client: TestClient[Any, Any]) -> asyncpg.Pool:
    assert client.app is not None
    ctx = client.app[CONTEXT_KEY]
    assert isinstance(ctx, IngestContext)
    return ctx.runtime.pool


async def seed(pool: asyncpg.Pool, *, context: str = "ci/validate") -> None:
    """Staging runs APP_SHA; B waits to enter staging; one commit on auto awaits checks."""
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO image_sets (pipeline, app_sha, images, event_id) VALUES"
        " ('app', $1, $2::jsonb, $3), ('app', $4, $2::jsonb, $5)",
        APP_SHA,
        json.dumps(image_set()["images"]),
        uuid.uuid4(),
        B_SHA,
        uuid.uuid4(),
    )
    await pool.execute(
        "INSERT INTO wave_status (pipeline, wave, state, app_sha, cfg_sha, since)"
        " VALUES ('app', 'staging', 'running', $1, $2, $3)",
        APP_SHA,
        CFG_SHA,
        now - timedelta(minutes=3),
    )
    await pool.execute(
        "INSERT INTO wave_runs (pipeline, wave, app_sha, cfg_sha, since)"
        " VALUES ('app', 'staging', $1, $2, $3)",
        APP_SHA,
        CFG_SHA,
        now,
    )
    await pool.execute(
        "INSERT INTO promotions (promotion_id, pipeline, wave, from_wave, app_sha, kind, status)"
        " VALUES ($1, 'app', 'production', 'staging', $2, 'promote', 'waiting')",
        uuid.uuid4(),
        APP_SHA,
    )
    await pool.execute(
        "INSERT INTO wave_gates (pipeline, wave, held) VALUES ('app', 'internal', true)"
    )
    await pool.execute(
        "INSERT INTO auto_commits (repo, sha, pipeline, wave, app_sha)"
        " VALUES ('cfg-app', $1, 'app', 'staging', $2)",
        PENDING_SHA,
        B_SHA,
    )
    await pool.execute(
        "INSERT INTO commit_checks (repo, sha, context, state, reported_at)"
        " VALUES ('cfg-app', $1, $2, 'pending', now())",
        PENDING_SHA,
        context,
    )


async def test_page_lists_pipelines_waves_gates_and_pending_commits(
    client: TestClient[Any, Any],
) -> None:
    await seed(pool_of(client))
    resp = await client.get("/", headers=OPERATOR)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    page = await resp.text()
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "pipeline app" in page and "cfg-app" in page
    for wave in ("staging", "internal", "production", "staging-us", "prod-us"):
        assert wave in page
    assert page.index("staging") < page.index("internal") < page.index("production")
    assert "running" in page and APP_SHA[:12] in page and CFG_SHA[:12] in page
    assert f"docker.example.com/service1:{APP_SHA}" in page  # the running set's tag
    assert f"docker.example.com/service1@{DIGEST_1}" in page  # and digest
    assert "<b>hold</b>: internal is held" in page  # the promoter's reason
    assert "awaiting approval" in page  # production's gate
    assert PENDING_SHA[:12] in page and "ci/validate: pending" in page
    assert "http://" not in page and "https://" not in page  # self-contained


async def test_values_are_html_escaped(client: TestClient[Any, Any]) -> None:
    pool = pool_of(client)
    await seed(pool, context=HOSTILE)
    await pool.execute("UPDATE wave_status SET state = $1", HOSTILE)
    page = await (await client.get("/", headers=OPERATOR)).text()
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<script" not in page


async def test_proxied_needs_the_operator_token(client: TestClient[Any, Any]) -> None:
    proxied = {"X-Forwarded-For": "203.0.113.7"}
    resp = await client.get("/", headers=proxied)
    assert resp.status == 401
    assert (await resp.json())["error"] == "unauthorized"
    wrong = await client.get("/", headers={**proxied, "Authorization": "Bearer nope"})
    assert wrong.status == 403
    assert (await wrong.json())["error"] == "forbidden"
    ok = await client.get("/", headers={**proxied, "Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert ok.status == 200
    assert "pipeline app" in await ok.text()

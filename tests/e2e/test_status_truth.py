"""What a new user sees after two announcements and one green check, through the real
services: the older commit, on ``watched`` since the newer one was fast-forwarded, is not
pending; the older set's introduction is superseded, not "requested from CI" — in
``GET /v1/pipelines/{p}``, ``waveline status`` and the dashboard."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import OPERATOR_TOKEN
from tests.e2e.test_waves import Api
from tests.support import APP_SHA, running
from waveline.cli.ops import format_status
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
B_SHA = "2222222222222222222222222222222222222222"


async def watched_reaches(settings: Settings, sha: str) -> None:
    """Wait until the status-tracker recorded ``watched`` at ``sha`` (the fast-forward's
    git event handled), the moment the view can know."""
    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(),
        server_settings={"search_path": settings.database_schema},
    )
    try:
        async with asyncio.timeout(30):
            while True:
                if await conn.fetchval("SELECT 1 FROM watched_commits WHERE sha = $1", sha):
                    return
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def test_two_announcements_one_green_check(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    names = ["ingest", "git-writer", "status-tracker", "promoter"]
    async with (
        running(names, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        api = Api(client, remote)
        await api.announce(APP_SHA)
        first = await api.wait_auto(2, "A's commit")
        await api.announce(B_SHA)
        second = await api.wait_auto(3, "B's commit")
        await api.status(second, "success")  # only the newer commit gets a check
        await api.wait_master(second)
        await watched_reaches(settings, second)
        doc = await api.state()
        page = await (
            await client.get("/", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        ).text()

    # The older commit is on watched: never pending, whatever checks it got.
    assert [c["sha"] for c in doc["pending_commits"]] == []
    staging = doc["waves"][0]
    shown = {p["app_sha"]: (p["status"], p["superseded_by"]) for p in staging["promotions"]}
    assert shown[APP_SHA] == ("superseded", B_SHA)
    assert shown[B_SHA] == ("requested", None)
    timeline = {(t["wave"], t["app_sha"]): t["status"] for t in doc["timeline"]}
    assert timeline[("staging", APP_SHA)] == "superseded"
    assert "." not in doc["now"]  # to the second

    text = format_status(doc)
    assert "no checks yet" not in text and first[:12] not in text
    assert f"requested {APP_SHA[:12]}" not in text
    assert f"superseded {APP_SHA[:12]} by {B_SHA[:12]}" in text

    assert "no checks yet" not in page and first[:12] not in page
    superseded_a = (
        f'<span class="superseded">superseded</span> <code title="{APP_SHA}">{APP_SHA[:12]}'
        f'</code> by <code title="{B_SHA}">'
    )
    assert superseded_a in page
    assert f'requested</span> <code title="{APP_SHA}">' not in page
    assert f'requested</span> <code title="{B_SHA}">' in page  # the newer set is in flight

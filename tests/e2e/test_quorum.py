"""A quorum wave through the real services: staging has five targets and `min_healthy: 4`;
one target never reports, and the set is promoted to internal once four run it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.e2e.test_waves import Api
from tests.support import APP_SHA, branch_log, running
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
STAGING = [f"staging-{n}" for n in range(1, 6)]


def quorum_config(config: WavelineConfig) -> WavelineConfig:
    doc = config.model_dump(mode="json", exclude_unset=True)
    staging = doc["pipelines"]["app"]["waves"][0]
    staging.update(targets=STAGING, min_healthy=4)
    return WavelineConfig.model_validate(doc)


async def test_four_of_five_targets_promote_and_the_silent_one_is_listed(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    names = ["ingest", "git-writer", "status-tracker", "promoter"]
    async with (
        running(names, settings, quorum_config(config), secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        api = Api(client, remote)
        await api.announce(APP_SHA)
        c1 = await api.wait_auto(2, "staging commit")
        await api.status(c1, "success")
        await api.wait_master(c1)
        for target in STAGING[:3]:
            await api.deployed(target, c1)
        await asyncio.sleep(1.5)  # three of the four needed: nothing moves
        assert len(branch_log(str(remote), "auto")) == 2
        await api.deployed(STAGING[3], c1)
        await api.wait_auto(3, "internal commit after the fourth target")
        info = api.auto_head_info()
        assert info.get(trailers.TARGET) == "internal"
        assert info.get(trailers.REASON) == f"promoted from staging at {c1}"
    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(),
        server_settings={"search_path": settings.database_schema},
    )
    try:
        row = await conn.fetchrow(
            "SELECT state, app_sha, lagging FROM wave_status"
            " WHERE pipeline = 'app' AND wave = 'staging'"
        )
    finally:
        await conn.close()
    assert row is not None
    assert (row["state"], row["app_sha"], list(row["lagging"])) == (
        "running",
        APP_SHA,
        ["staging-5"],
    )

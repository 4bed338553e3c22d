"""Rollback quarantines through the real services: a set rolled back out of staging is not
promoted into internal even once approved, its re-announcement is refused with 409, and
`unquarantine` lets the approved promotion go (docs/gates.md, Rollback quarantines)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import CI_TOKEN, OPERATOR_TOKEN
from tests.e2e.test_waves import Api
from tests.support import APP_SHA, branch_log, image_set, running
from waveline.cli.trace_gates import gates_now, render_gates
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]
B_SHA = "2222222222222222222222222222222222222222"


def two_waves(config: WavelineConfig) -> WavelineConfig:
    doc = config.model_dump(mode="json", exclude_unset=True)
    waves = doc["pipelines"]["app"]["waves"]
    doc["pipelines"]["app"]["waves"] = [
        waves[0],
        {"name": "internal", "targets": ["internal-us"], "gate": {"approval": True}},
    ]
    return WavelineConfig.model_validate(doc)


async def staging_runs(api: Api, app_sha: str, commits: int) -> str:
    await api.announce(app_sha)
    sha = await api.wait_auto(commits, f"commit for {app_sha[:6]}")
    await api.status(sha, "success")
    await api.wait_master(sha)
    await api.deployed("staging-us", sha)
    await api.deployed("staging-eu", sha)
    return sha


async def quarantined(settings: Settings) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(),
        server_settings={"search_path": settings.database_schema},
    )
    try:
        return await conn.fetch(
            "SELECT app_sha, wave, actor, reason, lifted_by FROM quarantined_sets"
        )
    finally:
        await conn.close()


async def test_a_rolled_back_set_is_quarantined_until_lifted(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    names = ["ingest", "git-writer", "status-tracker", "promoter"]
    async with (
        running(names, settings, two_waves(config), secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        api = Api(client, remote)
        await staging_runs(api, APP_SHA, 2)
        await staging_runs(api, B_SHA, 3)
        await api.wait_state(
            lambda d: any(p["app_sha"] == B_SHA for p in d["waves"][1]["promotions"]),
            "B waiting for approval into internal",
        )
        await api.operator("staging", "rollback", {"to": "previous"})
        await api.wait_auto(4, "the rollback commit")
        assert api.auto_head_info().get(trailers.APP_SHA) == APP_SHA
        rows = await quarantined(settings)
        assert [(r["app_sha"], r["wave"], r["lifted_by"]) for r in rows] == [
            (B_SHA, "staging", None)
        ]
        assert rows[0]["actor"] == "operator"  # the operator token's name
        listed = (await api.state())["quarantined"]
        assert [(q["app_sha"], q["wave"], q["actor"]) for q in listed] == [
            (B_SHA, "staging", "operator")
        ]
        page = await (
            await client.get("/", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        ).text()
        assert "quarantined sets" in page and B_SHA[:12] in page

        # Approved, but quarantined: the gate stays shut and says why.
        await api.operator("internal", "approve")
        state = await api.wait_state(
            lambda d: (
                any(v["waiting_for"] == "quarantine" for v in d["waves"][1]["gate"]["verdicts"])
                or len(branch_log(str(remote), "auto")) > 4
            ),
            "the quarantine gate (or a commit it should have stopped)",
        )
        await asyncio.sleep(1.0)
        assert len(branch_log(str(remote), "auto")) == 4, state
        # `waveline trace` says why it waits now (no topic carries a closed gate).
        waiting = await gates_now(settings, two_waves(config), B_SHA)
        assert [(w["pipeline"], w["wave"]) for w in waiting] == [("app", "internal")]
        assert "quarantine:" in render_gates(waiting)

        # CI announcing it again is refused, clearly.
        resp = await client.post(
            "/v1/images", json=image_set(B_SHA), headers={"Authorization": f"Bearer {CI_TOKEN}"}
        )
        assert resp.status == 409, await resp.text()
        doc = await resp.json()
        assert doc["error"] == "quarantined"
        assert "waveline unquarantine app" in doc["detail"]

        # Lifted: the approved promotion goes into internal.
        resp = await client.post(
            f"/v1/pipelines/app/sets/{B_SHA}/unquarantine",
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        assert resp.status == 200, await resp.text()
        await api.wait_auto(5, "B promoted into internal once lifted")
        info = api.auto_head_info()
        assert (info.get(trailers.TARGET), info.get(trailers.APP_SHA)) == ("internal", B_SHA)
        again = await client.post(
            f"/v1/pipelines/app/sets/{B_SHA}/unquarantine",
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        assert again.status == 404
    assert [r["lifted_by"] for r in await quarantined(settings)] == ["operator"]

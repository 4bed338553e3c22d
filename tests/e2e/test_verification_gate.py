"""Wave verifications through the real services: staging's HTTP check fails twice, then
passes, and only then is the set promoted into internal; internal's Prometheus query
(against a small real Prometheus HTTP API) fails, so the wave is failed with the reason and
nothing reaches production, even approved."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.e2e.test_waves import Api
from tests.fakeprometheus import FakePrometheus, running_prometheus
from tests.support import APP_SHA, branch_log, running
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig

pytestmark = pytest.mark.e2e
CHECK_KEY = "e2e-check-key-31c9d0"
PROM_TOKEN = "e2e-prom-token-8b24f7"
P99 = "histogram_quantile(0.99, sum by (le) (rate(request_seconds_bucket[5m])))"


class Health:
    """503 for the first two calls with the key, then ``{"ready": true}``."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {CHECK_KEY}":
            return web.json_response({"error": "unauthorized"}, status=401)
        self.calls += 1
        return web.json_response({"ready": self.calls > 2}, status=503 if self.calls <= 2 else 200)


@pytest.fixture
async def health() -> AsyncIterator[tuple[Health, str]]:
    found = Health()
    app = web.Application()
    app.router.add_get("/healthz", found.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield found, str(server.make_url("/healthz"))
    finally:
        await server.close()


def with_verifications(config: WavelineConfig, health_url: str, prom: FakePrometheus) -> Any:
    doc = config.model_dump(mode="json")
    doc["prometheus"] = {"url": prom.url, "token_env": "E2E_PROM_TOKEN"}
    staging, internal, _ = doc["pipelines"]["app"]["waves"]
    staging["verifications"] = [
        {
            "name": "ready",
            "http": {
                "url": health_url,
                "secret_headers": {"Authorization": "E2E_CHECK_KEY"},
                "field": "ready",
                "equals": True,
            },
            "attempts": 5,
            "interval": 0.3,
        }
    ]
    internal["verifications"] = [
        {
            "name": "p99-latency",
            "prometheus": {"query": P99, "condition": {"op": "<=", "value": 0.3}},
            "count": 3,
            "interval": 0.2,
        }
    ]
    return WavelineConfig.model_validate(doc)


@pytest.mark.timeout(120)
async def test_verifications_gate_the_next_wave(
    settings: Settings,
    config: WavelineConfig,
    secrets: Secrets,
    remote: Path,
    health: tuple[Health, str],
) -> None:
    endpoint, url = health
    named = {
        "E2E_CHECK_KEY": SecretStr(f"Bearer {CHECK_KEY}"),
        "E2E_PROM_TOKEN": SecretStr(PROM_TOKEN),
    }
    secrets = secrets.model_copy(update={"named": secrets.named | named})
    names = ["ingest", "git-writer", "status-tracker", "promoter", "notifier"]
    async with running_prometheus(token=PROM_TOKEN) as prom:
        prom.values = {P99: [["0.21"], ["0.42"]]}
        config = with_verifications(config, url, prom)
        async with (
            running(names, settings, config, secrets) as rts,
            TestClient(TestServer(create_app(rts["ingest"]))) as client,
        ):
            api = Api(client, remote)
            await api.announce(APP_SHA)
            c1 = await api.wait_auto(2, "staging commit")
            await api.status(c1, "success")
            await api.wait_master(c1)
            await api.deployed("staging-us", c1)
            await api.deployed("staging-eu", c1)
            # Internal's commit comes only once the check passed (its third call).
            c2 = await api.wait_auto(3, "internal commit after staging's verification")
            assert endpoint.calls == 3
            await api.status(c2, "success")
            await api.wait_master(c2)
            await api.deployed("internal-us", c2)
            pool = rts["promoter"].pool
            async with asyncio.timeout(20):
                while True:
                    row = await pool.fetchrow(
                        "SELECT status, reason FROM verification_runs WHERE wave = 'internal'"
                    )
                    if row is not None and row["status"] != "running":
                        break
                    await asyncio.sleep(0.1)
            assert row["status"] == "failed"
            assert row["reason"] == 'p99-latency: {instance="api-0:8080",job="api"} 0.42 not <= 0.3'
            assert prom.asked == [P99, P99]
            # on_failure: hold (the default): the wave is held, by "verification".
            async with asyncio.timeout(10):
                while not await pool.fetchval(  # noqa: ASYNC110 (polls the database)
                    "SELECT held FROM wave_gates WHERE pipeline = 'app' AND wave = 'internal'"
                ):
                    await asyncio.sleep(0.1)
            await api.operator("production", "approve", {"app_sha": APP_SHA})
            await asyncio.sleep(1.5)
            assert len(branch_log(str(remote), "auto")) == 3  # nothing reached production

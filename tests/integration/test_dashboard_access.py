"""Who may open the dashboard and read /metrics (docs/security.md, Dashboard and metrics):
no implicit trust of loopback; ``WAVELINE_DASHBOARD_OPEN=loopback`` opens it only to a
request from loopback naming a loopback Host; ``WAVELINE_METRICS_TOKEN`` guards /metrics of
ingest and of the consumers' health endpoint."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.conftest import OPERATOR_TOKEN
from tests.support import running
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.runtime import bootstrap

pytestmark = pytest.mark.timeout(60)

METRICS_TOKEN = "metrics-token-for-tests-13579"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@contextlib.asynccontextmanager
async def ingest(
    settings: Settings,
    config: WavelineConfig,
    secrets: Secrets,
    *,
    host: str = "127.0.0.1",
    **overrides: Any,
) -> AsyncIterator[TestClient[Any, Any]]:
    runtime = bootstrap("ingest", settings.model_copy(update=overrides), config, secrets)
    await runtime.start()
    try:
        async with TestClient(TestServer(create_app(runtime), host=host)) as client:
            yield client
    finally:
        await runtime.stop()


def own_address() -> str | None:
    """A non-loopback address of this host (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_loopback_is_not_trusted_by_default(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    async with ingest(settings, config, secrets) as client:
        for host in (None, "localhost", "127.0.0.1", "[::1]:8080"):
            headers = {"Host": host} if host else {}
            resp = await client.get("/", headers=headers)
            assert resp.status == 401, host
            assert (await resp.json())["error"] == "unauthorized"
        assert (await client.get("/", headers=OPERATOR)).status == 200


async def test_open_loopback_takes_only_a_localhost_host(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    async with ingest(settings, config, secrets, dashboard_open="loopback") as client:
        assert client.port is not None
        for host in (f"localhost:{client.port}", f"127.0.0.1:{client.port}", "[::1]", "LOCALHOST"):
            resp = await client.get("/", headers={"Host": host})
            assert resp.status == 200, host
            assert "pipeline app" in await resp.text()
        # a forged Host (DNS rebinding: another site's name resolving to 127.0.0.1)
        for host in ("evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "localhost."):
            resp = await client.get("/", headers={"Host": host})
            assert resp.status == 401, host
        # a proxy on this host relays someone else
        proxied = {"Host": "localhost", "X-Forwarded-For": "203.0.113.7"}
        assert (await client.get("/", headers=proxied)).status == 401
        # a token sent is judged, even from loopback
        wrong = {"Host": "localhost", "Authorization": "Bearer nope"}
        assert (await client.get("/", headers=wrong)).status == 403


async def test_open_loopback_refuses_a_peer_that_is_not_loopback(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    address = own_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    async with ingest(settings, config, secrets, host=address, dashboard_open="loopback") as client:
        resp = await client.get("/", headers={"Host": "localhost"})
        assert resp.status == 401
        assert (await client.get("/", headers={"Host": "localhost", **OPERATOR})).status == 200


async def test_metrics_need_the_metrics_token_when_one_is_set(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    async with ingest(settings, config, secrets) as client:
        assert (await client.get("/metrics")).status == 200  # unset: open, as before
    token = SecretStr(METRICS_TOKEN)
    async with ingest(settings, config, secrets, metrics_token=token) as client:
        assert (await client.get("/metrics")).status == 401
        assert (await client.get("/metrics", headers=OPERATOR)).status == 403
        ok = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert ok.status == 200
        assert "waveline_ingest" in await ok.text()
        assert (await client.get("/healthz")).status == 200  # probes stay open


async def test_consumer_metrics_need_the_metrics_token(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    guarded = settings.model_copy(
        update={"health_port": port, "metrics_token": SecretStr(METRICS_TOKEN)}
    )
    async with (
        running(["promoter"], guarded, config, secrets),
        aiohttp.ClientSession() as http,
    ):
        url = f"http://127.0.0.1:{port}"
        async with http.get(f"{url}/metrics") as resp:
            assert resp.status == 401
        async with http.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 403
        auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        async with http.get(f"{url}/metrics", headers=auth) as resp:
            assert resp.status == 200
            assert "waveline" in await resp.text()
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 200

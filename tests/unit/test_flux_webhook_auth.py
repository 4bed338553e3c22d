"""``POST /v1/webhooks/flux`` refuses what Flux did not send before reading it, and answers
204 for events that say nothing Waveline follows (no broker: nothing can be published)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.fluxevents import body_of, event, flux_config, signature
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings
from waveline.shared.flux_config import FluxSettings
from waveline.shared.runtime import bootstrap

KEY = "flux-hmac-key-for-unit-tests"
TOKEN = "flux-bearer-token-for-unit-tests"
PATH = "/v1/webhooks/flux"
# A GitRepository's event: authenticated, it is answered 204 without publishing.
SOURCE_EVENT = body_of(
    event(kind="GitRepository", api_version="source.toolkit.fluxcd.io/v1", reason="NewArtifact")
)


async def _client(tmp_path: Path, flux: FluxSettings) -> TestClient[Any, Any]:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", flux=flux)
    config = flux_config((tmp_path / "x.git").as_uri())
    runtime = bootstrap("ingest", settings, config, Secrets())
    return TestClient(TestServer(create_app(runtime)))


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    flux = FluxSettings(flux_webhook_secret=SecretStr(KEY), flux_token=SecretStr(TOKEN))
    async with await _client(tmp_path, flux) as c:
        yield c


async def _post(client: TestClient[Any, Any], body: bytes, **headers: str) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **headers}
    async with asyncio.timeout(5), client.post(PATH, data=body, headers=headers) as resp:
        return resp.status, (await resp.json() if resp.status >= 400 else None)


async def test_a_signed_event_is_read(client: TestClient[Any, Any]) -> None:
    for algorithm in ("sha256", "sha512", "sha224", "sha384"):
        sig = signature(KEY, SOURCE_EVENT, algorithm)
        assert (await _post(client, SOURCE_EVENT, **{"X-Signature": sig}))[0] == 204


async def test_unsigned_or_wrongly_signed_events_are_401(client: TestClient[Any, Any]) -> None:
    good = signature(KEY, SOURCE_EVENT)
    cases = {
        "missing": {},
        "other key": {"X-Signature": signature("another-key", SOURCE_EVENT)},
        "other body": {"X-Signature": signature(KEY, SOURCE_EVENT + b" ")},
        "unknown hash": {"X-Signature": "md5=" + good.partition("=")[2]},
        "no hash": {"X-Signature": good.partition("=")[2]},
        "empty": {"X-Signature": ""},
        # A right token does not excuse a wrong signature.
        "wrong with token": {
            "X-Signature": signature("another-key", SOURCE_EVENT),
            "Authorization": f"Bearer {TOKEN}",
        },
    }
    for case, headers in cases.items():
        status, doc = await _post(client, SOURCE_EVENT, **headers)
        assert (status, doc["error"]) == (401, "unauthorized"), case
        assert KEY not in str(doc)


async def test_the_bearer_token_of_a_generic_provider(client: TestClient[Any, Any]) -> None:
    assert (await _post(client, SOURCE_EVENT, Authorization=f"Bearer {TOKEN}"))[0] == 204
    status, doc = await _post(client, SOURCE_EVENT, Authorization="Bearer not-the-token")
    assert status == 403 and "not-the-token" not in str(doc)
    assert (await _post(client, SOURCE_EVENT, Authorization="Basic eDp5"))[0] == 401


async def test_authentication_comes_before_the_body(client: TestClient[Any, Any]) -> None:
    assert (await _post(client, b"not json"))[0] == 401
    sig = signature(KEY, b"not json")
    assert (await _post(client, b"not json", **{"X-Signature": sig}))[0] == 400
    broken = body_of({"involvedObject": {"kind": "Kustomization"}, "severity": "loud"})
    status, doc = await _post(client, broken, **{"X-Signature": signature(KEY, broken)})
    assert status == 422
    assert {d["field"] for d in doc["detail"]} >= {"involvedObject.name", "severity", "reason"}


async def test_without_configured_secrets_every_event_is_refused(tmp_path: Path) -> None:
    async with await _client(tmp_path, FluxSettings()) as client:
        sig = signature(KEY, SOURCE_EVENT)
        assert (await _post(client, SOURCE_EVENT, **{"X-Signature": sig}))[0] == 401
        assert (await _post(client, SOURCE_EVENT, Authorization=f"Bearer {TOKEN}"))[0] == 403


async def test_events_waveline_does_not_follow_are_204(client: TestClient[Any, Any]) -> None:
    sha = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
    meta = {"revision": f"main@sha1:{sha}"}
    ignored = [
        event(namespace="other", metadata=meta),  # no wave lists it
        event(namespace="staging", name="webapp", api_version="example.com/v1", metadata=meta),
        event(namespace="staging", name="webapp"),  # no revision
        event(namespace="staging", name="webapp", metadata={"revision": "main@sha256:" + "a" * 64}),
        event(namespace="staging", name="webapp", metadata=meta, reason="DriftDetected"),
        event(namespace="staging", name="webapp", metadata=meta, severity="trace"),
        # A HelmRelease names a chart version, no commit.
        event(kind="HelmRelease", namespace="staging", name="podinfo", reason="UpgradeSucceeded",
              metadata={"revision": "6.3.5", "token": "abc"}),
    ]  # fmt: skip
    for doc in ignored:
        body = body_of(doc)
        assert (await _post(client, body, **{"X-Signature": signature(KEY, body)}))[0] == 204


async def test_an_unlisted_object_is_logged_once(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    meta = {"revision": "main@sha1:" + "a" * 40}
    body = body_of(event(namespace="typo", name="webapp", metadata=meta))
    with caplog.at_level(logging.INFO, logger="waveline.services.ingest.flux"):
        for _ in range(3):
            assert (await _post(client, body, **{"X-Signature": signature(KEY, body)}))[0] == 204
    lines = [
        r.getMessage() for r in caplog.records if "Kustomization/typo/webapp" in r.getMessage()
    ]
    assert lines == [
        "Flux event about Kustomization/typo/webapp ignored: no wave lists it as a target"
    ]

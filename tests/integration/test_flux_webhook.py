"""``POST /v1/webhooks/flux`` on real Kafka and PostgreSQL: Flux's documented payloads
(kustomize-controller's and helm-controller's events as the notification-controller
forwards them, in today's and the older metadata form) become deploy reports on
``waveline.deploys``; what is not signed right publishes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.fluxevents import body_of, event, flux_config, kustomization_applied, signature
from tests.support import read_topic
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings
from waveline.shared.deploy_sources import REPORT_NS
from waveline.shared.flux_config import FluxSettings
from waveline.shared.runtime import bootstrap

KEY = "flux-hmac-key-for-integration-tests"
TOKEN = "flux-bearer-token-for-integration-tests"
SHA = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
OLD = "5d4e1a6c2f8b9e0d3c7a1b2e4f6a8c0d2e4f6a8c"
WEBAPP = "Kustomization/staging/webapp"


@pytest.fixture
async def flux_client(settings: Settings, remote: Path) -> AsyncIterator[TestClient[Any, Any]]:
    flux = FluxSettings(flux_webhook_secret=SecretStr(KEY), flux_token=SecretStr(TOKEN))
    runtime = bootstrap(
        "ingest",
        settings.model_copy(update={"flux": flux}),
        flux_config(remote.as_uri()),
        Secrets(),
    )
    await runtime.start()
    async with TestClient(TestServer(create_app(runtime))) as client:
        yield client
    await runtime.stop()


async def _post(client: TestClient[Any, Any], doc: Any, **headers: str) -> tuple[int, Any]:
    body = body_of(doc)
    headers = {"Content-Type": "application/json", "Gotk-Component": "kustomize-controller"} | (
        headers or {"X-Signature": signature(KEY, body)}
    )
    async with (
        asyncio.timeout(15),
        client.post("/v1/webhooks/flux", data=body, headers=headers) as r,
    ):
        return r.status, await r.json() if r.status != 204 else None


async def test_flux_events_become_deploy_reports(
    flux_client: TestClient[Any, Any], settings: Settings
) -> None:
    client = flux_client
    legacy_meta = {"kustomize.toolkit.fluxcd.io/revision": f"main/{OLD}"}
    sent = [
        # Before Flux 2.2: the group kept in the key, the revision as branch/sha.
        event(namespace="staging", reason="Progressing", metadata=legacy_meta,
              message="Deployment/staging/webapp configured"),
        event(namespace="staging", reason="HealthCheckFailed", severity="error",
              metadata=legacy_meta, message="health check failed after 5m0s"),
        # Today's: the key stripped, the revision as branch@sha1:sha.
        kustomization_applied(SHA, namespace="staging"),
    ]  # fmt: skip
    answers = [await _post(client, doc) for doc in sent]
    assert [s for s, _ in answers] == [202, 202, 202]
    # The same event again is the same fact: the same id.
    again = await _post(client, sent[-1], Authorization=f"Bearer {TOKEN}")
    assert again == answers[-1]
    meaning = f"deploy/{WEBAPP}/{SHA}/Succeeded/Healthy/Synced"
    assert answers[-1][1]["event_id"] == str(uuid.uuid5(REPORT_NS, meaning))
    # Refused or ignored: nothing more published.
    body = body_of(sent[-1])
    refused = [
        await _post(client, sent[-1], **{"X-Signature": signature("other-key", body)}),
        await _post(client, sent[-1], Authorization="Bearer wrong"),
        await _post(client, sent[-1], **{"Gotk-Component": "kustomize-controller"}),
    ]
    assert [s for s, _ in refused] == [401, 403, 401]
    helm = event(
        kind="HelmRelease",
        namespace="staging",
        name="podinfo",
        reason="UpgradeSucceeded",
        metadata={"revision": "6.3.5", "token": "a1b2"},
    )
    assert (await _post(client, helm))[0] == 204
    messages = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.deploys",
        until=lambda m: len(m) >= 4,
    )
    assert len(messages) == 4
    words = [(m["app"], m["revision"], m["phase"], m["health"], m["sync"]) for m in messages]
    assert words == [
        (WEBAPP, OLD, "Running", "Progressing", "OutOfSync"),
        (WEBAPP, OLD, "Failed", "Degraded", "Synced"),
        (WEBAPP, SHA, "Succeeded", "Healthy", "Synced"),
        (WEBAPP, SHA, "Succeeded", "Healthy", "Synced"),
    ]
    assert messages[2]["event_id"] == messages[3]["event_id"]


async def test_a_helmrelease_event_naming_its_origin_commit_counts(
    flux_client: TestClient[Any, Any], settings: Settings
) -> None:
    # An OCI chart built from the config repository: its origin revision names the commit.
    meta = {"revision": "6.3.5", "originRevision": f"main@sha1:{SHA}"}
    doc = event(kind="HelmRelease", namespace="staging", name="podinfo", reason="InstallFailed",
                severity="error", metadata=meta)  # fmt: skip
    status, answer = await _post(flux_client, doc)
    assert status == 202
    (message,) = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.deploys",
        until=bool,
    )
    assert (message["app"], message["revision"], message["health"]) == (
        "HelmRelease/staging/podinfo",
        SHA,
        "Degraded",
    )
    assert message["event_id"] == answer["event_id"]

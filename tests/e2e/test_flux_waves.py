"""Waves whose targets are Flux Kustomizations walk on Flux alone: announce → commit on auto
→ check green → watched fast-forwarded → the notification-controller's signed events (one
in the pre-2.2 form) report both staging Kustomizations Ready on that commit → internal
commit → green → internal's event is lost, and the reconciler reads its Kustomization from
the (fake) Kubernetes API instead → internal runs the image set.

The Kubernetes API holds no staging object: staging can only have moved on events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.e2e.test_waves import Api
from tests.fakekube import FakeKube, condition
from tests.fluxevents import body_of, event, flux_config, kustomization_applied, signature
from tests.support import APP_SHA, running
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.flux_config import FluxSettings
from waveline.shared.gitengine import trailers
from waveline.shared.reconcile_config import ReconcileSettings

pytestmark = pytest.mark.e2e
KEY = "flux-hmac-key-for-e2e-tests"
KUBE_TOKEN = "kube-token-for-flux-e2e-tests-8642"
STAGING = ("Kustomization/staging/webapp", "Kustomization/staging/worker")
INTERNAL = "Kustomization/internal/webapp"
NAMES = ["ingest", "git-writer", "status-tracker", "promoter", "reconciler"]


async def flux_event(api: Api, doc: dict[str, Any]) -> int:
    body = body_of(doc)
    resp = await api.client.post(
        "/v1/webhooks/flux",
        data=body,
        headers={"Content-Type": "application/json", "X-Signature": signature(KEY, body)},
    )
    return resp.status


@pytest.mark.timeout(120)
async def test_flux_reported_waves_promote(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    raw = flux_config(remote.as_uri(), targets=STAGING).model_dump(mode="json")
    raw["pipelines"]["app"]["waves"][1]["targets"] = [INTERNAL]
    config = WavelineConfig.model_validate(raw)
    kube = FakeKube()
    kube.allow(KUBE_TOKEN, "staging", "internal")
    await kube.start()
    flux = FluxSettings(
        flux_webhook_secret=SecretStr(KEY),
        kube_api_url=kube.url,
        kube_api_token=SecretStr(KUBE_TOKEN),
    )
    reconcile = ReconcileSettings(
        reconcile_deploys_after_s=0.5, reconcile_interval_s=0.2, reconcile_backoff_cap_s=1.0
    )
    settings = settings.model_copy(update={"flux": flux, "reconcile": reconcile})
    try:
        async with (
            running(NAMES, settings, config, secrets) as rts,
            TestClient(TestServer(create_app(rts["ingest"]))) as client,
        ):
            api = Api(client, remote)
            await api.announce(APP_SHA)
            c1 = await api.wait_auto(2, "staging commit")
            await api.status(c1, "success")
            await api.wait_master(c1)
            legacy = {"kustomize.toolkit.fluxcd.io/revision": f"main/{c1}"}
            progressing = event(namespace="staging", reason="Progressing", metadata=legacy)
            assert await flux_event(api, progressing) == 202
            assert await flux_event(api, kustomization_applied(c1, namespace="staging")) == 202
            # One target Ready is not the wave: nothing is promoted yet.
            assert (await api.state())["waves"][0]["state"] != "running"
            worker = event(namespace="staging", name="worker", metadata=legacy)
            assert await flux_event(api, worker) == 202
            c2 = await api.wait_auto(3, "internal commit")
            info = api.auto_head_info()
            assert info.get(trailers.TARGET) == "internal"
            assert info.get(trailers.REASON) == f"promoted from staging at {c1}"
            await api.status(c2, "success")
            await api.wait_master(c2)
            # Flux applies c2 to internal; its event never reaches Waveline.
            ready = condition("Ready", "True", "ReconciliationSucceeded")
            kube.kustomization("internal", "webapp", applied=c2, conditions=[ready])
            state = await api.wait_state(
                lambda d: d["waves"][1]["state"] == "running", "internal running"
            )
    finally:
        await kube.stop()
    assert [w["state"] for w in state["waves"][:2]] == ["running", "running"]
    assert [w["cfg_commit"] for w in state["waves"][:2]] == [c1, c2]
    assert [w["app_sha"] for w in state["waves"][:2]] == [APP_SHA, APP_SHA]
    internal = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/internal/kustomizations/webapp"
    assert (internal, KUBE_TOKEN) in kube.requests

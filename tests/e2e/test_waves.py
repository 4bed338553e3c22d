"""The whole walk through all five services on real Kafka, Postgres and a git remote:
announce → commit on auto → GitHub status success → watched fast-forwarded → staging
healthy → internal commit copying staging's files from the deployed commit → green →
internal healthy → bake time → production waits for approval → approve → production commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import ARGOCD_TOKEN, CI_TOKEN, GITHUB_SECRET, OPERATOR_TOKEN
from tests.support import APP_SHA, branch_log, image_set, running, wait_for
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers

pytestmark = pytest.mark.e2e
OTHER = "2222222222222222222222222222222222222222"


def head(remote: Path, branch: str) -> str:
    log = branch_log(str(remote), branch)
    return str(log[0].id) if log else ""


class Api:
    def __init__(self, client: TestClient[Any, Any], remote: Path) -> None:
        self.client = client
        self.remote = remote

    async def announce(self, app_sha: str) -> None:
        resp = await self.client.post(
            "/v1/images", json=image_set(app_sha), headers={"Authorization": f"Bearer {CI_TOKEN}"}
        )
        assert resp.status == 202, await resp.text()

    async def status(
        self, sha: str, state: str, context: str = "ci/validate", *, answers: set[int] | None = None
    ) -> None:
        body = json.dumps(
            {
                "sha": sha,
                "state": state,
                "context": context,
                "repository": {"full_name": "remote/cfg-app"},
            }
        ).encode()
        sig = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        resp = await self.client.post(
            "/v1/webhooks/github",
            data=body,
            headers={
                "X-GitHub-Event": "status",
                "X-Hub-Signature-256": f"sha256={sig}",
                "Content-Type": "application/json",
            },
        )
        assert resp.status in (answers or {202}), await resp.text()

    async def deployed(self, target: str, revision: str, health: str = "Healthy") -> None:
        doc = {
            "app": target,
            "revision": revision,
            "phase": "Succeeded",
            "health": health,
            "sync": "Synced",
        }
        resp = await self.client.post(
            "/v1/webhooks/argocd", json=doc, headers={"Authorization": f"Bearer {ARGOCD_TOKEN}"}
        )
        assert resp.status == 202, await resp.text()

    async def operator(self, wave: str, action: str, body: dict[str, Any] | None = None) -> None:
        resp = await self.client.post(
            f"/v1/pipelines/app/waves/{wave}/{action}",
            json=body or {},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        assert resp.status == 202, await resp.text()

    async def state(self) -> dict[str, Any]:
        resp = await self.client.get(
            "/v1/pipelines/app", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
        assert resp.status == 200, await resp.text()
        doc: dict[str, Any] = await resp.json()
        return doc

    def auto_head_info(self) -> trailers.Trailers:
        return trailers.parse(branch_log(str(self.remote), "auto")[0].message)

    async def wait_auto(self, count: int, what: str) -> str:
        await wait_for(lambda: len(branch_log(str(self.remote), "auto")) == count, what=what)
        return head(self.remote, "auto")

    async def wait_state(self, ok: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while True:
                doc = await self.state()
                if ok(doc):
                    return doc
                await asyncio.sleep(0.1)

    async def wait_for_auto(self, ok: Callable[[list[Any]], bool], what: str) -> None:
        await wait_for(lambda: ok(branch_log(str(self.remote), "auto")), what=what)

    async def wait_master(self, sha: str) -> None:
        await wait_for(lambda: head(self.remote, "master") == sha, what=f"master at {sha}")


@pytest.mark.timeout(180)
async def test_announce_to_production(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    names = ["ingest", "git-writer", "status-tracker", "promoter", "notifier"]
    async with (
        running(names, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        api = Api(client, remote)
        await api.announce(APP_SHA)
        c1 = await api.wait_auto(2, "staging commit")
        await api.status(c1, "pending")
        await api.status(c1, "success")
        await api.wait_master(c1)
        # Staging: both targets healthy on c1 → staging runs APP_SHA → internal commit.
        await api.deployed("staging-us", c1)
        await api.deployed("staging-eu", c1)
        c2 = await api.wait_auto(3, "internal commit")
        info = api.auto_head_info()
        assert info.get(trailers.TARGET) == "internal"
        assert info.get(trailers.REASON) == f"promoted from staging at {c1}"
        await api.status(c2, "success")
        await api.wait_master(c2)
        await api.deployed("internal-us", c2)
        # Internal ran after its 1s bake; production waits for an approval.
        state = await api.wait_state(
            lambda d: bool(d["waves"][2]["promotions"]), "production promotion waiting"
        )
        assert [w["state"] for w in state["waves"][:2]] == ["running", "running"]
        assert state["waves"][1]["cfg_commit"] == c2
        production = state["waves"][2]
        assert production["promotions"][0]["status"] == "waiting"
        assert production["gate"]["awaiting_approval"] is True
        assert len(branch_log(str(remote), "auto")) == 3  # nothing before the approval
        await api.operator("production", "approve")
        c3 = await api.wait_auto(4, "production commit")
        info = api.auto_head_info()
        assert info.get(trailers.TARGET) == "production"
        assert info.get(trailers.REASON) == f"promoted from internal at {c2}"
        assert info.get(trailers.APP_SHA) == APP_SHA
        assert c3 == head(remote, "auto")

"""A whole journey with every GitHub and Argo CD webhook lost: staging → internal → production
completes by polling alone (docs/reconcile.md).

Nothing posts to ``/v1/webhooks/*``. CI's verdicts exist only on the fake GitHub (a status
set on each new commit of auto), Argo CD's only in the fake Argo CD API (every Application
auto-syncs master); the reconciler reads them, with delays of a fraction of a second, and
the waves walk on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.e2e.test_waves import Api, head
from tests.fakeargocd import FakeArgoCd
from tests.fakegithub import FakeGitHub
from tests.support import APP_SHA, branch_log, make_config, running
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.reconcile_config import ReconcileSettings

pytestmark = pytest.mark.e2e
FORGE_TOKEN = "forge-token-for-polling-e2e-91ab"
ARGO_API_TOKEN = "argocd-api-token-for-polling-e2e-3fd2"
FULL = "remote/cfg-app"
NAMES = ["ingest", "git-writer", "status-tracker", "promoter", "reconciler"]
TARGETS = ["staging-us", "staging-eu", "internal-us", "prod-us"]


@contextlib.asynccontextmanager
async def ci_on_github(gh: FakeGitHub, remote: Path) -> AsyncIterator[list[str]]:
    """CI: every new commit of auto gets a pending, then a success ``ci/validate`` status on
    the forge (and nowhere else). Yields the commits it has passed."""
    passed: list[str] = []

    async def run() -> None:
        while True:
            for commit in reversed(branch_log(str(remote), "auto")):
                sha = str(commit.id)
                if sha not in passed and len(commit.parents) == 1:
                    gh.checks.set_status(FULL, sha, "ci/validate", "pending")
                    gh.checks.set_status(FULL, sha, "ci/validate", "success")
                    passed.append(sha)
            await asyncio.sleep(0.1)

    task = asyncio.create_task(run())
    try:
        yield passed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.timeout(120)
async def test_a_journey_completes_with_every_webhook_lost(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    async with (
        FakeGitHub({FULL: remote}, token=FORGE_TOKEN) as gh,
        FakeArgoCd(ARGO_API_TOKEN) as argo,
    ):
        argo.follow(TARGETS, remote, "master")
        doc = make_config(remote.as_uri()).model_dump(mode="json")
        doc["repos"]["cfg-app"]["forge"] = {"api_url": gh.url, "token_env": "WAVELINE_GITHUB_TOKEN"}
        config = WavelineConfig.model_validate(doc)
        reconcile = ReconcileSettings(
            reconcile_checks_after_s=0.3,
            reconcile_deploys_after_s=0.3,
            reconcile_interval_s=0.2,
            reconcile_backoff_cap_s=1.0,
            argocd_api_url=argo.url,
            argocd_api_token=SecretStr(ARGO_API_TOKEN),
        )
        settings = settings.model_copy(update={"reconcile": reconcile})
        secrets = secrets.model_copy(
            update={"named": {"WAVELINE_GITHUB_TOKEN": SecretStr(FORGE_TOKEN)}}
        )
        async with (
            running(NAMES, settings, config, secrets) as rts,
            TestClient(TestServer(create_app(rts["ingest"]))) as client,
            ci_on_github(gh, remote) as passed,
        ):
            api = Api(client, remote)
            await api.announce(APP_SHA)
            c1 = await api.wait_auto(2, "staging commit")
            await api.wait_master(c1)  # its status was read on GitHub
            c2 = await api.wait_auto(3, "internal commit")  # staging's targets read on Argo CD
            await api.wait_master(c2)
            # The promoter may queue production's promotion a moment before the
            # status-tracker has stored internal's state: wait for both.
            state = await api.wait_state(
                lambda d: (
                    bool(d["waves"][2]["promotions"])
                    and [w["state"] for w in d["waves"][:2]] == ["running", "running"]
                ),
                "internal runs the set, production's promotion waits",
            )
            await api.operator("production", "approve")
            c3 = await api.wait_auto(4, "production commit")
            await api.wait_master(c3)
            state = await api.wait_state(
                lambda d: d["waves"][2]["state"] == "running", "production runs the set"
            )
            metrics = rts["reconciler"].waits.registry
            learned = {
                kind: metrics.get_sample_value("waveline_reconcile_learned_total", {"kind": kind})
                for kind in ("check", "deploy")
            }
    assert [w["app_sha"] for w in state["waves"]] == [APP_SHA] * 3
    assert [w["cfg_commit"] for w in state["waves"]] == [c1, c2, c3]
    assert passed[:3] == [c1, c2, c3]
    assert head(remote, "master") == c3
    # Nothing came by webhook: every verdict and every deploy report was polled.
    hooks = [r for r in gh.requests if "/webhooks/" in r.path]
    assert not hooks and not gh.deliveries
    assert (
        learned["check"] is not None
        and learned["check"] >= 3
        and learned["deploy"] is not None
        and learned["deploy"] >= 4
    )
    assert all(argo.reads_of(t) >= 1 for t in TARGETS)
    assert all(auth == f"Bearer {ARGO_API_TOKEN}" for _, auth in argo.requests)

"""The cases around the walk, all five services on real Kafka, Postgres and git: eviction
between two good commits, re-announcement, a degraded target, hold/release, rollback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import CI_TOKEN
from tests.e2e.test_waves import Api, head
from tests.integration.test_gitengine import read
from tests.support import APP_SHA, branch_log, running
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
B_SHA = "2222222222222222222222222222222222222222"
C_SHA = "3333333333333333333333333333333333333333"


@pytest.fixture
async def api(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> AsyncIterator[Api]:
    names = ["ingest", "git-writer", "status-tracker", "promoter", "notifier"]
    async with (
        running(names, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        yield Api(client, remote)


def staging_app(remote: Path, ref: str) -> str:
    tags = json.loads(read(remote, ref, "images/staging/tags.json"))
    return str(tags["Service1"]).rsplit(":", 1)[1]


async def staging_runs(api: Api, app_sha: str, commits: int) -> str:
    """Announce, pass checks, deploy to both staging targets; returns the cfg commit."""
    await api.announce(app_sha)
    sha = await api.wait_auto(commits, f"commit for {app_sha[:6]}")
    await api.status(sha, "success")
    await api.wait_master(sha)
    await api.deployed("staging-us", sha)
    await api.deployed("staging-eu", sha)
    await api.wait_state(
        lambda d: d["waves"][0]["app_sha"] == app_sha and d["waves"][0]["state"] == "running",
        f"staging runs {app_sha[:6]}",
    )
    return sha


async def test_red_commit_between_two_good_ones_is_evicted(api: Api, remote: Path) -> None:
    await api.announce(APP_SHA)
    await api.wait_auto(2, "A")
    await api.announce(B_SHA)
    await api.wait_auto(3, "B")
    await api.announce(C_SHA)
    await api.wait_auto(4, "C")
    a, b, c = (str(x.id) for x in branch_log(str(remote), "auto")[2::-1])
    await api.status(a, "success")
    await api.wait_master(a)
    await api.status(b, "failure")
    await api.wait_for_auto(lambda log: b not in {str(x.id) for x in log}, "B evicted")
    new_c = head(remote, "auto")
    assert new_c != c
    assert trailers.parse(branch_log(str(remote), "auto")[0].message).get(trailers.APP_SHA) == C_SHA
    # The old C is no longer judged; the replayed C is, on its own checks. (200: ingest
    # already knows the old C was replaced, and says so.)
    await api.status(c, "success", answers={200, 202})
    await asyncio.sleep(1.0)
    assert head(remote, "master") == a
    await api.status(new_c, "success")
    await api.wait_master(new_c)
    assert staging_app(remote, "master") == C_SHA


async def test_reannouncing_an_image_set_makes_no_new_commit(api: Api, remote: Path) -> None:
    await api.announce(APP_SHA)
    await api.wait_auto(2, "first commit")
    await api.announce(APP_SHA)
    await api.announce(APP_SHA)
    await asyncio.sleep(2.0)
    assert len(branch_log(str(remote), "auto")) == 2


async def test_degraded_target_stops_promotion(api: Api, remote: Path) -> None:
    await api.announce(APP_SHA)
    sha = await api.wait_auto(2, "staging commit")
    await api.status(sha, "success")
    await api.wait_master(sha)
    await api.deployed("staging-us", sha)
    await api.deployed("staging-eu", sha, health="Degraded")
    await api.wait_state(lambda d: d["waves"][0]["state"] == "failing", "staging failing")
    await asyncio.sleep(2.0)  # longer than internal's bake
    assert len(branch_log(str(remote), "auto")) == 2
    # Recovered: promotion goes on.
    await api.deployed("staging-eu", sha, health="Healthy")
    await api.wait_auto(3, "internal commit after recovery")


async def test_hold_and_release(api: Api, remote: Path) -> None:
    await api.operator("internal", "hold")
    await staging_runs(api, APP_SHA, 2)
    state = await api.wait_state(lambda d: bool(d["waves"][1]["promotions"]), "waiting")
    assert state["waves"][1]["gate"]["held"] is True
    await asyncio.sleep(2.0)
    assert len(branch_log(str(remote), "auto")) == 2
    await api.operator("internal", "release")
    await api.wait_auto(3, "internal commit after release")


async def test_rollback_to_previous(api: Api, remote: Path) -> None:
    first = await staging_runs(api, APP_SHA, 2)
    internal = await api.wait_auto(3, "internal commit")
    await api.status(internal, "success")
    await api.wait_master(internal)
    await staging_runs(api, B_SHA, 4)
    assert staging_app(remote, "master") == B_SHA
    await api.operator("staging", "rollback", {"to": "previous"})
    await api.wait_for_auto(
        lambda log: trailers.parse(log[0].message).get(trailers.REASON) == f"rollback to {APP_SHA}",
        "rollback commit",
    )
    assert staging_app(remote, "auto") == APP_SHA
    assert read(remote, "auto", "images/staging/digests.json") == read(
        remote, first, "images/staging/digests.json"
    )


async def test_bad_input_never_reaches_git(api: Api, remote: Path) -> None:
    """Every refusal code of the HTTP API (docs/architecture.md), with all services running:
    the repo stays as it was."""
    before = {ref: head(remote, ref) for ref in ("master", "auto")}
    client = api.client
    ci = {"Authorization": f"Bearer {CI_TOKEN}"}
    image = {"Tag": "r/s:1", "Digest": "sha256:" + "a" * 64}
    good: dict[str, Any] = {"pipeline": "app", "app_sha": APP_SHA, "images": {"svc": image}}
    cases: list[tuple[str, dict[str, str], bytes, int]] = [
        ("/v1/images", {}, json.dumps(good).encode(), 401),
        ("/v1/images", {"Authorization": "Bearer wrong"}, json.dumps(good).encode(), 403),
        ("/v1/images", ci, b"{broken", 400),
        ("/v1/images", ci, json.dumps({**good, "pipeline": "nope"}).encode(), 404),
        ("/v1/images", ci, b"{" + b" " * 400_000 + b"}", 413),
        ("/v1/images", ci, json.dumps({**good, "app_sha": "xyz"}).encode(), 422),
        (
            "/v1/images",
            ci,
            json.dumps({**good, "images": {"../../etc": image}}).encode(),
            422,
        ),
        ("/v1/pipelines/app/waves/staging/rollback", ci, b"{}", 403),
        ("/v1/webhooks/argocd", {}, b"{}", 401),
    ]
    for path, headers, body, status in cases:
        resp = await client.post(
            path, data=body, headers={**headers, "Content-Type": "application/json"}
        )
        assert resp.status == status, (path, status, await resp.text())
        assert set(await resp.json()) == {"error", "detail"}
    await asyncio.sleep(2.0)
    assert {ref: head(remote, ref) for ref in ("master", "auto")} == before


async def test_a_set_the_wave_never_ran_is_superseded_once_a_newer_one_arrives(
    api: Api, settings: Settings
) -> None:
    """A and B land on staging before its targets report; staging runs B. A's
    introduction can never arrive: it is superseded, not left in flight for ever."""
    await api.announce(APP_SHA)
    first = await api.wait_auto(2, "A's commit")
    await api.announce(B_SHA)
    second = await api.wait_auto(3, "B's commit")
    await api.status(first, "success")
    await api.status(second, "success")
    await api.wait_master(second)
    await api.deployed("staging-us", second)
    await api.deployed("staging-eu", second)
    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(),
        server_settings={"search_path": settings.database_schema},
    )
    try:
        async with asyncio.timeout(30):
            while True:
                rows = await conn.fetch(
                    "SELECT app_sha, status FROM promotions WHERE wave = 'staging'"
                )
                states = {r["app_sha"]: r["status"] for r in rows}
                if states.get(B_SHA) == "done":
                    break
                await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert states == {B_SHA: "done", APP_SHA: "superseded"}

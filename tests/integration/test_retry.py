"""Retry after eviction through the real ingest, promoter, git-writer and status-tracker
(Kafka, PostgreSQL, a bare remote): a set evicted by a failing required check, announced
again, becomes attempt 2 (a new commit on auto with its own Event-Id and
``Waveline-Attempt: 2``) whose green check fast-forwards watched; announcing while an attempt
is pending or on watched changes nothing; ``waveline retry`` does the same with an operator
token, after a restart of the services between the eviction and the retry."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import CI_TOKEN, OPERATOR_TOKEN
from tests.support import APP_SHA, branch_log, image_set, produce, running, wait_for
from waveline.cli.main import main as cli_main
from waveline.services.git_writer.attempts import command_id
from waveline.services.ingest import retry_store
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers
from waveline.shared.models.base import utcnow
from waveline.shared.models.checks import CheckReported

SERVICES = ["ingest", "promoter", "git-writer", "status-tracker"]
OTHER_SHA = "2222222222222222222222222222222222222222"
CI = {"Authorization": f"Bearer {CI_TOKEN}"}
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def head(remote: Path, branch: str) -> str:
    log = branch_log(str(remote), branch)
    return str(log[0].id) if log else ""


async def check(settings: Settings, sha: str, state: str) -> None:
    report = CheckReported(
        event_id=uuid.uuid4(),
        repo="cfg-app",
        sha=sha,
        context="ci/validate",
        state=state,
        reported_at=utcnow(),
    )
    await produce(settings, "waveline.checks", [report.to_bytes()], key=b"cfg-app")


async def announce(client: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await client.post("/v1/images", json=image_set(), headers=CI)
    assert resp.status == 202, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def wait_evicted(pool: asyncpg.Pool, sha: str) -> None:
    async with asyncio.timeout(30):
        while not await pool.fetchval("SELECT 1 FROM evictions WHERE sha = $1", sha):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


@pytest.mark.timeout(100)
async def test_evicted_sets_are_retried_by_announcement_and_by_waveline_retry(
    settings: Settings,
    config: WavelineConfig,
    secrets: Secrets,
    remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        running(SERVICES, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        pool = rts["ingest"].pool
        master = head(remote, "master")
        assert (await announce(client))["outcome"] == "announced"
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 2, what="attempt 1")
        first = head(remote, "auto")
        pending = await announce(client)
        assert (pending["outcome"], pending["attempt"]) == ("pending", 1), pending
        await check(settings, first, "failure")
        await wait_evicted(pool, first)
        assert head(remote, "auto") == master

        # Announced again after the eviction: attempt 2, a commit of its own.
        retried = await announce(client)
        assert (retried["outcome"], retried["attempt"]) == ("new_attempt", 2), retried
        await wait_for(lambda: head(remote, "auto") not in {first, master}, what="attempt 2")
        second = head(remote, "auto")
        info = trailers.parse(branch_log(str(remote), "auto")[0].message)
        assert info.get(trailers.ATTEMPT) == "2"
        assert info.event_id == str(command_id("app", "staging", APP_SHA, 2))
        assert info.get(trailers.APP_SHA) == APP_SHA
        # While it is pending, announcing again or retrying changes nothing.
        again = await announce(client)
        assert (again["outcome"], again["attempt"]) == ("pending", 2), again
        resp = await client.post(f"/v1/pipelines/app/sets/{APP_SHA}/retry", headers=OPERATOR)
        assert resp.status == 409
        assert "attempt 2 is on auto" in (await resp.json())["detail"]
        resp = await client.post(f"/v1/pipelines/app/sets/{'a' * 40}/retry", headers=OPERATOR)
        assert resp.status == 404
        assert (await resp.json())["error"] == "unknown_image_set"
        resp = await client.post(f"/v1/pipelines/app/sets/{APP_SHA}/retry", headers=CI)
        assert resp.status == 403
        # Attempt 2 flakes too.
        await check(settings, second, "failure")
        await wait_evicted(pool, second)
        assert len(branch_log(str(remote), "auto")) == 1

    # Every service restarted between the eviction and the retry (the git-writer's index
    # rebuilt from the remote's trailers).
    async with (
        running(SERVICES, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        monkeypatch.setenv("WAVELINE_URL", str(client.make_url("")).rstrip("/"))
        monkeypatch.setenv("WAVELINE_OPERATOR_TOKEN", OPERATOR_TOKEN)
        assert await asyncio.to_thread(cli_main, ["retry", "app", APP_SHA]) == 0
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 2, what="attempt 3")
        third = head(remote, "auto")
        info = trailers.parse(branch_log(str(remote), "auto")[0].message)
        assert info.get(trailers.ATTEMPT) == "3"
        assert info.event_id == str(command_id("app", "staging", APP_SHA, 3))
        # Refused while attempt 3 is on auto: exit 1, nothing more on auto.
        assert await asyncio.to_thread(cli_main, ["retry", "app", APP_SHA]) == 1
        # A later set's green commit takes attempt 3 onto watched with it.
        resp = await client.post("/v1/images", json=image_set(OTHER_SHA), headers=CI)
        assert resp.status == 202, await resp.text()
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 3, what="a later set")
        later = head(remote, "auto")
        assert str(branch_log(str(remote), "auto")[1].id) == third
        await check(settings, later, "success")
        await wait_for(lambda: head(remote, "master") == later, what="attempt 3 on watched")
        async with asyncio.timeout(30):
            # The status-tracker records the verdict after the fast-forward.
            while (await announce(client))["outcome"] != "on_watched":  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        assert head(remote, "auto") == later
        rows = await rts["ingest"].pool.fetch(
            "SELECT attempt, actor, source FROM set_attempts ORDER BY attempt"
        )
        # What a status view shows (retry_store.attempts_in).
        shown = await retry_store.attempts_in(rts["ingest"].pool, "app", "staging")
    assert [tuple(r) for r in rows] == [(2, "ci", "announce"), (3, "operator", "retry")]
    assert list(shown) == [APP_SHA]
    assert [(a.attempt, a.actor, a.source) for a in shown[APP_SHA]] == [
        (1, None, "first"),
        (2, "ci", "announce"),
        (3, "operator", "retry"),
    ]
    assert [a.evicted_at is not None for a in shown[APP_SHA]] == [True, True, False]

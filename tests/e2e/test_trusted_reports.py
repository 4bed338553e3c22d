"""Deploy reports, checks and approvals that must not count, tried for real with all five
services on Kafka, PostgreSQL and a bare git remote (docs/security.md, Deploy reports,
checks, approvals): each attack is refused and the repository is left as it was."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import GITHUB_SECRET, OPERATOR_TOKEN
from tests.e2e.test_waves import Api, head
from tests.support import (
    APP_SHA,
    branch_log,
    count_topic,
    produce,
    read_topic,
    running,
    wait_for,
)
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.models.waves import WaveStatus
from waveline.shared.runtime import Runtime

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
B_SHA = "2222222222222222222222222222222222222222"
NAMES = ["ingest", "git-writer", "status-tracker", "promoter", "notifier"]
HOLD_S = 1.0


@dataclass
class Stack:
    api: Api
    runtimes: dict[str, Runtime]
    settings: Settings
    remote: Path

    def metric(self, name: str, **labels: str) -> float:
        registry = self.runtimes["status-tracker"].waits.registry
        return registry.get_sample_value(name, labels) or 0.0

    async def counted(self, name: str, at_least: int, **labels: str) -> None:
        await wait_for(lambda: self.metric(name, **labels) >= at_least, what=f"{name} {labels}")

    def refs(self) -> dict[str, str]:
        return {ref: head(self.remote, ref) for ref in ("master", "auto")}

    async def github(
        self,
        event: str,
        doc: dict[str, Any],
        *,
        delivery: str | None = None,
        status: int = 202,
    ) -> dict[str, Any]:
        body = json.dumps({**doc, "repository": {"full_name": "remote/cfg-app"}}).encode()
        sig = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        resp = await self.api.client.post(
            "/v1/webhooks/github",
            data=body,
            headers={
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                "X-Hub-Signature-256": f"sha256={sig}",
                "Content-Type": "application/json",
            },
        )
        assert resp.status == status, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self.settings.database_url.get_secret_value(),
            server_settings={"search_path": self.settings.database_schema},
        )

    async def staging_runs(self, app_sha: str, sha: str) -> None:
        await self.api.status(sha, "success")
        await self.api.wait_master(sha)
        await self.api.deployed("staging-us", sha)
        await self.api.deployed("staging-eu", sha)
        await self.api.wait_state(
            lambda d: d["waves"][0]["app_sha"] == app_sha and d["waves"][0]["state"] == "running",
            f"staging runs {app_sha[:6]}",
        )


def _with_required(config: WavelineConfig, checks: list[Any], **wave_gates: Any) -> WavelineConfig:
    doc = config.model_dump(mode="json")
    doc["repos"]["cfg-app"]["required_checks"] = checks
    for wave in doc["pipelines"]["app"]["waves"]:
        if wave["name"] in wave_gates:
            wave["gate"] = wave_gates[wave["name"]]
    return WavelineConfig.model_validate(doc)


@contextlib.asynccontextmanager
async def _start(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> AsyncIterator[Stack]:
    settings = settings.model_copy(update={"deploy_hold_s": HOLD_S})
    async with (
        running(NAMES, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        yield Stack(Api(client, remote), rts, settings, remote)


@pytest.fixture
async def stack(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> AsyncIterator[Stack]:
    async with _start(settings, config, secrets, remote) as started:
        yield started


@pytest.fixture
async def app_checked(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> AsyncIterator[Stack]:
    """ci/validate must come from the GitHub App ``github-actions``."""
    config = _with_required(config, [{"name": "ci/validate", "app": "github-actions"}])
    async with _start(settings, config, secrets, remote) as started:
        yield started


@pytest.fixture
async def approved_internal(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> AsyncIterator[Stack]:
    """Promotion into internal needs an approval (no bake)."""
    config = _with_required(config, ["ci/validate"], internal={"approval": True})
    async with _start(settings, config, secrets, remote) as started:
        yield started


async def test_a_report_for_a_commit_not_on_watched_is_ignored(stack: Stack) -> None:
    api = stack.api
    await api.announce(APP_SHA)
    on_auto = await api.wait_auto(2, "staging commit")
    never = "9" * 40
    before = stack.refs()
    # Healthy on a commit still on auto (its checks not green) and on one never made.
    for target in ("staging-us", "staging-eu"):
        await api.deployed(target, on_auto)
    await api.deployed("staging-us", never)
    await stack.counted("waveline_deploy_reports_ignored_total", 3, reason="not_on_watched")
    state = await api.state()
    assert state["waves"][0]["state"] != "running"
    assert state["waves"][0]["app_sha"] is None
    assert stack.refs() == before
    conn = await stack.db()
    try:
        assert await conn.fetchval("SELECT count(*) FROM target_deploys") == 0
        assert await conn.fetchval("SELECT count(*) FROM held_deploys") == 0
    finally:
        await conn.close()
    # Once the commit is on watched, the early reports still do not count (Argo CD could
    # not have run it then): the wave waits for reports made since.
    await api.status(on_auto, "success")
    await api.wait_master(on_auto)
    await asyncio.sleep(2.0)
    assert len(branch_log(str(stack.remote), "auto")) == 2  # no promotion into internal
    assert (await api.state())["waves"][0]["state"] != "running"
    for target in ("staging-us", "staging-eu"):
        await api.deployed(target, on_auto)
    await api.wait_auto(3, "internal commit once staging really runs the set")


async def test_a_stale_report_neither_moves_a_target_back_nor_blocks_a_newer_set(
    stack: Stack,
) -> None:
    api = stack.api
    await api.announce(APP_SHA)
    first = await api.wait_auto(2, "A's staging commit")
    await stack.staging_runs(APP_SHA, first)
    internal_a = await api.wait_auto(3, "A's internal commit")
    await api.status(internal_a, "success")
    await api.wait_master(internal_a)
    # Hold internal, so B's promotion into it waits where a stale status could supersede it.
    await api.operator("internal", "hold")
    await api.wait_state(lambda d: d["waves"][1]["gate"]["held"], "internal held")
    await api.announce(B_SHA)
    second = await api.wait_auto(4, "B's staging commit")
    await stack.staging_runs(B_SHA, second)
    await api.wait_state(
        lambda d: any(p["app_sha"] == B_SHA for p in d["waves"][1]["promotions"]),
        "B waits at internal",
    )
    old_status = await _status_of(stack, "staging", APP_SHA)
    # A late report about the older commit, even a degraded one: ignored as stale.
    await api.deployed("staging-eu", first, health="Degraded")
    await stack.counted("waveline_deploy_reports_ignored_total", 1, reason="stale")
    # And the old wave status replayed on waveline.waves, running and failing.
    failing = old_status.model_copy(update={"event_id": uuid.uuid4(), "state": "failing"})
    await produce(stack.settings, "waveline.waves", [old_status.to_bytes(), failing.to_bytes()])
    await asyncio.sleep(2.0)
    conn = await stack.db()
    try:
        revision = await conn.fetchval(
            "SELECT revision FROM target_deploys WHERE target = 'staging-eu'"
        )
        waiting = await conn.fetchval(
            "SELECT status FROM promotions WHERE wave = 'internal' AND app_sha = $1", B_SHA
        )
    finally:
        await conn.close()
    assert revision == second
    assert waiting == "waiting"
    state = await api.state()
    assert (state["waves"][0]["state"], state["waves"][0]["app_sha"]) == ("running", B_SHA)
    assert len(branch_log(str(stack.remote), "auto")) == 4
    await api.operator("internal", "release")
    await api.wait_for_auto(
        lambda log: (
            trailers.parse(log[0].message).get(trailers.APP_SHA) == B_SHA
            and trailers.parse(log[0].message).get(trailers.TARGET) == "internal"
        ),
        "B's internal commit",
    )


async def _status_of(stack: Stack, wave: str, app_sha: str) -> WaveStatus:
    """The status the status-tracker published when ``wave`` ran ``app_sha``."""
    topic = f"{stack.settings.topic_prefix}waveline.waves"
    found = await read_topic(
        stack.settings.kafka_bootstrap,
        topic,
        until=lambda ms: any(m["wave"] == wave and m["app_sha"] == app_sha for m in ms),
    )
    doc = next(m for m in found if m["wave"] == wave and m["app_sha"] == app_sha)
    status = WaveStatus.model_validate(doc)
    assert status.cfg_position is not None
    return status


async def test_a_required_check_from_the_wrong_app_does_not_count(app_checked: Stack) -> None:
    stack = app_checked
    api = stack.api
    await api.announce(APP_SHA)
    sha = await api.wait_auto(2, "staging commit")
    before = stack.refs()
    success = {"sha": sha, "state": "success", "context": "ci/validate"}
    # A commit status from another App's bot, and from a user; a check run of another App.
    await stack.github("status", {**success, "sender": {"login": "evil[bot]", "type": "Bot"}})
    await stack.github("status", {**success, "sender": {"login": "mallory", "type": "User"}})
    await stack.github("status", success)  # no sender at all
    run = {
        "name": "ci/validate",
        "head_sha": sha,
        "status": "completed",
        "conclusion": "success",
        "app": {"slug": "evil"},
    }
    await stack.github("check_run", {"action": "completed", "check_run": run})
    await stack.counted("waveline_checks_ignored_total", 4, reason="untrusted_reporter")
    await asyncio.sleep(1.0)
    assert stack.refs() == before
    conn = await stack.db()
    try:
        assert await conn.fetchval("SELECT state FROM auto_commits WHERE sha = $1", sha) == (
            "pending"
        )
        assert await conn.fetchval("SELECT count(*) FROM commit_checks") == 0
    finally:
        await conn.close()
    # The App it names: counts.
    trusted = {**run, "app": {"slug": "github-actions"}}
    await stack.github("check_run", {"action": "completed", "check_run": trusted})
    await api.wait_master(sha)


async def test_a_replayed_github_delivery_changes_nothing(stack: Stack) -> None:
    api = stack.api
    await api.announce(APP_SHA)
    sha = await api.wait_auto(2, "staging commit")
    delivery = str(uuid.uuid4())
    pending = {"sha": sha, "state": "pending", "context": "ci/validate"}
    first = await stack.github("status", pending, delivery=delivery)
    assert "event_id" in first
    checks = f"{stack.settings.topic_prefix}waveline.checks"
    assert await count_topic(stack.settings.kafka_bootstrap, checks) == 1
    before = stack.refs()
    # GitHub's redelivery (the same body), and a signed body sent again under that id.
    again = await stack.github("status", pending, delivery=delivery, status=200)
    assert again == {"duplicate": True, "delivery": delivery}
    success = {**pending, "state": "success"}
    await stack.github("status", success, delivery=delivery, status=200)
    await asyncio.sleep(2.0)
    assert await count_topic(stack.settings.kafka_bootstrap, checks) == 1
    assert stack.refs() == before
    conn = await stack.db()
    try:
        assert await conn.fetchval("SELECT count(*) FROM github_deliveries") == 1
        assert await conn.fetchval("SELECT state FROM commit_checks WHERE sha = $1", sha) == (
            "pending"
        )
    finally:
        await conn.close()
    # A new delivery is handled.
    await stack.github("status", success)
    await api.wait_master(sha)


async def test_a_replayed_approval_never_approves_a_newer_set(approved_internal: Stack) -> None:
    stack = approved_internal
    api = stack.api
    await api.announce(APP_SHA)
    first = await api.wait_auto(2, "A's staging commit")
    await stack.staging_runs(APP_SHA, first)
    await api.wait_state(
        lambda d: any(p["app_sha"] == APP_SHA for p in d["waves"][1]["promotions"]),
        "A waits for approval into internal",
    )
    await api.operator("internal", "approve")
    await api.wait_auto(3, "A's internal commit")
    operator_topic = f"{stack.settings.topic_prefix}waveline.operator"
    (approval,) = await read_topic(
        stack.settings.kafka_bootstrap, operator_topic, until=lambda ms: len(ms) >= 1
    )
    assert (approval["action"], approval["app_sha"]) == ("approve", APP_SHA)
    internal_a = head(stack.remote, "auto")
    await api.status(internal_a, "success")
    await api.wait_master(internal_a)
    await api.announce(B_SHA)
    second = await api.wait_auto(4, "B's staging commit")
    await stack.staging_runs(B_SHA, second)
    await api.wait_state(
        lambda d: any(
            p["app_sha"] == B_SHA and p["status"] == "waiting" for p in d["waves"][1]["promotions"]
        ),
        "B waits for approval into internal",
    )
    before = stack.refs()
    # Replayed as it was, and as an older command that named no set.
    legacy = {k: v for k, v in approval.items() if k != "app_sha"}
    legacy["event_id"] = str(uuid.uuid4())
    await produce(
        stack.settings,
        "waveline.operator",
        [json.dumps(approval).encode(), json.dumps(legacy).encode()],
        key=b"app",
    )
    await asyncio.sleep(3.0)
    assert stack.refs() == before
    conn = await stack.db()
    try:
        row = await conn.fetchrow(
            "SELECT p.status, a.promotion_id IS NOT NULL AS approved FROM promotions p"
            " LEFT JOIN approvals a USING (promotion_id)"
            " WHERE p.wave = 'internal' AND p.app_sha = $1",
            B_SHA,
        )
    finally:
        await conn.close()
    assert row is not None
    assert (row["status"], row["approved"]) == ("waiting", False)
    # The one that named no set was refused as it was read, with the reason.
    letters = await read_topic(
        stack.settings.kafka_bootstrap,
        f"{stack.settings.topic_prefix}waveline.dlq",
        until=lambda ms: any(m["source_topic"].endswith("waveline.operator") for m in ms),
    )
    (letter,) = [m for m in letters if m["source_topic"].endswith("waveline.operator")]
    assert "names the image set it approves" in letter["reason"]
    # B's own approval names B.
    resp = await api.client.post(
        "/v1/pipelines/app/waves/internal/approve",
        json={},
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["app_sha"] == B_SHA
    await api.wait_auto(5, "B's internal commit")
    assert stack.refs()["auto"] != before["auto"]


async def test_a_late_approval_of_a_superseded_set_approves_nothing(
    approved_internal: Stack,
) -> None:
    """A waits for approval into internal; B runs staging and supersedes it at the gate; an
    approval of A delivered only now (a late redelivery) is refused and B stays waiting."""
    stack = approved_internal
    api = stack.api
    await api.announce(APP_SHA)
    first = await api.wait_auto(2, "A's staging commit")
    await api.announce(B_SHA)
    second = await api.wait_auto(3, "B's staging commit")
    await stack.staging_runs(APP_SHA, first)
    await api.wait_state(
        lambda d: any(p["app_sha"] == APP_SHA for p in d["waves"][1]["promotions"]),
        "A waits for approval into internal",
    )
    await stack.staging_runs(B_SHA, second)
    await api.wait_state(
        lambda d: [p["app_sha"] for p in d["waves"][1]["promotions"]] == [B_SHA],
        "B alone waits at internal",
    )
    before = stack.refs()
    late = OperatorCommand(
        event_id=uuid.uuid4(),
        pipeline="app",
        wave="internal",
        action="approve",
        actor="operator",
        issued_at=datetime.now(UTC),
        app_sha=APP_SHA,
    )
    await produce(stack.settings, "waveline.operator", [late.to_bytes()], key=b"app")
    letters = await read_topic(
        stack.settings.kafka_bootstrap,
        f"{stack.settings.topic_prefix}waveline.dlq",
        until=lambda ms: any(m["source_topic"].endswith("waveline.operator") for m in ms),
    )
    (letter,) = [m for m in letters if m["source_topic"].endswith("waveline.operator")]
    assert letter["error_code"] == "operator_command_refused"
    assert "needs its own approval" in letter["reason"]
    conn = await stack.db()
    try:
        approved = await conn.fetchval("SELECT count(*) FROM approvals")
        status = await conn.fetchval(
            "SELECT status FROM promotions WHERE wave = 'internal' AND app_sha = $1", B_SHA
        )
    finally:
        await conn.close()
    assert (approved, status) == (0, "waiting")
    await asyncio.sleep(1.0)
    assert stack.refs() == before

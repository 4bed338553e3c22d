"""A GitHub delivery that changes nothing says why (docs/security.md, A delivery that changes
nothing says why), on a real ingest over real Kafka and PostgreSQL: the answer names the
reason (and for an unknown repository the configured ones and the fix), each cause is
logged once however many deliveries share it, every one is counted, and ``waveline status``
shows the last one per repository and reason."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GITHUB_SECRET, OPERATOR_TOKEN
from tests.support import count_topic, make_config
from waveline.cli.main import main
from waveline.cli.ops import format_status
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.runtime import bootstrap

MIRROR = "https://git.mirror.example.com/cfg-app.git"
KNOWN = "remote/cfg-app"  # what the test config's url is taken for
PENDING, JUDGED = "a" * 40, "b" * 40
LOGGER = "waveline.services.ingest.ignored"
ROUNDS = 5


@contextlib.asynccontextmanager
async def ingest(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> AsyncIterator[TestClient[Any, Any]]:
    runtime = bootstrap("ingest", settings, config, secrets)
    await runtime.start()
    try:
        async with TestClient(TestServer(create_app(runtime))) as client:
            yield client
    finally:
        await runtime.stop()


async def deliver(
    client: TestClient[Any, Any], event: str, doc: dict[str, Any], repo: str | None = KNOWN
) -> tuple[int, dict[str, Any]]:
    if repo is not None:
        doc = {**doc, "repository": {"full_name": repo}}
    body = json.dumps(doc).encode()
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    resp = await client.post(
        "/v1/webhooks/github",
        data=body,
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={digest}",
            "Content-Type": "application/json",
        },
    )
    answer: dict[str, Any] = await resp.json()
    return resp.status, answer


def status(sha: str, context: str = "ci/validate") -> dict[str, Any]:
    return {"sha": sha, "state": "success", "context": context}


async def cli_status(
    client: TestClient[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """What ``waveline status app`` prints, against this ingest."""
    monkeypatch.setenv("WAVELINE_URL", str(client.make_url("")).rstrip("/"))
    monkeypatch.setenv("WAVELINE_OPERATOR_TOKEN", OPERATOR_TOKEN)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["status", "app"]) == 0
    return capsys.readouterr().out


async def test_a_mirror_url_is_answered_with_the_configured_repos_and_the_fix(
    settings: Settings,
    secrets: Secrets,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checks = f"{settings.topic_prefix}waveline.checks"
    async with asyncio.timeout(60), ingest(settings, make_config(MIRROR), secrets) as client:
        # GitHub's ping, the moment the webhook is created, already says what is wrong.
        code, ping = await deliver(client, "ping", {"zen": "hi", "hook_id": 1}, "acme/cfg-app")
        assert (code, ping["reason"]) == (200, "unknown_repository")
        code, answer = await deliver(client, "status", status(PENDING), "acme/cfg-app")
        assert code == 200, answer
        assert answer["ignored"] is True
        assert answer["reason"] == "unknown_repository"
        assert answer["forge_name"] == "acme/cfg-app"
        assert answer["configured_repositories"] == [
            {"repo": "cfg-app", "forge_name": "git.mirror.example.com/cfg-app", "from": "url"}
        ]
        assert "forge_name: acme/cfg-app" in answer["fix"]
        assert await count_topic(settings.kafka_bootstrap, checks) == 0
        text = await cli_status(client, monkeypatch, capsys)
    assert "about unknown repository acme/cfg-app" in text
    assert "(unknown_repository)" in text and "git.mirror.example.com/cfg-app (cfg-app)" in text
    # The fix: the same delivery counts once forge_name is set.
    doc = make_config(MIRROR).model_dump(mode="json")
    doc["repos"]["cfg-app"]["forge_name"] = "acme/cfg-app"
    fixed = WavelineConfig.model_validate(doc)
    async with asyncio.timeout(60), ingest(settings, fixed, secrets) as client:
        code, answer = await deliver(client, "status", status(PENDING), "acme/cfg-app")
        assert code == 202 and answer["reason"] == "sha_not_on_auto", answer
    assert await count_topic(settings.kafka_bootstrap, checks) == 1


async def test_each_cause_is_answered_logged_once_counted_and_shown(  # noqa: PLR0917
    settings: Settings,
    config: WavelineConfig,
    secrets: Secrets,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(),
        server_settings={"search_path": settings.database_schema},
    )
    try:
        await conn.executemany(
            "INSERT INTO auto_commits (repo, sha, state) VALUES ('cfg-app', $1, $2)",
            [(PENDING, "pending"), (JUDGED, "green")],
        )
    finally:
        await conn.close()
    caplog.set_level(logging.INFO, logger=LOGGER)
    labeled = {"action": "labeled", "number": 7, "pull_request": {"number": 7}}
    async with asyncio.timeout(60), ingest(settings, config, secrets) as client:
        for _ in range(ROUNDS):
            code, answer = await deliver(client, "status", status(PENDING, "ci/build"))
            assert (code, answer["reason"]) == (200, "context_not_required"), answer
            assert answer["required_checks"] == ["ci/validate"]
            unknown = uuid.uuid4().hex + "0" * 8
            code, answer = await deliver(client, "status", status(unknown))
            assert code == 202 and "event_id" in answer, answer
            assert (answer["ignored"], answer["reason"]) == (False, "sha_not_on_auto")
            assert "not (yet) known on auto" in answer["detail"]
            code, answer = await deliver(client, "status", status(JUDGED))
            assert (code, answer["reason"], answer["commit_state"]) == (
                200,
                "commit_already_judged",
                "green",
            )
            code, answer = await deliver(client, "status", status(PENDING))
            assert code == 202 and set(answer) == {"event_id"}, answer
            code, answer = await deliver(client, "status", status(PENDING), "someone/else")
            assert (code, answer["reason"]) == (200, "unknown_repository")
            code, answer = await deliver(client, "push", {"ref": "refs/heads/master"})
            assert (code, answer["reason"]) == (200, "event_not_read")
            code, answer = await deliver(client, "pull_request", labeled)
            assert (code, answer["reason"]) == (200, "action_not_read")
        metrics = await (await client.get("/metrics")).text()
        resp = await client.get(
            "/v1/pipelines/app", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
        assert resp.status == 200
        state = await resp.json()
        text = await cli_status(client, monkeypatch, capsys)
    checks = f"{settings.topic_prefix}waveline.checks"
    # Published: the unknown commits' checks and the pending commit's; nothing else.
    assert await count_topic(settings.kafka_bootstrap, checks) == 2 * ROUNDS
    logged = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    reasons = [line.split("(", 1)[1].split(")", 1)[0] for line in logged]
    assert sorted(reasons) == sorted(
        [
            "context_not_required",
            "sha_not_on_auto",
            "commit_already_judged",
            "unknown_repository",
            "event_not_read",
            "action_not_read",
        ]
    ), logged
    counted = {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "waveline_deliveries_ignored"
        for s in family.samples
        if s.name.endswith("_total") and s.labels["route"] == "github"
    }
    assert counted == {
        reason: ROUNDS
        for reason in (
            "context_not_required",
            "sha_not_on_auto",
            "commit_already_judged",
            "unknown_repository",
            "event_not_read",
            "action_not_read",
        )
    }
    # The pipeline's repo's rows, one per reason; routine ones and an unrelated repository
    # are not listed.
    shown = {row["reason"]: row for row in state["ignored_deliveries"]}
    assert set(shown) == {"context_not_required", "sha_not_on_auto", "commit_already_judged"}
    assert shown["context_not_required"]["context"] == "ci/build"
    assert shown["commit_already_judged"]["sha"] == JUDGED
    assert all(row["repo"] == "cfg-app" and row["known"] for row in shown.values())
    assert format_status(state) in text
    assert "(context_not_required): check 'ci/build' is not a required check" in text
    assert "(commit_already_judged)" in text and "(sha_not_on_auto)" in text

"""Ingest and GitHub deliveries on real Kafka and PostgreSQL: a check carries who reported
it, and a delivery id seen before is answered 200 without publishing anything
(docs/security.md, Deploy reports, checks, approvals)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import GITHUB_SECRET
from tests.support import count_topic, make_config, read_topic
from waveline.shared.config import Settings, WavelineConfig

SHA = "55576ca70ab6acdfaab7e5db445eaf79e41e6332"
REPO = {"full_name": "remote/cfg-app"}


async def deliver(
    client: TestClient[Any, Any], event: str, doc: dict[str, Any], delivery: str | None
) -> tuple[int, dict[str, Any]]:
    body = json.dumps({**doc, "repository": REPO}).encode()
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json",
    }
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    resp = await client.post("/v1/webhooks/github", data=body, headers=headers)
    doc_out: dict[str, Any] = await resp.json()
    return resp.status, doc_out


@pytest.fixture
def config(remote: Path) -> WavelineConfig:
    """The test config, requiring the check suite the cases report too (ingest drops a
    check whose context the repository does not require)."""
    doc = make_config(remote.as_uri()).model_dump(mode="json")
    doc["repos"]["cfg-app"]["required_checks"] = ["ci/validate", "check_suite:policy-bot"]
    return WavelineConfig.model_validate(doc)


@pytest.mark.parametrize(
    ("event", "doc", "reporter"),
    [
        (
            "status",
            {"sha": SHA, "state": "success", "context": "ci/validate"},
            {"app": None, "user": None},
        ),
        (
            "status",
            {
                "sha": SHA,
                "state": "success",
                "context": "ci/validate",
                "sender": {"login": "github-actions[bot]", "type": "Bot"},
            },
            {"app": "github-actions", "user": "github-actions[bot]"},
        ),
        (
            "status",
            {
                "sha": SHA,
                "state": "success",
                "context": "ci/validate",
                "sender": {"login": "alice", "type": "User"},
            },
            {"app": None, "user": "alice"},
        ),
        (
            "check_run",
            {
                "action": "completed",
                "check_run": {
                    "name": "ci/validate",
                    "head_sha": SHA,
                    "status": "completed",
                    "conclusion": "success",
                    "app": {"slug": "github-actions", "name": "GitHub Actions"},
                },
                "sender": {"login": "alice", "type": "User"},
            },
            {"app": "github-actions", "user": None},
        ),
        (
            "check_suite",
            {
                "action": "completed",
                "check_suite": {
                    "head_sha": SHA,
                    "status": "completed",
                    "conclusion": "success",
                    "app": {"slug": "policy-bot"},
                },
            },
            {"app": "policy-bot", "user": None},
        ),
    ],
)
async def test_a_check_carries_its_reporter(
    client: TestClient[Any, Any],
    settings: Settings,
    event: str,
    doc: dict[str, Any],
    reporter: dict[str, str | None],
) -> None:
    status, _ = await deliver(client, event, doc, str(uuid.uuid4()))
    assert status == 202
    (message,) = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.checks",
        until=lambda m: len(m) >= 1,
    )
    assert {k: message[k] for k in ("app", "user")} == reporter


async def test_the_same_result_from_another_reporter_is_another_event(
    client: TestClient[Any, Any],
) -> None:
    fact = {"sha": SHA, "state": "success", "context": "ci/validate"}
    _, trusted = await deliver(
        client, "status", {**fact, "sender": {"login": "ci[bot]", "type": "Bot"}}, None
    )
    _, other = await deliver(
        client, "status", {**fact, "sender": {"login": "evil[bot]", "type": "Bot"}}, None
    )
    assert trusted["event_id"] != other["event_id"]


async def test_a_delivery_seen_before_is_200_and_publishes_nothing(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    checks = f"{settings.topic_prefix}waveline.checks"
    delivery = str(uuid.uuid4())
    pending = {"sha": SHA, "state": "pending", "context": "ci/validate"}
    assert (await deliver(client, "status", pending, delivery))[0] == 202
    assert await count_topic(settings.kafka_bootstrap, checks) == 1
    for doc in (pending, {**pending, "state": "failure"}):
        status, answer = await deliver(client, "status", doc, delivery)
        assert (status, answer) == (200, {"duplicate": True, "delivery": delivery})
    # An ignored delivery's id is remembered too; a ping redelivered is a no-op as well.
    ping = str(uuid.uuid4())
    assert (await deliver(client, "ping", {"zen": "hi"}, ping))[1]["ignored"] is True
    assert (await deliver(client, "ping", {"zen": "hi"}, ping))[0] == 200
    # Without the header (GitHub always sends it) a delivery is handled as before.
    assert (await deliver(client, "status", pending, None))[0] == 202
    assert await count_topic(settings.kafka_bootstrap, checks) == 2
    status, answer = await deliver(client, "status", pending, "x" * 101)
    assert (status, answer["error"]) == (400, "malformed")

"""GitHub and Argo CD webhooks into real Kafka: signatures, mapping, dedup by meaning."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ARGOCD_TOKEN, GITHUB_SECRET
from tests.support import count_topic, read_topic
from waveline.shared.config import Settings

SHA = "55576ca70ab6acdfaab7e5db445eaf79e41e6332"


def signed(event: str, doc: dict[str, Any], secret: str = GITHUB_SECRET) -> dict[str, Any]:
    body = json.dumps(doc).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "data": body,
        "headers": {
            "X-GitHub-Event": event,
            # Each delivery its own id: one seen before is answered 200 and not published.
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={digest}",
            "Content-Type": "application/json",
        },
    }


def status(state: str, context: str = "ci/validate") -> dict[str, Any]:
    return {
        "sha": SHA,
        "state": state,
        "context": context,
        "branches": [{"name": "auto"}],
        "repository": {"full_name": "remote/cfg-app"},
    }


async def test_status_is_published_with_the_config_repo_key(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    first = await client.post("/v1/webhooks/github", **signed("status", status("success")))
    assert first.status == 202, await first.text()
    again = await client.post("/v1/webhooks/github", **signed("status", status("success")))
    assert (await again.json())["event_id"] == (await first.json())["event_id"]
    messages = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.checks",
        until=lambda m: len(m) >= 2,
    )
    assert messages[0]["repo"] == "cfg-app"
    assert messages[0]["state"] == "success"
    assert messages[0]["context"] == "ci/validate"
    assert messages[0]["branches"] == ["auto"]


@pytest.mark.parametrize(
    ("run", "state"),
    [
        ({"status": "in_progress", "conclusion": None}, "pending"),
        ({"status": "completed", "conclusion": "success"}, "success"),
        ({"status": "completed", "conclusion": "skipped"}, "success"),
        ({"status": "completed", "conclusion": "timed_out"}, "failure"),
        ({"status": "completed", "conclusion": "failure"}, "failure"),
    ],
)
async def test_check_runs_map_to_states(
    client: TestClient[Any, Any], settings: Settings, run: dict[str, Any], state: str
) -> None:
    doc = {
        "action": "completed",
        "check_run": {"head_sha": SHA, "name": "ci/validate", "head_branch": "auto", **run},
        "repository": {"full_name": "remote/cfg-app"},
    }
    resp = await client.post("/v1/webhooks/github", **signed("check_run", doc))
    assert resp.status == 202
    messages = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.checks",
        until=lambda m: len(m) >= 1,
    )
    assert (messages[0]["context"], messages[0]["state"], messages[0]["kind"]) == (
        "ci/validate",
        state,
        "check_run",
    )


@pytest.mark.parametrize(
    ("event", "doc", "headers", "status_code"),
    [
        ("status", status("success"), {"X-Hub-Signature-256": "sha256=" + "0" * 64}, 403),
        ("status", status("success"), {"X-Hub-Signature-256": ""}, 401),
        # Ignored deliveries are 200 with why (test_ignored_deliveries.py).
        ("ping", {"zen": "Keep it logically awesome."}, {}, 200),
        ("push", {"ref": "refs/heads/master"}, {}, 200),
        ("status", {**status("success"), "repository": {"full_name": "someone/else"}}, {}, 200),
        ("status", status("success", context="ci/other"), {}, 200),
        ("status", {**status("success"), "sha": "nope"}, {}, 422),
        ("status", {**status("bogus")}, {}, 422),
    ],
)
async def test_refused_or_ignored_deliveries_publish_nothing(  # noqa: PLR0917
    client: TestClient[Any, Any],
    settings: Settings,
    event: str,
    doc: dict[str, Any],
    headers: dict[str, str],
    status_code: int,
) -> None:
    request = signed(event, doc)
    request["headers"].update(headers)
    resp = await client.post("/v1/webhooks/github", **request)
    assert resp.status == status_code, await resp.text()
    assert (
        await count_topic(settings.kafka_bootstrap, f"{settings.topic_prefix}waveline.checks") == 0
    )


async def test_signature_over_the_exact_bytes(client: TestClient[Any, Any]) -> None:
    request = signed("status", status("success"))
    request["data"] = request["data"].replace(b'"success"', b'"failure"')  # tampered body
    resp = await client.post("/v1/webhooks/github", **request)
    assert resp.status == 403


async def test_argocd_webhook(client: TestClient[Any, Any], settings: Settings) -> None:
    doc = {
        "app": "staging-us",
        "revision": SHA,
        "phase": "Succeeded",
        "health": "Healthy",
        "sync": "Synced",
    }
    auth = {"Authorization": f"Bearer {ARGOCD_TOKEN}"}
    assert (await client.post("/v1/webhooks/argocd", json=doc, headers=auth)).status == 202
    assert (await client.post("/v1/webhooks/argocd", json=doc)).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.post("/v1/webhooks/argocd", json=doc, headers=wrong)).status == 403
    other = {**doc, "app": "not-a-target"}
    assert (await client.post("/v1/webhooks/argocd", json=other, headers=auth)).status == 204
    never_synced = {**doc, "phase": "<no value>", "health": "Degraded"}
    assert (await client.post("/v1/webhooks/argocd", json=never_synced, headers=auth)).status == 202
    bad = {**doc, "revision": "zz"}
    assert (await client.post("/v1/webhooks/argocd", json=bad, headers=auth)).status == 422
    messages = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.deploys",
        until=lambda m: len(m) >= 2,
    )
    assert [m["health"] for m in messages] == ["Healthy", "Degraded"]
    assert messages[0]["app"] == "staging-us"

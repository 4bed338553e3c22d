"""The notifier's secrets: a webhook target's ``signing_key`` apart from its bearer token, and
dead-letter notifications that carry the reason and a digest of the payload, never the payload.

First against a real receiver on loopback (no Kafka), then through the whole path: a notifier
on real Kafka and PostgreSQL delivering to real receivers, with the stored delivery bodies
read back from PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from tests.infra import Infra
from tests.integration.test_notifier import (
    EVENTS_ENV,
    EVENTS_TOKEN,
    HOOK_ENV,
    Receivers,
    announced,
    dead_letter,
    notifier_config,
    produce,
    query,
    requested,
    serve_receivers,
)
from tests.support import isolated_settings, running, wait_for
from waveline.services.notifier.cloudevents import CONTENT_TYPE
from waveline.services.notifier.events import Occurrence, dead_letter_occurrence
from waveline.services.notifier.events import notification_deliveries as deliveries_for
from waveline.services.notifier.http import deliver_once
from waveline.services.notifier.signing import verify
from waveline.services.notifier.target import WebhookTarget
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.errors import ConfigError
from waveline.shared.models.dlq import DeadLetter

pytestmark = pytest.mark.timeout(60)

BEARER = "bearer-only-token-5a1c9e"
SIGNING_KEY = "signing-key-apart-7d2b4f"
# A credential a dead-lettered message held (a value in a payload, not one Waveline uses): it
# must reach no notification and no stored body.
PLANTED = "payload-held-credential-0x5f3759df"


# -- a receiver on loopback, no Kafka --------------------------------------------------------


@dataclass
class Seen:
    headers: dict[str, str]
    body: bytes


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[Seen]]]:
    seen: list[Seen] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(Seen(dict(request.headers), await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/hook")), seen


async def _deliver(target: WebhookTarget, body: bytes) -> None:
    async with aiohttp.ClientSession() as session:
        attempt = await deliver_once(session, target, body, CONTENT_TYPE)
    assert attempt.delivered


async def test_a_signing_key_signs_and_the_token_is_only_the_bearer(
    receiver: tuple[str, list[Seen]],
) -> None:
    url, seen = receiver
    target = WebhookTarget.from_secret(
        f"address: {url}\ntoken: {BEARER}\nsigning_key: {SIGNING_KEY}\n"
    )
    await _deliver(target, b'{"n":1}')
    [got] = seen
    assert got.headers["Authorization"] == f"Bearer {BEARER}"
    assert verify(got.body, SIGNING_KEY, got.headers["X-Signature"])
    assert not verify(got.body, BEARER, got.headers["X-Signature"])
    assert BEARER not in got.headers["X-Signature"]


async def test_a_signing_key_alone_signs_without_a_bearer(
    receiver: tuple[str, list[Seen]],
) -> None:
    url, seen = receiver
    await _deliver(
        WebhookTarget.from_secret(f"address: {url}\nsigning_key: {SIGNING_KEY}\n"), b"{}"
    )
    [got] = seen
    assert "Authorization" not in got.headers
    assert verify(b"{}", SIGNING_KEY, got.headers["X-Signature"])


async def test_without_a_signing_key_the_token_still_signs(
    receiver: tuple[str, list[Seen]],
) -> None:
    """Flux's generic-hmac behaviour is unchanged for secrets without ``signing_key``."""
    url, seen = receiver
    await _deliver(WebhookTarget.from_secret(f"address: {url}\ntoken: {BEARER}\n"), b"{}")
    [got] = seen
    assert got.headers["Authorization"] == f"Bearer {BEARER}"
    assert verify(b"{}", BEARER, got.headers["X-Signature"])


def test_the_signing_key_is_a_secret_like_the_token() -> None:
    target = WebhookTarget.from_secret(
        f"address: https://h.example/x\ntoken: {BEARER}\nsigning_key: {SIGNING_KEY}\n"
    )
    assert SIGNING_KEY not in repr(target) and SIGNING_KEY not in str(target)
    assert SIGNING_KEY in target.secret_values()
    assert SIGNING_KEY not in target.redact(f"failed with key {SIGNING_KEY}")
    with pytest.raises(ConfigError) as caught:
        WebhookTarget.from_secret(f"address: https://h.example/x\nsigning_key: '{SIGNING_KEY}\x01'")
    assert SIGNING_KEY not in str(caught.value)
    empty = WebhookTarget.from_secret("address: https://h.example/x\nsigning_key: ~\n")
    assert empty.signing_key is None and empty.signature_key is None


# -- dead-letter notifications, pure ---------------------------------------------------------


def _letter_about(payload: bytes) -> DeadLetter:
    return DeadLetter.about(
        payload,
        service="git-writer",
        source_topic="waveline.git.commands",
        error_code="invalid_message",
        reason="field 'images' is missing",
        retriable=False,
        key="cfg-app",
    )


def _config() -> WavelineConfig:
    return WavelineConfig.model_validate(
        {
            "repos": {"r": {"url": "https://git.example/r.git"}},
            "pipelines": {
                "p": {
                    "repo": "r",
                    "layout": {"kind": "images-json"},
                    "waves": [{"name": "w", "targets": ["t"]}],
                }
            },
            "notifications": {
                "events": {"url": "https://events.example/x"},
                "chat": {"format": "slack", "url": "https://chat.example/x"},
            },
        }
    )


def test_a_dead_letter_notification_carries_a_digest_not_the_payload() -> None:
    payload = json.dumps({"token": PLANTED, "pad": "x" * 10_000}).encode()
    letter = _letter_about(payload)
    assert PLANTED in letter.payload  # the letter itself keeps its head
    occurrence = dead_letter_occurrence(letter, "waveline.dlq")
    bodies = [d.body for d in deliveries_for(_config(), occurrence)]
    assert len(bodies) == 2
    for body in bodies:
        assert PLANTED.encode() not in body
        assert b"field 'images' is missing" in body
    cloud = json.loads(next(b for b in bodies if b"specversion" in b))
    assert cloud["type"] == "io.waveline.deadletter"
    data = cloud["data"]
    assert "payload" not in data
    assert data["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert data["payload_bytes"] == len(payload)
    assert data["payload_digest_of"] == "payload"
    assert (data["error_code"], data["reason"], data["key"]) == (
        "invalid_message",
        "field 'images' is missing",
        "cfg-app",
    )


def test_a_letter_without_a_digest_is_digested_from_its_head() -> None:
    old = _letter_about(b"{}").model_copy(
        update={"payload": PLANTED, "payload_sha256": None, "payload_bytes": None}
    )
    occurrence: Occurrence = dead_letter_occurrence(old, "waveline.dlq")
    assert occurrence.data["payload_digest_of"] == "head"
    assert occurrence.data["payload_sha256"] == hashlib.sha256(PLANTED.encode()).hexdigest()
    assert PLANTED not in json.dumps(occurrence.data)


# -- the whole path: a notifier on real Kafka and PostgreSQL ---------------------------------


@dataclass
class World:
    settings: Settings
    receivers: Receivers


@pytest.fixture(scope="module")
async def world(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    data_dir = tmp_path_factory.mktemp("notifier-secrets") / "data"
    async with (
        isolated_settings(infra.bootstrap, infra.database_url, data_dir) as settings,
        serve_receivers() as receivers,
    ):
        config = notifier_config("file:///nonexistent/cfg-app.git", receivers.base)
        base = receivers.base
        secrets = Secrets(
            named={
                HOOK_ENV: SecretStr(
                    f"address: {base}/hook\ntoken: {BEARER}\nsigning_key: {SIGNING_KEY}\n"
                ),
                EVENTS_ENV: SecretStr(f"address: {base}/events\ntoken: {EVENTS_TOKEN}\n"),
            }
        )
        async with running(["notifier"], settings, config, secrets):
            yield World(settings, receivers)


async def test_the_notifier_signs_promotions_with_the_signing_key(world: World) -> None:
    event = requested()
    await produce(world.settings, "waveline.promotions", "app", event)
    await announced(world.settings, event.promotion_id, "delivered")
    [hit] = world.receivers.hook.containing(event.promotion_id)
    assert hit.headers["Authorization"] == f"Bearer {BEARER}"
    assert verify(hit.body, SIGNING_KEY, hit.headers["X-Signature"])
    assert not verify(hit.body, BEARER, hit.headers["X-Signature"])


async def test_a_dead_letter_is_notified_without_its_payload(world: World) -> None:
    letter = dead_letter("git_failed").model_copy(
        update={
            "payload": json.dumps({"token": PLANTED}),
            "payload_sha256": "ab" * 32,
            "payload_bytes": 1234,
        }
    )
    await produce(world.settings, "waveline.dlq", "cfg-app", letter)
    await wait_for(lambda: bool(world.receivers.events.of(letter.event_id)), what="the notice")
    await wait_for(
        lambda: bool(world.receivers.chat.containing(letter.reason)), what="the chat notice"
    )
    [notice] = world.receivers.events.of(letter.event_id)
    [chat] = world.receivers.chat.containing(letter.reason)
    for body in (notice.body, chat.body):
        assert PLANTED.encode() not in body
    data = notice.json["data"]
    assert "payload" not in data
    assert (data["payload_sha256"], data["payload_bytes"]) == ("ab" * 32, 1234)
    assert data["reason"] == letter.reason
    ids = [uuid.uuid5(letter.event_id, name) for name in ("events", "chat")]
    rows = await query(
        world.settings, "SELECT body FROM deliveries WHERE delivery_id = ANY($1)", ids
    )
    assert len(rows) == 2
    for row in rows:
        assert PLANTED.encode() not in bytes(row["body"])

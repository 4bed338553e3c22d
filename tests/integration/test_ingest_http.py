"""ingest over real HTTP and real Kafka: 202 only after the broker acked; bad input never
reaches Kafka."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import CI_TOKEN
from tests.support import APP_SHA, DIGEST_1, count_topic, image_set, read_topic
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.runtime import bootstrap

AUTH = {"Authorization": f"Bearer {CI_TOKEN}"}


async def test_accepts_an_image_set_and_publishes_it(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    resp = await client.post("/v1/images", json=image_set(), headers=AUTH)
    assert resp.status == 202, await resp.text()
    event_id = (await resp.json())["event_id"]
    topic = f"{settings.topic_prefix}waveline.images"
    messages = await read_topic(settings.kafka_bootstrap, topic, until=lambda m: len(m) >= 1)
    assert messages[0]["event_id"] == event_id
    assert messages[0]["app_sha"] == APP_SHA
    assert messages[0]["source"] == "http"
    assert messages[0]["images"]["Service1"]["Digest"].endswith(DIGEST_1)


async def test_accepts_bare_object_per_pipeline(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    resp = await client.post(
        f"/v1/pipelines/app/images?app_sha={APP_SHA}", json=image_set()["images"], headers=AUTH
    )
    assert resp.status == 202, await resp.text()
    topic = f"{settings.topic_prefix}waveline.images"
    messages = await read_topic(settings.kafka_bootstrap, topic, until=lambda m: len(m) >= 1)
    assert messages[0]["pipeline"] == "app"


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "error"),
    [
        ("/v1/images", json.dumps(image_set()).encode(), {}, 401, "unauthorized"),
        (
            "/v1/images",
            json.dumps(image_set()).encode(),
            {"Authorization": "Bearer nope"},
            403,
            "forbidden",
        ),
        ("/v1/images", b"{not json", AUTH, 400, "malformed"),
        ("/v1/images", b"[1, 2]", AUTH, 400, "malformed"),
        (
            "/v1/images",
            json.dumps({**image_set(), "pipeline": "nope"}).encode(),
            AUTH,
            404,
            "unknown_pipeline",
        ),
        (
            "/v1/images",
            json.dumps({**image_set(), "app_sha": "zz"}).encode(),
            AUTH,
            422,
            "invalid_field",
        ),
        (
            "/v1/images",
            json.dumps(
                {**image_set(), "images": {"../x": {"Tag": "r/s:1", "Digest": DIGEST_1}}}
            ).encode(),
            AUTH,
            422,
            "invalid_field",
        ),
        ("/v1/images", b"{" + b" " * 300_000 + b"}", AUTH, 413, "too_large"),
        (
            "/v1/pipelines/app/images",
            json.dumps(image_set()["images"]).encode(),
            AUTH,
            422,
            "invalid_field",
        ),
        (f"/v1/pipelines/nope/images?app_sha={APP_SHA}", b"{}", AUTH, 404, "unknown_pipeline"),
    ],
)
async def test_bad_input_gets_clear_error_and_publishes_nothing(  # noqa: PLR0917
    client: TestClient[Any, Any],
    settings: Settings,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    resp = await client.post(
        path, data=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert resp.status == status, await resp.text()
    doc = await resp.json()
    assert doc["error"] == error
    assert "detail" in doc
    assert CI_TOKEN not in json.dumps(doc)
    assert (
        await count_topic(settings.kafka_bootstrap, f"{settings.topic_prefix}waveline.images") == 0
    )


async def test_health_endpoints(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["checks"] == {"kafka": "ok", "postgres": "ok"}
    await client.post("/v1/images", json=image_set(), headers=AUTH)
    metrics = await (await client.get("/metrics")).text()
    assert 'waveline_ingest_requests_total{route="/v1/images",status="202"} 1.0' in metrics
    assert "waveline_ingest_accept_seconds_bucket" in metrics


async def test_503_when_kafka_cannot_take_the_event(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    """A broker that stops answering must never yield a 202."""
    runtime = bootstrap(
        "ingest", settings.model_copy(update={"publish_timeout_s": 2.0}), config, secrets
    )
    await runtime.start()
    async with TestClient(TestServer(create_app(runtime))) as client:
        # Publishing to a topic that does not exist (auto-create is off) never gets an ack:
        # the same path a dead broker takes, without killing the shared broker.
        runtime.topics = type(runtime.topics)(prefix="missing-" + settings.topic_prefix)
        resp = await client.post("/v1/images", json=image_set(), headers=AUTH)
        assert resp.status == 503
        assert (await resp.json())["error"] == "unavailable"
    await runtime.stop()

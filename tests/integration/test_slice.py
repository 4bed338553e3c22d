"""The first slice through real Kafka, Postgres and git: announce → promoter → git-writer →
commit on ``auto``; duplicates and bad messages on the topic included."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import CI_TOKEN
from tests.support import APP_SHA, branch_log, image_set, produce, read_topic, running, wait_for
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers

OTHER_SHA = "2222222222222222222222222222222222222222"


async def test_http_announcement_becomes_a_commit_on_auto(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Any
) -> None:
    async with running(["ingest", "promoter", "git-writer"], settings, config, secrets) as rts:
        async with TestClient(TestServer(create_app(rts["ingest"]))) as client:
            resp = await client.post(
                "/v1/images", json=image_set(), headers={"Authorization": f"Bearer {CI_TOKEN}"}
            )
            assert resp.status == 202
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 2, what="commit on auto")
        events = await read_topic(
            settings.kafka_bootstrap,
            f"{settings.topic_prefix}waveline.git.events",
            until=lambda m: len(m) >= 1,
        )
    head = branch_log(str(remote), "auto")[0]
    info = trailers.parse(head.message)
    assert info.get(trailers.APP_SHA) == APP_SHA
    assert info.get(trailers.TARGET) == "staging"
    assert info.get(trailers.PIPELINE) == "app"
    assert info.get(trailers.REASON) == "new images published"
    assert events[0]["outcome"] == "committed"
    assert events[0]["sha"] == str(head.id)
    assert events[0]["trailers"][trailers.EVENT_ID] == info.event_id


async def test_direct_kafka_duplicates_and_bad_messages(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Any
) -> None:
    """CI producing straight to waveline.images: the same set twice gives one commit, a bad
    message goes to the dead-letter topic with the reason, and the consumer carries on."""
    good = json.dumps(image_set()).encode()
    bad = json.dumps({**image_set(), "app_sha": "not-a-sha"}).encode()
    later = json.dumps(image_set(OTHER_SHA)).encode()
    await produce(
        settings, "waveline.images", [good, good, b"\xff garbage", bad, later], key=b"app"
    )
    async with running(["promoter", "git-writer"], settings, config, secrets):
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 3, what="two commits")
        letters = await read_topic(
            settings.kafka_bootstrap,
            f"{settings.topic_prefix}waveline.dlq",
            until=lambda m: len(m) >= 2,
        )
        events = await read_topic(
            settings.kafka_bootstrap,
            f"{settings.topic_prefix}waveline.git.events",
            until=lambda m: len(m) >= 2,
        )
    shas = [
        trailers.parse(c.message).get(trailers.APP_SHA) for c in branch_log(str(remote), "auto")
    ]
    assert shas[:2] == [OTHER_SHA, APP_SHA]
    assert {letter["error_code"] for letter in letters} == {"invalid_message"}
    assert any("app_sha" in letter["reason"] for letter in letters)
    assert all(letter["service"] == "promoter" for letter in letters)
    # The duplicate makes no second commit: either the promoter absorbed it (both copies
    # in one batch) or git-writer answered it with the very same event (same id).
    by_id = {e["event_id"]: e["outcome"] for e in events}
    assert sorted(by_id.values()) == ["committed", "committed"]
    assert len(events) in {2, 3}

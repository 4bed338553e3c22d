"""Promotion strategies end to end, all five services on real Kafka, Postgres and git:
production by pull request on a (fake, GitHub-shaped) forge — opened, updated by a newer
promotion, merged → done and deployed — and production by webhook — delivered signed,
result reported → done; receiver down → retried → dead letter."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.conftest import GITHUB_SECRET, OPERATOR_TOKEN
from tests.e2e.test_waves import Api, head
from tests.fakegithub import FakeGitHub
from tests.support import make_config, read_topic, running, wait_for
from waveline.services.ingest.app import create_app
from waveline.services.notifier.signing import verify
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
A_SHA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
B_SHA = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
C_SHA = "cccccccccccccccccccccccccccccccccccccccc"
FORGE_TOKEN = "forge-token-for-e2e-5b1f0c9d"
HOOK_TOKEN = "hook-hmac-token-for-e2e-77a1c3"
RESULT_TOKEN = "result-token-for-e2e-0d4e2a"
NAMES = ["ingest", "git-writer", "status-tracker", "promoter", "notifier"]


def strategy_config(remote: Path, production: dict[str, Any], **repo: Any) -> WavelineConfig:
    doc = make_config(remote.as_uri()).model_dump(mode="json")
    doc["repos"]["cfg-app"].update(repo)
    production_wave = doc["pipelines"]["app"]["waves"][2]
    production_wave["strategy"] = production
    production_wave["gate"] = {"approval": False}
    doc["delivery"] = {"max_attempts": 3, "backoff": 0.2, "cap": 1, "timeout": 2}
    return WavelineConfig.model_validate(doc)


async def walk_to_production_gate(api: Api, app_sha: str, auto_len: int) -> tuple[str, str]:
    """Announce ``app_sha`` and walk it through staging and internal (both deployed);
    returns (staging commit, internal commit)."""
    await api.announce(app_sha)
    c1 = await api.wait_auto(auto_len + 1, f"staging commit of {app_sha[:6]}")
    await api.status(c1, "success")
    await api.wait_master(c1)
    await api.deployed("staging-us", c1)
    await api.deployed("staging-eu", c1)
    c2 = await api.wait_auto(auto_len + 2, f"internal commit of {app_sha[:6]}")
    await api.status(c2, "success")
    await api.wait_master(c2)
    await api.deployed("internal-us", c2)
    return c1, c2


async def promotions(settings: Settings, until: Any) -> list[dict[str, Any]]:
    return await read_topic(
        settings.kafka_bootstrap, f"{settings.topic_prefix}waveline.promotions", until=until
    )


def has(status: str, app_sha: str, wave: str = "production") -> Any:
    return lambda ms: any(
        m["status"] == status and m["app_sha"] == app_sha and m["to_wave"] == wave for m in ms
    )


# -- pull request -------------------------------------------------------------------------


async def test_production_by_pull_request(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    async with FakeGitHub(
        {"remote/cfg-app": remote}, token=FORGE_TOKEN, webhook_secret=GITHUB_SECRET
    ) as gh:
        config = strategy_config(
            remote,
            {"kind": "pull-request"},
            forge={"api_url": gh.url, "token_env": "WAVELINE_GITHUB_TOKEN"},
        )
        secrets = secrets.model_copy(
            update={"named": {"WAVELINE_GITHUB_TOKEN": SecretStr(FORGE_TOKEN)}}
        )
        async with (
            running(NAMES, settings, config, secrets) as rts,
            TestClient(TestServer(create_app(rts["ingest"]))) as client,
        ):
            gh.send_webhooks_to(str(client.make_url("/v1/webhooks/github")))
            api = Api(client, remote)
            branch = "waveline/app/production"

            # A: production is promoted by a pull request, not by a commit on auto.
            _, a_internal = await walk_to_production_gate(api, A_SHA, 1)
            await wait_for(lambda: bool(pull_numbers(gh)), what="pull request opened")
            number = pull_numbers(gh)[0]
            pr = gh.pull("remote/cfg-app", number)
            assert pr["base"]["ref"] == "master"
            assert pr["head"]["ref"] == branch
            assert A_SHA in pr["body"]
            assert "Autocommit-Event-Id" in pr["body"]
            assert head(remote, "auto") == a_internal  # auto untouched by the promotion
            opened = [r for r in gh.requests if r.method == "POST" and r.path.endswith("/pulls")]
            assert opened[0].headers["Authorization"] == f"Bearer {FORGE_TOKEN}"
            state = await api.wait_state(
                lambda d: any(p["status"] == "opened" for p in d["waves"][2]["promotions"]),
                "promotion shown as opened",
            )
            assert state["waves"][2]["strategy"] == "pull-request"
            assert state["pull_requests"][0]["number"] == number

            # B: a newer set updates the same pull request; A's promotion is superseded.
            _, b_internal = await walk_to_production_gate(api, B_SHA, 3)
            await wait_for(
                lambda: B_SHA in gh.pull("remote/cfg-app", number)["body"],
                what="pull request updated for B",
            )
            assert pull_numbers(gh) == [number]
            b_head = head(remote, branch)
            info = trailers.parse(_message(remote, b_head))
            assert info.get(trailers.APP_SHA) == B_SHA
            assert gh.pull("remote/cfg-app", number)["head"]["sha"] == b_head
            await promotions(settings, has("superseded", A_SHA))

            # Merge on the forge → done; watched moves, auto follows, production deploys B.
            merged = await gh.merge("remote/cfg-app", number)
            await promotions(settings, has("done", B_SHA))
            await wait_for(lambda: head(remote, "auto") == merged, what="auto aligned on merge")
            assert head(remote, "master") == merged
            assert b_internal != merged
            await api.deployed("prod-us", merged)
            state = await api.wait_state(
                lambda d: d["waves"][2]["app_sha"] == B_SHA, "production runs B"
            )
            assert state["waves"][2]["state"] == "running"
            assert state["pull_requests"][0]["state"] == "merged"


def pull_numbers(gh: FakeGitHub) -> list[int]:
    return gh.numbers("remote/cfg-app")


def _message(remote: Path, sha: str) -> str:
    import pygit2

    commit = pygit2.Repository(str(remote)).get(sha)
    assert isinstance(commit, pygit2.Commit)
    return commit.message


# -- webhook ------------------------------------------------------------------------------


class Receiver:
    """The external promotion system: records deliveries; answers ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.seen: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/promote", rec.handle)
    async with TestServer(app) as server:
        yield rec, str(server.make_url("/promote"))


async def test_production_by_webhook(
    settings: Settings,
    secrets: Secrets,
    remote: Path,
    receiver: tuple[Receiver, str],
) -> None:
    rec, url = receiver
    config = strategy_config(remote, {"kind": "webhook", "secret_env": "WAVELINE_PROMOTION_HOOK"})
    secret = f"address: {url}\ntoken: {HOOK_TOKEN}\nheaders: |\n  X-Team: platform\n"
    secrets = secrets.model_copy(update={"named": {"WAVELINE_PROMOTION_HOOK": SecretStr(secret)}})
    async with (
        running(NAMES, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        api = Api(client, remote)
        _, a_internal = await walk_to_production_gate(api, A_SHA, 1)
        await wait_for(lambda: bool(rec.seen), what="promotion delivered")
        headers, body = rec.seen[0]
        assert verify(body, HOOK_TOKEN, headers["X-Signature"])
        assert headers["Authorization"] == f"Bearer {HOOK_TOKEN}"
        assert headers["X-Team"] == "platform"
        event = json.loads(body)
        assert event["specversion"] == "1.0"
        assert event["type"] == "io.waveline.promotion.requested"
        assert event["data"]["to_wave"] == "production"
        assert event["data"]["from_wave"] == "internal"
        assert event["data"]["config_commit"] == a_internal
        assert set(event["data"]["images"]) == {"Service1", "Service2"}
        await promotions(settings, has("delivered", A_SHA))
        assert head(remote, "auto") == a_internal  # nothing committed by Waveline

        # The external system reports back: done.
        result = event["data"]["result_url"]
        resp = await client.post(
            result,
            json={"status": "succeeded", "detail": "deployed by the release system"},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        assert resp.status == 202, await resp.text()
        await promotions(settings, has("done", A_SHA))
        resp = await client.post(
            result,
            json={"status": "succeeded"},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        assert resp.status in {202, 409}  # a repeat changes nothing either way

        # Receiver down: retried with the same event id, then dead-lettered.
        rec.status = 503
        before = len(rec.seen)
        await walk_to_production_gate(api, B_SHA, 3)
        letters = await read_topic(
            settings.kafka_bootstrap,
            f"{settings.topic_prefix}waveline.dlq",
            until=lambda ms: any(m["error_code"] == "promotion_delivery_failed" for m in ms),
            timeout_s=60,
        )
        tries = rec.seen[before:]
        assert len(tries) == 3
        assert len({json.loads(b)["id"] for _, b in tries}) == 1
        assert len({b for _, b in tries}) == 1
        assert any(json.loads(m["payload"])["data"]["app_sha"] == B_SHA for m in letters)
        await promotions(settings, has("failed", B_SHA))
        state = await api.state()
        failed = [d for d in state["deliveries"] if d["state"] == "failed"]
        assert [a["status_code"] for a in failed[0]["attempts"]] == [503, 503, 503]
        assert all(a["latency_ms"] >= 0 for a in failed[0]["attempts"])


async def test_result_endpoint_refuses_bad_reports(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    config = strategy_config(remote, {"kind": "webhook", "url": "http://127.0.0.1:9/none"})
    doc = config.model_dump(mode="json")
    doc["pipelines"]["app"]["result_token_env"] = "APP_RESULT_TOKEN"
    config = WavelineConfig.model_validate(doc)
    secrets = secrets.model_copy(update={"named": {"APP_RESULT_TOKEN": SecretStr(RESULT_TOKEN)}})
    rt_names = ["ingest"]
    async with (
        running(rt_names, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        path = f"/v1/pipelines/app/waves/production/promotions/{uuid.uuid4()}/result"
        resp = await client.post(path, json={"status": "succeeded"})
        assert resp.status == 401
        resp = await client.post(path, json={"status": "maybe"}, headers=auth)
        assert resp.status == 422
        resp = await client.post(path, json={"status": "succeeded"}, headers=auth)
        assert resp.status == 404
        bad = "/v1/pipelines/app/waves/production/promotions/not-a-uuid/result"
        resp = await client.post(bad, json={"status": "succeeded"}, headers=auth)
        assert resp.status == 404
        resp = await client.post(
            "/v1/pipelines/nope/waves/production/promotions/x/result", json={}, headers=auth
        )
        assert resp.status == 404
        # The pipeline's own result token is accepted (the promotion is unknown: 404, not
        # 401/403); a wrong one is not.
        own = {"Authorization": f"Bearer {RESULT_TOKEN}"}
        resp = await client.post(path, json={"status": "failed"}, headers=own)
        assert resp.status == 404, await resp.text()
        resp = await client.post(
            path, json={"status": "failed"}, headers={"Authorization": "Bearer nope-nope"}
        )
        assert resp.status == 403

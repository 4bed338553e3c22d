"""Scoped tokens, actors and allowed images through the real path (ingest, promoter and
git-writer on real Kafka, PostgreSQL and a bare git remote): each attack is refused and
nothing reaches the topic or git (docs/security.md, Tokens, roles and actors)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.conftest import ARGOCD_TOKEN, CI_TOKEN
from tests.support import (
    APP_SHA,
    branch_log,
    count_topic,
    image_set,
    produce,
    read_topic,
    running,
    wait_for,
)
from waveline.cli.ops import format_status
from waveline.cli.timeline import build_timeline
from waveline.cli.trace import collect
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers

pytestmark = pytest.mark.timeout(90)

# Module constants named *_TOKEN: the suite's last test scans every log line, dead letter
# and stored row for them (tests/logscan.py).
TEAM_A_CI_TOKEN = "team-a-ci-secret-0001"
TEAM_B_CI_TOKEN = "team-b-ci-secret-0002"
TEAM_A_OPS_TOKEN = "team-a-ops-secret-0003"
TEAM_B_OPS_TOKEN = "team-b-ops-secret-0004"
TEAM_B_ARGO_TOKEN = "team-b-argo-secret-0005"
TEAM_B_RESULT_TOKEN = "team-b-result-secret-06"
# env var -> (name, role, pipelines, token)
TOKENS = {
    "TEAM_A_CI": ("team-a-ci", "ci", ["app"], TEAM_A_CI_TOKEN),
    "TEAM_B_CI": ("team-b-ci", "ci", ["web", "web-*"], TEAM_B_CI_TOKEN),
    "TEAM_A_OPS": ("team-a-ops", "operator", ["app"], TEAM_A_OPS_TOKEN),
    "TEAM_B_OPS": ("team-b-ops", "operator", ["web"], TEAM_B_OPS_TOKEN),
    "TEAM_B_ARGO": ("team-b-argo", "argocd", ["web"], TEAM_B_ARGO_TOKEN),
    "TEAM_B_RESULT": ("team-b-result", "result", ["web"], TEAM_B_RESULT_TOKEN),
}
OTHER_SHA = "2222222222222222222222222222222222222222"
EVIL_SHA = "3333333333333333333333333333333333333333"
CFG_SHA = "c" * 40


def bearer(env: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[env][3]}"}


@pytest.fixture
def config(config: WavelineConfig) -> WavelineConfig:
    """The suite's pipeline ``app`` (team A, images of docker.example.com only) and a
    pipeline ``web`` of team B, with a named token per team and role."""
    doc = config.model_dump(mode="json")
    doc["pipelines"]["app"]["allowed_images"] = ["docker.example.com/*"]
    web = json.loads(json.dumps(doc["pipelines"]["app"]))
    web["layout"]["path"] = "web/{wave}"
    web["allowed_images"] = []
    for wave in web["waves"]:
        wave["targets"] = [f"web-{t}" for t in wave["targets"]]
    doc["pipelines"]["web"] = web
    doc["auth"]["tokens"] = [
        {"name": name, "role": role, "pipelines": pipelines, "token_env": env}
        for env, (name, role, pipelines, _) in TOKENS.items()
    ]
    return WavelineConfig.model_validate(doc)


@pytest.fixture
def secrets(secrets: Secrets) -> Secrets:
    named = {env: SecretStr(value) for env, (_, _, _, value) in TOKENS.items()}
    return secrets.model_copy(update={"named": named})


def topic(settings: Settings, name: str) -> str:
    return f"{settings.topic_prefix}{name}"


async def fetch(settings: Settings, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await conn.execute(f'SET search_path TO "{settings.database_schema}"')
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def test_ci_token_on_another_teams_pipeline_is_refused_and_nothing_moves(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    names = ["ingest", "promoter", "git-writer"]
    async with (
        running(names, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        refused = [
            await client.post("/v1/images", json=image_set(), headers=bearer("TEAM_B_CI")),
            await client.post(
                f"/v1/pipelines/app/images?app_sha={APP_SHA}",
                json=image_set()["images"],
                headers=bearer("TEAM_B_CI"),
            ),
            # another role's token, even one covering the pipeline
            await client.post("/v1/images", json=image_set(), headers=bearer("TEAM_A_OPS")),
            await client.post("/v1/images", json=image_set(), headers=bearer("TEAM_B_ARGO")),
        ]
        for resp in refused:
            assert resp.status == 403, await resp.text()
            assert (await resp.json())["error"] == "forbidden"
        detail = (await refused[0].json())["detail"]
        assert "team-b-ci" in detail and "app" in detail
        assert "TEAM_B_CI" not in detail and TOKENS["TEAM_B_CI"][3] not in detail
        unknown = await client.post(
            "/v1/images", json=image_set(), headers={"Authorization": "Bearer guessed"}
        )
        assert unknown.status == 403
        assert (await client.post("/v1/images", json=image_set())).status == 401
        assert await count_topic(settings.kafka_bootstrap, topic(settings, "waveline.images")) == 0
        # The same body with team A's token goes through: the refusals were the tokens'.
        ok = await client.post("/v1/images", json=image_set(OTHER_SHA), headers=bearer("TEAM_A_CI"))
        assert ok.status == 202, await ok.text()
        # Team B's token on its own pipelines (a glob among them) is a CI token there.
        web = await client.post(
            "/v1/pipelines/web-eu/images?app_sha=" + OTHER_SHA,
            json=image_set()["images"],
            headers=bearer("TEAM_B_CI"),
        )
        assert web.status == 404  # in scope; no such pipeline
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 2, what="team A's commit")
        await asyncio.sleep(1.0)  # anything else the refused requests might have caused
    log = branch_log(str(remote), "auto")
    assert len(log) == 2
    assert trailers.parse(log[0].message).get(trailers.APP_SHA) == OTHER_SHA
    announced = await read_topic(
        settings.kafka_bootstrap, topic(settings, "waveline.images"), until=lambda m: len(m) >= 1
    )
    assert [(m["app_sha"], m["actor"]) for m in announced] == [(OTHER_SHA, "team-a-ci")]
    rows = await fetch(settings, "SELECT app_sha, actor FROM image_sets")
    assert [(r["app_sha"], r["actor"]) for r in rows] == [(OTHER_SHA, "team-a-ci")]


async def test_operator_argocd_and_result_tokens_outside_their_pipelines_are_refused(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    async with (
        running(["ingest", "promoter"], settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        team_b = bearer("TEAM_B_OPS")
        for path, body in [
            ("/v1/pipelines/app/waves/internal/hold", None),
            ("/v1/pipelines/app/waves/internal/release", None),
            ("/v1/pipelines/app/waves/production/approve", None),
            ("/v1/pipelines/app/waves/staging/rollback", {"to": "previous"}),
        ]:
            resp = await client.post(path, json=body, headers=team_b)
            assert resp.status == 403, (path, await resp.text())
        view = await client.get("/v1/pipelines/app", headers=team_b)
        assert view.status == 403
        result = f"/v1/pipelines/app/waves/staging/promotions/{uuid.uuid4()}/result"
        resp = await client.post(
            result, json={"status": "succeeded"}, headers=bearer("TEAM_B_RESULT")
        )
        assert resp.status == 403
        # A CI token is no operator token, whatever its pipelines.
        resp = await client.post(
            "/v1/pipelines/app/waves/internal/hold", headers=bearer("TEAM_A_CI")
        )
        assert resp.status == 403
        # Team B's Argo CD token may not report team A's targets.
        report = {
            "app": "staging-us",
            "revision": CFG_SHA,
            "phase": "Succeeded",
            "health": "Healthy",
            "sync": "Synced",
        }
        argo = await client.post("/v1/webhooks/argocd", json=report, headers=bearer("TEAM_B_ARGO"))
        assert argo.status == 403, await argo.text()
        assert (
            await count_topic(settings.kafka_bootstrap, topic(settings, "waveline.operator")) == 0
        )
        assert await count_topic(settings.kafka_bootstrap, topic(settings, "waveline.deploys")) == 0
        # ... while within their scope the same tokens are accepted.
        own = await client.post(
            "/v1/webhooks/argocd",
            json={**report, "app": "web-staging-us"},
            headers=bearer("TEAM_B_ARGO"),
        )
        assert own.status == 202, await own.text()
        global_argo = {"Authorization": f"Bearer {ARGOCD_TOKEN}"}
        assert (
            await client.post("/v1/webhooks/argocd", json=report, headers=global_argo)
        ).status == 202
        hold = await client.post("/v1/pipelines/web/waves/internal/hold", headers=team_b)
        assert hold.status == 202, await hold.text()
        assert (await client.get("/v1/pipelines/web", headers=team_b)).status == 200
        await wait_for_rows(settings, "SELECT * FROM operator_actions", 1)
    held = await fetch(settings, "SELECT pipeline, wave FROM wave_gates WHERE held")
    assert [(r["pipeline"], r["wave"]) for r in held] == [("web", "internal")]


async def wait_for_rows(settings: Settings, query: str, n: int, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while len(await fetch(settings, query)) < n:  # noqa: ASYNC110 (another service's rows)
            await asyncio.sleep(0.1)


async def test_image_outside_allowed_images_is_refused_over_http_and_on_the_topic(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    evil = image_set(EVIL_SHA)
    evil["images"]["Service2"] = {
        "Tag": f"registry.evil.example/team-b/miner:{EVIL_SHA}",
        "Digest": "registry.evil.example/team-b/miner@sha256:" + "e" * 64,
    }
    names = ["ingest", "promoter", "git-writer"]
    async with (
        running(names, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        resp = await client.post("/v1/images", json=evil, headers=bearer("TEAM_A_CI"))
        assert resp.status == 422, await resp.text()
        answer = await resp.json()
        assert answer["error"] == "image_not_allowed"
        assert answer["detail"][0]["field"] == "images.Service2"
        assert "registry.evil.example/team-b/miner" in answer["detail"][0]["reason"]
        resp = await client.post(
            f"/v1/pipelines/app/images?app_sha={EVIL_SHA}",
            json=evil["images"],
            headers={"Authorization": f"Bearer {CI_TOKEN}"},
        )
        assert resp.status == 422
        assert await count_topic(settings.kafka_bootstrap, topic(settings, "waveline.images")) == 0
        # Straight onto the topic (claiming a trusted actor), then a good set after it.
        await produce(
            settings,
            "waveline.images",
            [
                json.dumps({**evil, "actor": "team-a-ci"}).encode(),
                json.dumps(image_set(OTHER_SHA)).encode(),
            ],
            key=b"app",
        )
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 2, what="the good set")
        letters = await read_topic(
            settings.kafka_bootstrap, topic(settings, "waveline.dlq"), until=lambda m: len(m) >= 1
        )
    assert [letter["error_code"] for letter in letters] == ["image_not_allowed"]
    assert "registry.evil.example/team-b/miner" in letters[0]["reason"]
    assert letters[0]["service"] == "promoter"
    shas = [
        trailers.parse(c.message).get(trailers.APP_SHA) for c in branch_log(str(remote), "auto")
    ]
    assert EVIL_SHA not in shas and shas[0] == OTHER_SHA
    assert not await fetch(settings, "SELECT 1 FROM image_sets WHERE app_sha = $1", EVIL_SHA)
    assert not await fetch(settings, "SELECT 1 FROM promotions WHERE app_sha = $1", EVIL_SHA)


async def test_actors_are_recorded_and_shown(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    """The announcement's and the operators' token names reach the promoter's tables, the
    pipeline view, ``waveline status``, the dashboard and ``waveline trace``; a client's
    own actor (body field or header) counts for nothing."""
    since = datetime.now(UTC) - timedelta(seconds=5)
    async with (
        running(["ingest", "promoter"], settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        spoof = {"X-Waveline-Actor": "mallory", **bearer("TEAM_A_CI")}
        resp = await client.post(
            "/v1/images", json={**image_set(), "actor": "mallory"}, headers=spoof
        )
        assert resp.status == 202, await resp.text()
        await wait_for_rows(settings, "SELECT 1 FROM image_sets", 1)
        # APP_SHA runs in internal and waits at production's approval gate.
        pool = rts["ingest"].pool
        await pool.execute(
            "INSERT INTO wave_runs (pipeline, wave, app_sha, cfg_sha, since)"
            " VALUES ('app', 'internal', $1, $2, now())",
            APP_SHA,
            CFG_SHA,
        )
        await pool.execute(
            "INSERT INTO promotions (promotion_id, pipeline, wave, from_wave, app_sha, kind,"
            " status, cfg_sha) VALUES ($1, 'app', 'production', 'internal', $2, 'promote',"
            " 'waiting', $3)",
            uuid.uuid4(),
            APP_SHA,
            CFG_SHA,
        )
        ops = {"X-Waveline-Actor": "mallory", **bearer("TEAM_A_OPS")}
        # Held first, so the approval does not send the set on (no git-writer here).
        hold = await client.post("/v1/pipelines/app/waves/production/hold", headers=ops)
        assert hold.status == 202, await hold.text()
        await wait_for_rows(settings, "SELECT 1 FROM operator_actions", 1)
        approve = await client.post("/v1/pipelines/app/waves/production/approve", headers=ops)
        assert approve.status == 202, await approve.text()
        await wait_for_rows(settings, "SELECT 1 FROM operator_actions", 2)
        view = await client.get("/v1/pipelines/app", headers=ops)
        assert view.status == 200
        state = await view.json()
        page = await (await client.get("/", headers=ops)).text()
        team_b_page = await (await client.get("/", headers=bearer("TEAM_B_OPS"))).text()
    rows = await fetch(settings, "SELECT actor FROM image_sets")
    assert [r["actor"] for r in rows] == ["team-a-ci"]
    actions = await fetch(
        settings, "SELECT action, actor FROM operator_actions ORDER BY recorded_at"
    )
    assert [(r["action"], r["actor"]) for r in actions] == [
        ("hold", "team-a-ops"),
        ("approve", "team-a-ops"),
    ]
    approvals = await fetch(settings, "SELECT actor FROM approvals")
    assert [r["actor"] for r in approvals] == ["team-a-ops"]
    waves = {w["name"]: w for w in state["waves"]}
    production = waves["production"]
    assert production["gate"]["held_by"] == "team-a-ops"
    waiting = [p for p in production["promotions"] if p["app_sha"] == APP_SHA]
    assert waiting[0]["announced_by"] == "team-a-ci"
    assert waiting[0]["approved_by"] == "team-a-ops"
    assert [(a["action"], a["actor"]) for a in production["actions"]] == [
        ("approve", "team-a-ops"),
        ("hold", "team-a-ops"),
    ]
    assert waves["staging"]["promotions"][0]["announced_by"] == "team-a-ci"
    text = format_status(state)
    assert "held by team-a-ops" in text and "approved by team-a-ops" in text
    assert "announced by team-a-ci" in text
    assert "approved by team-a-ops" in page and "announced by team-a-ci" in page
    assert "mallory" not in json.dumps(state) + page + text
    # team B's operator sees its own pipeline only
    assert "pipeline web" in team_b_page and "pipeline app" not in team_b_page
    observed = await collect(settings, since, timeout_s=30)
    timeline = build_timeline(APP_SHA, observed)
    assert timeline is not None
    hops = [h.name for h in timeline.hops]
    assert "announced in app (2 services) by team-a-ci" in hops
    assert "hold production by team-a-ops" in hops
    assert "approve production by team-a-ops" in hops

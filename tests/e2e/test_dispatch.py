"""Production by ``repository_dispatch``, all five services on real Kafka, Postgres and git:
the notifier dispatches to the (fake) GitHub authenticated as a GitHub App; the test plays
the Actions workflow of deploy/github/promote-dispatch.yaml (copies the source wave's files,
commits with the payload's trailers, pushes ``master``, reports on ``result_url``); the
promotion is done, ``auto`` re-aligns on the workflow's commit and production runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pygit2
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from tests.e2e.test_strategies import (
    NAMES,
    has,
    promotions,
    strategy_config,
    walk_to_production_gate,
)
from tests.e2e.test_waves import Api, head
from tests.fakegithub import Dispatch, FakeGitHub
from tests.support import running, wait_for
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
A_SHA = "dddddddddddddddddddddddddddddddddddddddd"
APP_ID = "1234567"
RESULT_TOKEN = "result-token-for-dispatch-e2e-3f9a1c"
FORGE_TOKEN = "ghp_unused_static_token_for_dispatch_e2e"


def workflow_commit(remote: Path, payload: dict[str, Any]) -> str:
    """What the example workflow does: the target wave's files become the source wave's at
    the config commit, committed on master with the trailers of the payload."""
    repo = pygit2.Repository(str(remote))
    source = repo.get(payload["config_commit"])
    assert isinstance(source, pygit2.Commit)
    master = repo.references["refs/heads/master"].peel(pygit2.Commit)
    source_wave = source.tree / "images" / payload["from_wave"]
    images = repo.TreeBuilder(master.tree / "images")
    images.insert(payload["to_wave"], source_wave.id, pygit2.enums.FileMode.TREE)
    root = repo.TreeBuilder(master.tree)
    root.insert("images", images.write(), pygit2.enums.FileMode.TREE)
    lines = "\n".join(f"{k}: {v}" for k, v in payload["trailers"].items())
    message = f"promote {payload['app_sha'][:10]} to {payload['to_wave']}\n\n{lines}\n"
    bot = pygit2.Signature("github-actions[bot]", "actions@github.invalid")
    sha = repo.create_commit("refs/heads/master", bot, bot, message, root.write(), [master.id])
    return str(sha)


async def test_production_by_repository_dispatch(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    async with FakeGitHub({"remote/cfg-app": remote}, token=FORGE_TOKEN) as gh:
        gh.add_app(APP_ID, key.public_key(), token_ttl_s=3600)
        config = strategy_config(
            remote,
            {
                "kind": "webhook",
                "format": "repository_dispatch",
                "dispatch": {"event_type": "promote-{pipeline}-{wave}"},
            },
            forge={"api_url": gh.url, "app": {"app_id": APP_ID, "private_key_env": "E2E_APP_KEY"}},
        )
        doc = config.model_dump(mode="json")
        doc["pipelines"]["app"]["result_token_env"] = "E2E_RESULT_TOKEN"
        config = WavelineConfig.model_validate(doc)
        named = {"E2E_APP_KEY": SecretStr(pem), "E2E_RESULT_TOKEN": SecretStr(RESULT_TOKEN)}
        secrets = secrets.model_copy(update={"named": named})
        async with (
            running(NAMES, settings, config, secrets) as rts,
            TestClient(TestServer(create_app(rts["ingest"]))) as client,
        ):
            api = Api(client, remote)
            _, a_internal = await walk_to_production_gate(api, A_SHA, 1)
            await wait_for(lambda: bool(gh.dispatches), what="repository_dispatch received")
            dispatch: Dispatch = gh.dispatches[0]
            assert dispatch.full_name == "remote/cfg-app"
            assert dispatch.event_type == "promote-app-production"
            payload = dispatch.client_payload
            assert len(payload) <= 10
            assert payload["from_wave"] == "internal" and payload["to_wave"] == "production"
            assert payload["config_commit"] == a_internal
            assert payload["trailers"][trailers.APP_SHA] == A_SHA
            sent = [r for r in gh.requests if r.path.endswith("/dispatches")]
            assert sent[0].headers["Authorization"] == f"Bearer {gh.minted[0]}"
            assert gh.exchanges == 1
            await promotions(settings, has("delivered", A_SHA))
            assert head(remote, "auto") == a_internal  # Waveline committed nothing itself

            # The workflow: commit with the trailers on master, then report the result.
            promoted = workflow_commit(remote, payload)
            resp = await client.post(
                payload["result_url"],
                json={"status": "succeeded", "detail": "promote-dispatch workflow"},
                headers={"Authorization": f"Bearer {RESULT_TOKEN}"},
            )
            assert resp.status == 202, await resp.text()
            await promotions(settings, has("done", A_SHA))
            await wait_for(lambda: head(remote, "auto") == promoted, what="auto re-aligned")
            await api.deployed("prod-us", promoted)
            state = await api.wait_state(
                lambda d: d["waves"][2]["app_sha"] == A_SHA, "production runs A"
            )
            assert state["waves"][2]["cfg_commit"] == promoted
            assert state["waves"][2]["strategy"] == "webhook"
    assert len(gh.dispatches) == 1  # delivered once, never again

"""The CLI against a real ingest (HTTP), real Kafka, and git remotes (plugin mode)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import CI_TOKEN, OPERATOR_TOKEN
from tests.gitserver import GitHttpServer
from tests.support import APP_SHA, DIGEST_1, branch_log, image_set, read_topic
from waveline.cli.main import main
from waveline.cli.plugin import run as plugin_run
from waveline.devstack.demo import seed_repo
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.runtime import bootstrap


@pytest.fixture
async def ingest_url(
    settings: Settings, config: WavelineConfig, secrets: Secrets, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    runtime = bootstrap("ingest", settings, config, secrets)
    await runtime.start()
    server = TestServer(create_app(runtime))
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    monkeypatch.setenv("WAVELINE_URL", url)
    monkeypatch.setenv("WAVELINE_CI_TOKEN", CI_TOKEN)
    monkeypatch.setenv("WAVELINE_OPERATOR_TOKEN", OPERATOR_TOKEN)
    yield url
    await server.close()
    await runtime.stop()


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_publish_over_http_and_status(
    ingest_url: str, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    del ingest_url
    image = f"svc=reg.example.com/svc:{APP_SHA}@{DIGEST_1}"
    assert await cli("publish", "--pipeline", "app", "--app-sha", APP_SHA, "--image", image) == 0
    seed = tmp_path / "images.json"
    seed.write_text(json.dumps(image_set()["images"]))
    assert await cli("publish", "--pipeline", "app", "--app-sha", APP_SHA, "--file", str(seed)) == 0
    messages = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.images",
        until=lambda m: len(m) >= 2,
    )
    assert {tuple(sorted(m["images"])) for m in messages} == {("svc",), ("Service1", "Service2")}
    assert await cli("publish", "--pipeline", "app", "--app-sha", "nope", "--image", image) == 1
    assert "invalid image set" in capsys.readouterr().err
    assert await cli("hold", "app", "internal") == 0
    assert await cli("rollback", "app", "staging", "--to", "previous") == 0
    assert await cli("approve", "app", "nowhere") == 1
    ops = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.operator",
        until=lambda m: len(m) >= 2,
    )
    assert [(m["action"], m["wave"], m["to"]) for m in ops] == [
        ("hold", "internal", None),
        ("rollback", "staging", "previous"),
    ]
    assert await cli("status", "app") == 0
    out = capsys.readouterr().out
    assert "pipeline app (repo cfg-app)" in out
    assert "staging" in out and "production" in out


async def test_publish_straight_to_kafka(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "WAVELINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "WAVELINE_TOPIC_PREFIX": settings.topic_prefix,
    }.items():
        monkeypatch.setenv(key, value)
    image = f"svc=reg.example.com/svc:{APP_SHA}@{DIGEST_1}"
    argv = ("publish", "--pipeline", "app", "--app-sha", APP_SHA, "--image", image, "--kafka")
    assert await cli(*argv) == 0
    messages = await read_topic(
        settings.kafka_bootstrap,
        f"{settings.topic_prefix}waveline.images",
        until=lambda m: len(m) >= 1,
    )
    assert messages[0]["images"]["svc"]["Digest"].endswith(DIGEST_1)


def plugin_env(url: str, **extra: str) -> dict[str, Any]:
    return {
        "PLUGIN_GIT_REPO": url,
        "PLUGIN_BRANCH": "master",
        "PLUGIN_IMAGE_TAG": "a6b6e8",
        "PLUGIN_DESTINATION_FILE": "deployed_tags/prod_image_tag",
        "PLUGIN_AUTHOR_NAME": "Adam Nonymous",
        "PLUGIN_AUTHOR_EMAIL": "adam@example.com",
        "PLUGIN_COMMIT_MESSAGE": "[Auto] write $PLUGIN_IMAGE_TAG to $PLUGIN_DESTINATION_FILE",
        **extra,
    }


def test_drone_plugin_commits_the_tag(tmp_path: Path) -> None:
    bare = tmp_path / "infra.git"
    seed_repo(bare)
    summary = plugin_run(plugin_env(bare.as_uri()))
    assert "committed a6b6e8" in summary
    head = branch_log(str(bare), "master")[0]
    assert head.message == "[Auto] write a6b6e8 to deployed_tags/prod_image_tag\n"
    assert head.author.name == "Adam Nonymous"
    assert "nothing to commit" in plugin_run(plugin_env(bare.as_uri()))
    assert len(branch_log(str(bare), "master")) == 2


def test_drone_plugin_over_http_with_token(tmp_path: Path) -> None:
    seed_repo(tmp_path / "srv" / "infra.git")
    with GitHttpServer(tmp_path / "srv", "pat-123456") as server:
        # Plain http: the token is refused before anything is sent, unless opted in.
        plain = plugin_env(server.url("infra.git"), PLUGIN_ACCESS_TOKEN="pat-123456")
        with pytest.raises(Exception, match="allow_insecure_http"):
            plugin_run(plain)
        assert server.refused == 0
        env = {**plain, "PLUGIN_ALLOW_INSECURE_HTTP": "true"}
        assert "committed" in plugin_run(env)
        bad = {**env, "PLUGIN_ACCESS_TOKEN": "wrong"}
        with pytest.raises(Exception, match="refused"):
            plugin_run(bad)
    assert len(branch_log(str(tmp_path / "srv" / "infra.git"), "master")) == 2


def test_drone_plugin_refuses_paths_outside_the_repo(tmp_path: Path) -> None:
    bare = tmp_path / "infra.git"
    seed_repo(bare)
    with pytest.raises(Exception, match="must not contain"):
        plugin_run(plugin_env(bare.as_uri(), PLUGIN_DESTINATION_FILE="../etc/passwd"))


def test_drone_plugin_signs_its_commit_when_asked(tmp_path: Path) -> None:
    from tests.signing_keys import ssh_key, verify_commit
    from waveline.cli.ops import CliError

    bare = tmp_path / "infra.git"
    seed_repo(bare)
    key = ssh_key(tmp_path / "key")
    env = plugin_env(bare.as_uri(), PLUGIN_SIGNING_FORMAT="ssh", PLUGIN_SIGNING_KEY=key.private)
    # A key that cannot sign is refused before anything is pushed.
    with pytest.raises(CliError, match="PLUGIN_SIGNING_"):
        plugin_run({**env, "PLUGIN_SIGNING_KEY": "not a key"})
    assert len(branch_log(str(bare), "master")) == 1
    plugin_run(env)
    head = branch_log(str(bare), "master")[0]
    assert verify_commit(bare, str(head.id), key).returncode == 0
    other = ssh_key(tmp_path / "other")
    assert verify_commit(bare, str(head.id), other).returncode != 0

"""Git over HTTP with a GitHub App's installation token, through the git-writer's repo
process: the fake GitHub mints short-lived tokens, the git server (git http-backend) takes
only a live one as ``x-access-token``, and pushes keep landing past a token's expiry because
the service hands the child a renewed token before each fetch or push."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakegithub import FakeGitHub
from tests.gitserver import GitHttpServer
from tests.integration.test_gitengine import OTHER_SHA, introduce
from tests.support import branch_log, make_config
from waveline.devstack.demo import seed_repo
from waveline.services.git_writer.client import RepoProcess
from waveline.services.git_writer.host import HostInit
from waveline.shared.config import WavelineConfig
from waveline.shared.errors import GitFailure
from waveline.shared.forge.github_app import AppTokens
from waveline.shared.models.git import IntroduceImages

pytestmark = pytest.mark.timeout(60)

REPO = "acme/cfg-app"
APP_ID = "4711"
STATIC_TOKEN = "ghp_unused_static_token_9c1e7b"


class Checker:
    """The git server's credential check: user ``x-access-token`` and a live token; counts
    the requests that came with a token the fake had let expire."""

    def __init__(self, gh: FakeGitHub) -> None:
        self.gh = gh
        self.stale = 0
        self.users: set[str] = set()

    def __call__(self, user: str, password: str) -> bool:
        self.users.add(user)
        ok = user == "x-access-token" and self.gh.token_valid(password)
        if not ok and password in self.gh.minted:
            self.stale += 1
        return ok


async def land(proc: RepoProcess, cmd: IntroduceImages) -> str:
    """Build and push ``cmd`` as the git-writer does: on a retriable failure, once more
    from fresh state; returns the commit made."""
    for attempt in (1, 2):
        try:
            results, failed, _ = await proc.build([cmd], attempt == 2, 0.0)
            assert failed == []
            await proc.flush()
        except GitFailure as exc:
            if attempt == 2 or not exc.retriable:
                raise
            await proc.discard()
            continue
        sha = results[cmd.command_id].sha
        assert sha is not None
        return sha
    raise AssertionError("unreachable")


def app_config(url: str, api_url: str) -> WavelineConfig:
    doc = make_config(url).model_dump(mode="json")
    doc["repos"]["cfg-app"].update(
        forge_name=REPO,
        allow_insecure_http=True,  # the test server is plain http on loopback
        forge={"api_url": api_url, "app": {"app_id": APP_ID, "private_key_env": "UNUSED"}},
    )
    return WavelineConfig.model_validate(doc)


async def test_pushes_keep_landing_past_a_token_expiry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bare = tmp_path / "srv" / "cfg-app.git"
    seed_repo(bare)
    async with FakeGitHub({REPO: bare}, token=STATIC_TOKEN) as gh:
        gh.add_app(APP_ID, key.public_key(), token_ttl_s=4)
        check = Checker(gh)
        with GitHttpServer(tmp_path / "srv", check) as server:
            config = app_config(server.url("cfg-app.git"), gh.url)
            assert config.repos["cfg-app"].git_uses_app()
            init = HostInit(
                repo="cfg-app",
                repo_config=config.repos["cfg-app"],
                config=config,
                path=tmp_path / "data" / "cfg-app.git",
                log_level="INFO",
                log_secrets=[],
                gil_switch_interval_ms=0.5,
            )
            tokens = AppTokens(APP_ID, key, api_url=gh.url, repository=REPO)
            proc = RepoProcess(init, tokens=tokens)
            try:
                async with asyncio.timeout(45):
                    await land(proc, introduce())
                    await asyncio.sleep(4.1)  # the first token has expired
                    second_sha = await land(proc, introduce(OTHER_SHA))
                    assert gh.exchanges >= 2  # renewed
                    # A new child (the old one killed) gets the current token at its start.
                    assert proc.pid is not None
                    proc._kill(proc._proc, "test")  # type: ignore[arg-type]
                    await asyncio.sleep(0.3)
                    await land(proc, introduce("d" * 40))
                    # A revoked token: the remote refuses it, the retry mints another.
                    minted = gh.exchanges
                    gh.revoke_installation_tokens()
                    await land(proc, introduce("e" * 40))
                    assert gh.exchanges == minted + 1
                    assert check.stale >= 1
            finally:
                await proc.close()
    log = branch_log(str(bare), "auto")
    assert len(log) == 5  # the seed commit and our four
    assert str(log[2].id) == second_sha
    assert check.users == {"x-access-token"}
    assert not any(token in caplog.text for token in gh.minted)


async def test_a_wrong_app_key_fails_git_permanently(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bare = tmp_path / "srv" / "cfg-app.git"
    seed_repo(bare)
    async with FakeGitHub({REPO: bare}, token=STATIC_TOKEN) as gh:
        gh.add_app(APP_ID, key.public_key())
        with GitHttpServer(tmp_path / "srv", Checker(gh)) as server:
            config = app_config(server.url("cfg-app.git"), gh.url)
            init = HostInit(
                repo="cfg-app",
                repo_config=config.repos["cfg-app"],
                config=config,
                path=tmp_path / "data" / "cfg-app.git",
                log_level="INFO",
                log_secrets=[],
                gil_switch_interval_ms=0.5,
            )
            tokens = AppTokens(APP_ID, other, api_url=gh.url, repository=REPO)
            proc = RepoProcess(init, tokens=tokens)
            try:
                async with asyncio.timeout(20):
                    with pytest.raises(GitFailure, match="no GitHub App token for git") as info:
                        await proc.build([introduce()], True, 0.0)
            finally:
                await proc.close()
    assert not info.value.retriable
    assert "refused GitHub App 4711's JWT" in str(info.value)
    assert branch_log(str(bare), "auto") == []

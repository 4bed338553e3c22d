"""The reconciler's GitHub and Argo CD clients against the fakes (local HTTP servers that
answer as the real APIs do): conditional reads, rate limits, authentication, the shapes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pygit2
import pytest
from pydantic import SecretStr

from tests.fakeargocd import FakeArgoCd
from tests.fakegithub import FakeGitHub
from waveline.devstack.demo import seed_repo
from waveline.shared.argocd_api import ArgoCdApi, ArgoCdError
from waveline.shared.forge.base import ForgeError
from waveline.shared.forge.github_checks import CommitCheck, GitHubChecks, RateLimited

TOKEN = "gh-token-for-reconcile-tests-0001"
ARGO = "argocd-api-token-for-tests-0002"
REPO = "acme/cfg"


def master(bare: Path) -> str:
    return str(pygit2.Repository(str(bare)).references["refs/heads/master"].target)


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.git"
    seed_repo(path)
    return path


async def test_reads_are_conditional_and_report_the_budget(bare: Path) -> None:
    sha = master(bare)
    async with asyncio.timeout(10), FakeGitHub({REPO: bare}, token=TOKEN) as gh:
        gh.checks.set_status(REPO, sha, "ci/validate", "pending")
        gh.checks.set_status(REPO, sha, "ci/validate", "success", creator="ci-app[bot]",
                             creator_type="Bot")  # fmt: skip
        gh.checks.set_check_run(REPO, sha, "build", "completed", "failure")
        client = GitHubChecks(gh.url, token=SecretStr(TOKEN))
        try:
            first = await client.statuses(REPO, sha)
            assert first.changed and first.etag
            assert first.checks == (
                CommitCheck("ci/validate", "success", "status", "ci-app", "ci-app[bot]"),
                CommitCheck("ci/validate", "pending", "status", None, "ci-bot"),
            )
            assert first.rate.limit == 5000 and first.rate.remaining == 4999
            again = await client.statuses(REPO, sha, first.etag)
            assert not again.changed and again.checks == () and again.rate.remaining == 4999
            runs = await client.check_runs(REPO, sha)
            assert runs.checks == (CommitCheck("build", "failure", "check_run", "ci-app"),)
            # A change makes the old ETag stale.
            gh.checks.set_check_run(REPO, sha, "build", "completed", "success")
            rerun = await client.check_runs(REPO, sha, runs.etag)
            assert rerun.changed and rerun.checks[0].state == "success"
            assert [c.status for c in gh.checks.calls] == [200, 304, 200, 200]
            sent = [r for r in gh.requests if r.path.endswith("/statuses")]
            assert sent[1].headers["If-None-Match"] == first.etag
            assert sent[0].headers["Authorization"] == f"Bearer {TOKEN}"
            with pytest.raises(ForgeError) as unknown:
                await client.statuses(REPO, "0" * 40)
            assert unknown.value.status == 422 and not unknown.value.retriable
        finally:
            await client.close()


async def test_rate_limits_are_refusals_that_say_how_long_to_wait(bare: Path) -> None:
    sha = master(bare)
    async with asyncio.timeout(10), FakeGitHub({REPO: bare}, token=TOKEN) as gh:
        client = GitHubChecks(gh.url, token=SecretStr(TOKEN))
        try:
            gh.checks.throttle(429, retry_after_s=3)
            with pytest.raises(RateLimited) as secondary:
                await client.check_runs(REPO, sha)
            assert secondary.value.wait_s == 3 and secondary.value.retriable
            gh.checks.set_budget(1, window_s=30)
            assert (await client.statuses(REPO, sha)).rate.remaining == 0
            with pytest.raises(RateLimited) as primary:
                await client.check_suites(REPO, sha)
            assert primary.value.status == 403
            assert primary.value.wait_s is not None and 25 < primary.value.wait_s <= 31
            # A wrong token is not a rate limit: a permanent refusal, the token not quoted.
            wrong = GitHubChecks(gh.url, token=SecretStr("not-the-token-xyz"))
            with pytest.raises(ForgeError) as refused:
                await wrong.statuses(REPO, sha)
            await wrong.close()
            assert refused.value.status == 401 and not refused.value.retriable
            assert "not-the-token-xyz" not in str(refused.value)
        finally:
            await client.close()


class Tokens:
    """A token source (an App's installation tokens) handing out ``values`` in turn."""

    def __init__(self, *values: str) -> None:
        self.values = list(values)
        self.asked = 0
        self.refused_tokens: list[str] = []
        self.closed = False

    async def token(self) -> SecretStr:
        self.asked += 1
        return SecretStr(self.values[0])

    def refused(self, token: SecretStr) -> None:
        self.refused_tokens.append(token.get_secret_value())
        self.values.pop(0)

    async def close(self) -> None:
        self.closed = True


async def test_a_token_source_is_asked_on_every_call_and_told_of_a_401(bare: Path) -> None:
    sha = master(bare)
    tokens = Tokens("expired-installation-token", TOKEN)
    async with asyncio.timeout(10), FakeGitHub({REPO: bare}, token=TOKEN) as gh:
        client = GitHubChecks(gh.url, token=tokens)
        with pytest.raises(ForgeError) as refused:
            await client.statuses(REPO, sha)
        assert refused.value.status == 401
        assert tokens.refused_tokens == ["expired-installation-token"]
        await client.statuses(REPO, sha)
        await client.check_runs(REPO, sha)
        await client.close()
    assert tokens.asked == 3 and tokens.closed


async def test_argocd_applications_are_read_with_the_bearer_token(bare: Path) -> None:
    sha = master(bare)
    async with asyncio.timeout(10), FakeArgoCd(ARGO) as argo:
        api = ArgoCdApi(argo.url, token=SecretStr(ARGO))
        try:
            argo.set_app("staging-us", sha, health="Progressing", phase="Running")
            report = await api.read("staging-us")
            assert report is not None
            assert (report.revision, report.sync, report.health, report.phase) == (
                sha,
                "Synced",
                "Progressing",
                "Running",
            )
            argo.follow(["staging-eu"], bare, "master")
            followed = await api.read("staging-eu")
            assert followed is not None and followed.health == "Healthy"
            argo.set_app("fresh", None, sync="OutOfSync", phase=None)
            assert await api.read("fresh") is None
            with pytest.raises(ArgoCdError) as missing:
                await api.read("nope")
            assert missing.value.status == 404 and not missing.value.retriable
            assert argo.requests[0][1] == f"Bearer {ARGO}"
        finally:
            await api.close()
        wrong = ArgoCdApi(argo.url, token=SecretStr("wrong-argocd-token"))
        with pytest.raises(ArgoCdError) as refused:
            await wrong.read("staging-us")
        await wrong.close()
        assert refused.value.status == 401 and "wrong-argocd-token" not in str(refused.value)
        gone = ArgoCdApi("http://127.0.0.1:9", token=SecretStr(ARGO), timeout_s=2)
        with pytest.raises(ArgoCdError) as away:
            await gone.read("staging-us")
        await gone.close()
        assert away.value.retriable

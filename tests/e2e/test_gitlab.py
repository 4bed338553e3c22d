"""Promotion by merge request on GitLab, all five services on real Kafka, Postgres and git
against the fake GitLab: every check comes from GitLab's pipeline webhooks (a required job
of the pipeline), which fast-forward ``auto``; production is promoted by a merge request
that GitLab merges once its pipeline succeeds (merged → done, master moves), and the next
one, closed unmerged by a human, ends cancelled."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.e2e.test_strategies import A_SHA, B_SHA, NAMES, has, promotions, strategy_config
from tests.e2e.test_waves import Api, head
from tests.fakegitlab import FakeGitLab
from tests.support import branch_log, running, wait_for
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
GITLAB_TOKEN = "glpat-e2e-project-token-4f2a9c"
GITLAB_HOOK_SECRET = "gitlab-e2e-webhook-token-81d3b7"
PROJECT = "platform/deploy/cfg-app"
BRANCH = "waveline/app/production"


class GitLabCi:
    """The config repo's CI on GitLab: a pipeline per commit whose ``ci/validate`` job is
    the required check, reported by Pipeline Hook only."""

    def __init__(self, gl: FakeGitLab) -> None:
        self.gl = gl

    async def reports(self, sha: str, status: str, ref: str = "auto") -> None:
        before = len(self.gl.deliveries)
        await self.gl.pipeline(PROJECT, sha, status, ref=ref, builds={"ci/validate": status})
        answers = {d.event: d.status for d in self.gl.deliveries[before:]}
        assert answers.get("Pipeline Hook") == 202, answers

    async def passes(self, sha: str) -> None:
        await self.reports(sha, "running")
        await self.reports(sha, "success")


async def walk(api: Api, ci: GitLabCi, app_sha: str) -> str:
    """Announce ``app_sha`` through staging and internal, each commit vetted by a GitLab
    pipeline and deployed; returns the internal commit."""
    # Before its first commit auto does not exist; it starts from master.
    remote = str(api.remote)
    auto_len = len(branch_log(remote, "auto")) or len(branch_log(remote, "master"))
    await api.announce(app_sha)
    staging = await api.wait_auto(auto_len + 1, f"staging commit of {app_sha[:6]}")
    await ci.passes(staging)
    await api.wait_master(staging)
    await api.deployed("staging-us", staging)
    await api.deployed("staging-eu", staging)
    internal = await api.wait_auto(auto_len + 2, f"internal commit of {app_sha[:6]}")
    await ci.passes(internal)
    await api.wait_master(internal)
    await api.deployed("internal-us", internal)
    return internal


async def test_production_by_gitlab_merge_request(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    async with FakeGitLab({PROJECT: remote}, token=GITLAB_TOKEN) as gl:
        config = strategy_config(
            remote,
            {"kind": "pull-request", "merge_when_pipeline_succeeds": True},
            forge={"kind": "gitlab", "api_url": gl.api_url},
            forge_name=PROJECT,
        )
        secrets = secrets.model_copy(
            update={
                "gitlab_webhook_secret": SecretStr(GITLAB_HOOK_SECRET),
                "named": {"WAVELINE_GITLAB_TOKEN": SecretStr(GITLAB_TOKEN)},
            }
        )
        async with (
            running(NAMES, settings, config, secrets) as rts,
            TestClient(TestServer(create_app(rts["ingest"]))) as client,
        ):
            gl.send_webhooks_to(str(client.make_url("/v1/webhooks/gitlab")), GITLAB_HOOK_SECRET)
            api, ci = Api(client, remote), GitLabCi(gl)

            # A: checks from pipelines move auto to master; production opens a merge request.
            a_internal = await walk(api, ci, A_SHA)
            await wait_for(lambda: bool(gl.iids(PROJECT)), what="merge request opened")
            first = gl.merge_request(PROJECT, 1)
            assert (first["source_branch"], first["target_branch"]) == (BRANCH, "master")
            assert A_SHA in first["description"]
            assert head(remote, "auto") == a_internal  # auto untouched by the promotion
            opened = [r for r in gl.requests if r.method == "POST"]
            assert opened[0].headers["PRIVATE-TOKEN"] == GITLAB_TOKEN
            assert opened[0].raw_path.endswith("/platform%2Fdeploy%2Fcfg-app/merge_requests")

            # Its pipeline starts: Waveline asks GitLab to merge when it succeeds; GitLab
            # merges once it does, and its merge request webhook ends the promotion.
            await ci.reports(first["sha"], "running", ref=BRANCH)
            await wait_for(
                lambda: gl.merge_request(PROJECT, 1)["merge_when_pipeline_succeeds"],
                what="merge scheduled on GitLab",
            )
            assert gl.merge_request(PROJECT, 1)["state"] == "opened"
            await ci.reports(first["sha"], "success", ref=BRANCH)
            await promotions(settings, has("done", A_SHA))
            merged = gl.merge_request(PROJECT, 1)
            assert merged["state"] == "merged"
            assert head(remote, "master") == merged["merge_commit_sha"]
            scheduled = [r for r in gl.requests if r.raw_path.endswith("/merge")]
            assert any(r.json.get("auto_merge") is True for r in scheduled)
            await wait_for(
                lambda: head(remote, "auto") == merged["merge_commit_sha"], what="auto aligned"
            )

            # B: a new merge request (A's was merged); a human closes it → cancelled.
            await walk(api, ci, B_SHA)
            await wait_for(lambda: gl.iids(PROJECT) == [1, 2], what="second merge request")
            await gl.close(PROJECT, 2)
            await promotions(settings, has("cancelled", B_SHA))
            state = await api.wait_state(
                lambda d: {p["state"] for p in d["pull_requests"]} == {"merged", "closed"},
                "both merge requests ended",
            )
            assert state["waves"][2]["strategy"] == "pull-request"

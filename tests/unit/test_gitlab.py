"""GitLab as a forge, without a network: merge request documents as ``PullRequest``, project
paths, the forge factory and config, and what each GitLab webhook means (``gitlab_facts``),
including the X-Gitlab-Token check of the route."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr, ValidationError

from tests.support import make_config
from waveline.services.ingest.app import create_app
from waveline.services.ingest.gitlab_facts import check_state, messages
from waveline.services.ingest.responses import ApiError
from waveline.shared.config import ForgeConfig, Secrets, Settings, WavelineConfig
from waveline.shared.forge import ForgeError, GitHubForge, GitLabForge
from waveline.shared.forge.gitlab import _project_path, merge_request
from waveline.shared.forge.select import make_forge
from waveline.shared.models.checks import CheckReported
from waveline.shared.models.pulls import PullRequestReported
from waveline.shared.runtime import bootstrap

HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
MERGE = "bcbb5ec396a2c0f828686f14fac9b80b780504f2"
SQUASH = "95d49d1efbd941908580e79d65e4b5ecaf4a8305"
PROJECT = "platform/deploy/cfg-app"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
HOOK_SECRET = "gitlab-hook-secret-unit-7c21"


def mr_doc(**over: Any) -> dict[str, Any]:
    """GitLab's merge request object, as GET /projects/:id/merge_requests/:iid answers."""
    doc = {
        "id": 1001,
        "iid": 7,
        "project_id": 3,
        "title": "Promote",
        "state": "opened",
        "source_branch": "waveline/app/production",
        "target_branch": "master",
        "sha": HEAD,
        "merge_commit_sha": None,
        "squash_commit_sha": None,
        "merge_when_pipeline_succeeds": False,
        "web_url": f"https://gitlab.example.com/{PROJECT}/-/merge_requests/7",
    }
    return {**doc, **over}


def test_open_merge_request_maps_to_an_open_pull_request() -> None:
    pr = merge_request(mr_doc(), created=True)
    assert (pr.number, pr.state, pr.merged, pr.head_sha, pr.merge_commit_sha) == (
        7,
        "open",
        False,
        HEAD,
        None,
    )
    assert (pr.head_ref, pr.base_ref, pr.created) == ("waveline/app/production", "master", True)
    assert pr.url.endswith("/-/merge_requests/7")
    # A merge in progress (locked) is still open.
    assert merge_request(mr_doc(state="locked"), created=False).state == "open"


@pytest.mark.parametrize(
    ("over", "landed"),
    [
        ({"merge_commit_sha": MERGE}, MERGE),
        ({"squash_commit_sha": SQUASH}, SQUASH),
        ({}, HEAD),  # fast-forward: the head itself is on the target branch
    ],
)
def test_merged_merge_request_names_the_commit_that_landed(
    over: dict[str, Any], landed: str
) -> None:
    pr = merge_request(mr_doc(state="merged", **over), created=False)
    assert (pr.state, pr.merged, pr.merge_commit_sha) == ("closed", True, landed)


def test_closed_merge_request_is_closed_unmerged() -> None:
    pr = merge_request(mr_doc(state="closed", merge_commit_sha=MERGE), created=False)
    assert (pr.state, pr.merged, pr.merge_commit_sha) == ("closed", False, None)


@pytest.mark.parametrize("missing", ["iid", "sha", "web_url", "state", "source_branch"])
def test_unexpected_merge_request_shape_is_a_permanent_error(missing: str) -> None:
    doc = mr_doc()
    del doc[missing]
    with pytest.raises(ForgeError) as info:
        merge_request(doc, created=False)
    assert info.value.retriable is False


def test_project_path_is_one_encoded_segment() -> None:
    assert _project_path(PROJECT) == "projects/platform%2Fdeploy%2Fcfg-app"
    for bad in ("cfg-app", "a/../b", "a//b", "/a/b", "a/b?x=1", "a/b#c"):
        with pytest.raises(ForgeError):
            _project_path(bad)


async def test_rebase_is_refused_before_any_request() -> None:
    # An address nothing listens on: a request would fail as "no answer" (retriable).
    async with GitLabForge("http://127.0.0.1:1/api/v4", token=SecretStr("t")) as forge:
        with pytest.raises(ForgeError) as info:
            await forge.merge_pull_request(PROJECT, 7, sha=HEAD, method="rebase")
    assert info.value.retriable is False


async def test_github_refuses_to_schedule_a_merge() -> None:
    async with GitHubForge("http://127.0.0.1:1", token=SecretStr("t")) as forge:
        with pytest.raises(ForgeError) as info:
            await forge.merge_pull_request("o/r", 1, sha=HEAD, when_checks_pass=True)
    assert info.value.retriable is False


# -- config and factory -------------------------------------------------------------------


def test_forge_kind_picks_client_and_defaults() -> None:
    gitlab = ForgeConfig.model_validate({"kind": "gitlab"})
    assert (gitlab.api_url, gitlab.token_env) == (
        "https://gitlab.com/api/v4",
        "WAVELINE_GITLAB_TOKEN",
    )
    own = ForgeConfig.model_validate({"kind": "gitlab", "api_url": "https://git.example/api/v4"})
    assert own.api_url == "https://git.example/api/v4"
    assert ForgeConfig().kind == "github"
    assert isinstance(make_forge(gitlab, SecretStr("t")), GitLabForge)
    assert isinstance(make_forge(ForgeConfig(), SecretStr("t")), GitHubForge)
    with pytest.raises(ValidationError):
        ForgeConfig.model_validate({"kind": "gitea"})


def gitlab_config(
    url: str = f"https://gitlab.example.com/{PROJECT}.git", **strategy: Any
) -> WavelineConfig:
    doc = make_config("file:///tmp/x.git").model_dump(mode="json")
    doc["repos"]["cfg-app"].update(url=url, forge={"kind": "gitlab"}, required_checks=["validate"])
    doc["pipelines"]["app"]["waves"][2]["strategy"] = {"kind": "pull-request", **strategy}
    return WavelineConfig.model_validate(doc)


def test_gitlab_project_path_comes_from_the_whole_url_path() -> None:
    assert gitlab_config().repos["cfg-app"].full_name() == PROJECT
    assert gitlab_config().repo_by_full_name(PROJECT.upper()) == "cfg-app"
    # A GitHub repo keeps owner/name from the url's last two parts.
    github = make_config("https://github.com/acme/cfg-app.git").repos["cfg-app"]
    assert github.full_name() == "acme/cfg-app"


def test_merge_when_pipeline_succeeds_needs_gitlab_and_no_auto_merge() -> None:
    assert gitlab_config(merge_when_pipeline_succeeds=True)
    with pytest.raises(ValidationError, match="merge_when_pipeline_succeeds"):
        gitlab_config(merge_when_pipeline_succeeds=True, auto_merge=True)
    doc = gitlab_config().model_dump(mode="json")
    doc["repos"]["cfg-app"]["forge"] = {"kind": "github"}
    doc["repos"]["cfg-app"]["url"] = "https://github.com/acme/cfg-app.git"
    doc["pipelines"]["app"]["waves"][2]["strategy"]["merge_when_pipeline_succeeds"] = True
    with pytest.raises(ValidationError, match="merge_when_pipeline_succeeds"):
        WavelineConfig.model_validate(doc)


# -- webhooks -----------------------------------------------------------------------------


def project() -> dict[str, Any]:
    return {"id": 3, "name": "cfg-app", "path_with_namespace": PROJECT}


def mr_hook(action: str, state: str, **attrs: Any) -> dict[str, Any]:
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"username": "someone"},
        "project": project(),
        "object_attributes": {
            "iid": 7,
            "action": action,
            "state": state,
            "source_branch": "waveline/app/production",
            "target_branch": "master",
            "last_commit": {"id": HEAD, "message": "promote"},
            "merge_commit_sha": None,
            "url": f"https://gitlab.example.com/{PROJECT}/-/merge_requests/7",
            **attrs,
        },
    }


def pipeline_hook(status: str, builds: dict[str, str], **attrs: Any) -> dict[str, Any]:
    return {
        "object_kind": "pipeline",
        "object_attributes": {"id": 31, "sha": HEAD, "status": status, "ref": "auto", **attrs},
        "merge_request": None,
        "project": project(),
        "builds": [{"id": i, "name": n, "status": s} for i, (n, s) in enumerate(builds.items())],
    }


def job_hook(status: str, *, with_project: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "object_kind": "build",
        "ref": "auto",
        "tag": False,
        "sha": HEAD,
        "build_name": "validate",
        "build_status": status,
        "project_name": "Platform / Deploy / cfg-app",
        "repository": {"name": "cfg-app", "homepage": f"https://gitlab.example.com/{PROJECT}"},
    }
    if with_project:
        doc["project"] = project()
    return doc


def one(found: list[Any], kind: type[Any]) -> Any:
    assert len(found) == 1
    assert isinstance(found[0], kind)
    return found[0]


def test_merge_request_hook_drives_the_pull_request_lifecycle() -> None:
    config = gitlab_config()
    opened = one(
        messages(config, "Merge Request Hook", mr_hook("open", "opened"), NOW), PullRequestReported
    )
    assert (opened.repo, opened.number, opened.state, opened.merged, opened.head_sha) == (
        "cfg-app",
        7,
        "open",
        False,
        HEAD,
    )
    merged = one(
        messages(
            config, "Merge Request Hook", mr_hook("merge", "merged", merge_commit_sha=MERGE), NOW
        ),
        PullRequestReported,
    )
    assert (merged.state, merged.merged, merged.merge_sha) == ("closed", True, MERGE)
    closed = one(
        messages(config, "Merge Request Hook", mr_hook("close", "closed"), NOW), PullRequestReported
    )
    assert (closed.state, closed.merged, closed.merge_sha) == ("closed", False, None)
    assert len({opened.event_id, merged.event_id, closed.event_id}) == 3
    again = messages(config, "Merge Request Hook", mr_hook("open", "opened"), NOW)
    assert again[0].event_id == opened.event_id  # a redelivery is the same event


def test_approvals_other_projects_and_other_events_are_ignored() -> None:
    config = gitlab_config()
    assert messages(config, "Merge Request Hook", mr_hook("approved", "opened"), NOW) == []
    other = mr_hook("merge", "merged")
    other["project"]["path_with_namespace"] = "someone/else"
    assert messages(config, "Merge Request Hook", other, NOW) == []
    assert messages(config, "Push Hook", {"object_kind": "push"}, NOW) == []


def test_pipeline_hook_reports_the_pipeline_and_its_required_jobs() -> None:
    config = gitlab_config()
    hook = pipeline_hook("running", {"validate": "success", "lint": "failed", "e2e": "running"})
    found = [
        m for m in messages(config, "Pipeline Hook", hook, NOW) if isinstance(m, CheckReported)
    ]
    assert len(found) == len(messages(config, "Pipeline Hook", hook, NOW))
    facts = {(m.context, m.state, m.kind) for m in found}
    # Only "validate" is a required check of the repo; "lint" and "e2e" are not published.
    assert facts == {("pipeline", "pending", "check_suite"), ("validate", "success", "check_run")}
    assert {m.sha for m in found} == {HEAD}
    assert found[0].branches == ("auto",)
    named = messages(config, "Pipeline Hook", pipeline_hook("success", {}, name="vet"), NOW)
    assert [(m.context, m.state) for m in named if isinstance(m, CheckReported)] == [
        ("pipeline:vet", "success")
    ]
    assert len(named) == 1


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("success", "success"),
        ("failed", "failure"),
        ("canceled", "error"),
        ("skipped", "failure"),
        ("running", "pending"),
        ("pending", "pending"),
        ("manual", "pending"),
        ("created", "pending"),
    ],
)
def test_gitlab_statuses_as_check_states(status: str, state: str) -> None:
    assert check_state(status) == state


def test_job_hook_reports_the_job_with_or_without_a_project_object() -> None:
    config = gitlab_config()
    for with_project in (True, False):
        hook = job_hook("failed", with_project=with_project)
        check = one(messages(config, "Job Hook", hook, NOW), CheckReported)
        assert (check.repo, check.context, check.state, check.sha) == (
            "cfg-app",
            "validate",
            "failure",
            HEAD,
        )


def test_a_job_and_a_pipeline_build_of_one_fact_share_an_event_id() -> None:
    config = gitlab_config()
    by_job = one(messages(config, "Job Hook", job_hook("success"), NOW), CheckReported)
    by_pipeline = messages(
        config, "Pipeline Hook", pipeline_hook("success", {"validate": "success"}), NOW
    )
    assert by_job.event_id in {m.event_id for m in by_pipeline}
    assert isinstance(by_job.event_id, uuid.UUID)


@pytest.mark.parametrize(
    ("event", "doc"),
    [
        ("Pipeline Hook", {**pipeline_hook("success", {}), "object_attributes": {"sha": HEAD}}),
        ("Job Hook", {**job_hook("success"), "sha": "not-a-sha"}),
        ("Merge Request Hook", {**mr_hook("open", "opened"), "object_attributes": {"iid": "7"}}),
    ],
)
def test_a_body_not_of_the_event_shape_is_422(event: str, doc: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as info:
        messages(gitlab_config(), event, copy.deepcopy(doc), NOW)
    assert info.value.status_code == 422


# -- the route's authentication (no Kafka: nothing is published on these paths) ---------


@pytest.mark.parametrize(
    ("secret", "headers", "status"),
    [
        (HOOK_SECRET, {}, 401),
        (HOOK_SECRET, {"X-Gitlab-Token": "wrong-token"}, 401),
        (HOOK_SECRET, {"X-Gitlab-Token": HOOK_SECRET}, 204),  # Push Hook: ignored
        (None, {"X-Gitlab-Token": HOOK_SECRET}, 403),  # no secret configured here
    ],
)
async def test_route_checks_the_gitlab_token(
    tmp_path: Path, secret: str | None, headers: dict[str, str], status: int
) -> None:
    runtime = bootstrap(
        "ingest",
        Settings(kafka_bootstrap="127.0.0.1:1"),
        gitlab_config(),
        Secrets(gitlab_webhook_secret=SecretStr(secret) if secret else None),
    )
    async with TestClient(TestServer(create_app(runtime))) as client:
        resp = await client.post(
            "/v1/webhooks/gitlab",
            json={"object_kind": "push"},
            headers={"X-Gitlab-Event": "Push Hook", **headers},
        )
        assert resp.status == status, await resp.text()
        if status == 401:
            assert (await resp.json())["error"] == "unauthorized"

"""GitLabForge against the fake GitLab backed by a real bare repository: merge requests
opened, found and updated on 409, merged guarded by the head sha (a real merge commit on the
target branch), squashed, scheduled for when the pipeline succeeds, and GitLab's failures as
``ForgeError``s with the right ``retriable``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pygit2
import pytest
from pydantic import SecretStr

from tests.fakegitlab import FakeGitLab
from tests.integration.test_forge_github import commit, read, tip
from waveline.shared.forge import (
    Forge,
    ForgeError,
    GitLabForge,
    HeadChanged,
    PullRequestNotMergeable,
)

pytestmark = pytest.mark.timeout(30)

TOKEN = "glpat-fake-project-token-0123456789"
PROJECT = "platform/deploy/cfg-app"
HEAD = "waveline/app/production"


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A bare repo with ``master`` and a promotion branch one commit ahead of it."""
    path = tmp_path / "cfg-app.git"
    pygit2.init_repository(str(path), bare=True, initial_head="master")
    commit(path, "master", {"tags.json": b"{}\n", "README.md": b"cfg\n"}, "initial")
    commit(path, HEAD, {"tags.json": b'{"svc": "v2"}\n'}, "promote v2 to production")
    return path


@pytest.fixture
async def gitlab(bare: Path) -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab({PROJECT: bare}, token=TOKEN) as gl:
        yield gl


@pytest.fixture
async def forge(gitlab: FakeGitLab) -> AsyncIterator[GitLabForge]:
    async with GitLabForge(gitlab.api_url, token=SecretStr(TOKEN), timeout_s=5) as forge:
        yield forge


async def test_open_then_update_the_same_merge_request(
    forge: GitLabForge, gitlab: FakeGitLab, bare: Path
) -> None:
    as_forge: Forge = forge  # GitLabForge must satisfy the interface (checked by mypy)
    first = await as_forge.open_or_update_pull_request(PROJECT, HEAD, "master", "v2", "one")
    assert (first.number, first.created, first.state, first.merged) == (1, True, "open", False)
    assert first.head_sha == str(tip(bare, HEAD).id)
    assert first.url.endswith(f"/{PROJECT}/-/merge_requests/1")
    post = gitlab.requests[0]
    assert (post.method, post.raw_path) == (
        "POST",
        "/api/v4/projects/platform%2Fdeploy%2Fcfg-app/merge_requests",
    )
    assert post.headers["PRIVATE-TOKEN"] == TOKEN
    assert post.json == {
        "source_branch": HEAD,
        "target_branch": "master",
        "title": "v2",
        "description": "one",
    }

    again = await forge.open_or_update_pull_request(PROJECT, HEAD, "master", "v3", "two")
    assert (again.number, again.created) == (1, False)
    assert gitlab.iids(PROJECT) == [1]
    assert gitlab.merge_request(PROJECT, 1)["title"] == "v3"
    assert gitlab.merge_request(PROJECT, 1)["description"] == "two"
    # 409 on the POST, then the open one found by its branches and updated.
    calls = [(r.method, r.query) for r in gitlab.requests[1:]]
    assert calls == [
        ("POST", {}),
        ("GET", {"state": "opened", "source_branch": HEAD, "target_branch": "master"}),
        ("PUT", {}),
    ]


async def test_merge_is_guarded_by_the_head_sha(
    forge: GitLabForge, gitlab: FakeGitLab, bare: Path
) -> None:
    mr = await forge.open_or_update_pull_request(PROJECT, HEAD, "master", "v2", "")
    master_before = tip(bare, "master").id
    with pytest.raises(HeadChanged) as moved:
        await forge.merge_pull_request(PROJECT, mr.number, sha="0" * 40)
    assert (moved.value.status, moved.value.retriable) == (409, False)

    landed = await forge.merge_pull_request(PROJECT, mr.number, sha=mr.head_sha)
    merged = tip(bare, "master")
    assert landed == str(merged.id)
    assert [p.id for p in merged.parents] == [master_before, pygit2.Oid(hex=mr.head_sha)]
    assert read(bare, "master", "tags.json") == b'{"svc": "v2"}\n'
    after = await forge.get_pull_request(PROJECT, mr.number)
    assert (after.state, after.merged, after.merge_commit_sha) == ("closed", True, landed)

    with pytest.raises(PullRequestNotMergeable) as twice:
        await forge.merge_pull_request(PROJECT, mr.number, sha=mr.head_sha)
    assert twice.value.status == 405


async def test_squash_merge_lands_one_commit(forge: GitLabForge, bare: Path) -> None:
    mr = await forge.open_or_update_pull_request(PROJECT, HEAD, "master", "v2", "")
    master_before = tip(bare, "master").id
    landed = await forge.merge_pull_request(
        PROJECT, mr.number, sha=mr.head_sha, method="squash", commit_title="Promote v2"
    )
    squashed = tip(bare, "master")
    assert landed == str(squashed.id)
    assert [p.id for p in squashed.parents] == [master_before]
    assert squashed.message.startswith("Promote v2")


async def test_merge_when_pipeline_succeeds(
    forge: GitLabForge, gitlab: FakeGitLab, bare: Path
) -> None:
    mr = await forge.open_or_update_pull_request(PROJECT, HEAD, "master", "v2", "")
    # No pipeline for the head yet: GitLab refuses to schedule (405).
    with pytest.raises(PullRequestNotMergeable):
        await forge.merge_pull_request(PROJECT, mr.number, sha=mr.head_sha, when_checks_pass=True)
    await gitlab.pipeline(PROJECT, mr.head_sha, "running", ref=HEAD)
    scheduled = await forge.merge_pull_request(
        PROJECT, mr.number, sha=mr.head_sha, when_checks_pass=True
    )
    assert scheduled is None
    sent = gitlab.requests[-1].json
    assert sent["auto_merge"] is sent["merge_when_pipeline_succeeds"] is True
    assert (await forge.get_pull_request(PROJECT, mr.number)).state == "open"
    await gitlab.pipeline(PROJECT, mr.head_sha, "success", ref=HEAD)
    done = await forge.get_pull_request(PROJECT, mr.number)
    assert (done.merged, done.merge_commit_sha) == (True, str(tip(bare, "master").id))


async def test_a_closed_merge_request_is_not_reused(forge: GitLabForge, gitlab: FakeGitLab) -> None:
    first = await forge.open_or_update_pull_request(PROJECT, HEAD, "master", "v2", "")
    await gitlab.close(PROJECT, first.number)
    assert (await forge.get_pull_request(PROJECT, first.number)).state == "closed"
    second = await forge.open_or_update_pull_request(PROJECT, HEAD, "master", "v2", "")
    assert (second.number, second.created) == (2, True)


async def test_failures_are_forge_errors_that_say_whether_to_retry(
    gitlab: FakeGitLab, forge: GitLabForge
) -> None:
    wrong = "glpat-not-the-right-token-987654"
    async with GitLabForge(gitlab.api_url, token=SecretStr(wrong)) as bad:
        with pytest.raises(ForgeError) as denied:
            await bad.get_pull_request(PROJECT, 1)
    assert (denied.value.status, denied.value.retriable) == (401, False)
    assert wrong not in str(denied.value)

    with pytest.raises(ForgeError) as unknown:
        await forge.get_pull_request("platform/deploy/other", 1)
    assert (unknown.value.status, unknown.value.retriable) == (404, False)
    with pytest.raises(ForgeError) as no_mr:
        await forge.get_pull_request(PROJECT, 99)
    assert (no_mr.value.status, no_mr.value.retriable) == (404, False)

    for status in (502, 429):
        gitlab.fail_next(status)
        with pytest.raises(ForgeError) as down:
            await forge.open_or_update_pull_request(PROJECT, HEAD, "master", "v2", "")
        assert (down.value.status, down.value.retriable) == (status, True)

    with pytest.raises(ForgeError) as missing:
        await forge.open_or_update_pull_request(PROJECT, HEAD, "master", "", "")
    assert missing.value.status == 400
    assert "title is missing" in str(missing.value)


async def test_an_unencoded_project_path_is_not_found(gitlab: FakeGitLab) -> None:
    """The fake, like GitLab, takes the project id as one encoded path segment."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{gitlab.api_url}/projects/{PROJECT}/merge_requests",
            headers={"PRIVATE-TOKEN": TOKEN},
        ) as resp,
    ):
        assert resp.status == 404

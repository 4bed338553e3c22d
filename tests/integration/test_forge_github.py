"""GitHubForge against a fake GitHub backed by real bare repositories: PRs, merges, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pygit2
import pytest
from aiohttp import web
from pydantic import SecretStr

from tests.fakegithub import FakeGitHub, FakeReply
from waveline.shared.forge import (
    Forge,
    ForgeError,
    GitHubForge,
    HeadChanged,
    PullRequestNotMergeable,
)

pytestmark = pytest.mark.timeout(30)

TOKEN = "ghp_fake_forge_token_0123456789abcdef"
HOOK_SECRET = "fake-github-hook-secret"
REPO = "acme/cfg-app"
HEAD = "waveline/promote-internal"


def commit(bare: Path, branch: str, files: dict[str, bytes], message: str) -> pygit2.Oid:
    """Commit ``files`` (flat, added or replaced) on ``branch``; create it from master if new."""
    repo = pygit2.Repository(str(bare))
    ref = repo.references.get(f"refs/heads/{branch}") or repo.references.get("refs/heads/master")
    parent = repo[ref.target].peel(pygit2.Commit) if ref is not None else None
    builder = repo.TreeBuilder(parent.tree) if parent is not None else repo.TreeBuilder()
    for name, data in files.items():
        builder.insert(name, repo.create_blob(data), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("tester", "tester@example.com")
    parents = [parent.id] if parent is not None else []
    return repo.create_commit(f"refs/heads/{branch}", sig, sig, message, builder.write(), parents)


def tip(bare: Path, branch: str) -> pygit2.Commit:
    repo = pygit2.Repository(str(bare))
    return repo.revparse_single(f"refs/heads/{branch}").peel(pygit2.Commit)


def read(bare: Path, branch: str, name: str) -> bytes:
    blob = tip(bare, branch).tree[name]
    assert isinstance(blob, pygit2.Blob)
    return blob.data


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A bare repo with ``master`` and a promotion branch one commit ahead of it."""
    path = tmp_path / "cfg-app.git"
    pygit2.init_repository(str(path), bare=True, initial_head="master")
    commit(path, "master", {"tags.json": b"{}\n", "README.md": b"cfg\n"}, "initial")
    commit(path, HEAD, {"tags.json": b'{"svc": "v2"}\n'}, "promote v2 to internal")
    return path


@pytest.fixture
async def github(bare: Path) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub({REPO: bare}, token=TOKEN) as gh:
        yield gh


@pytest.fixture
async def forge(github: FakeGitHub) -> AsyncIterator[GitHubForge]:
    async with GitHubForge(github.url, token=SecretStr(TOKEN), timeout_s=5) as forge:
        yield forge


async def test_open_sends_what_github_expects(
    forge: GitHubForge, github: FakeGitHub, bare: Path
) -> None:
    as_forge: Forge = forge  # GitHubForge must satisfy the interface (checked by mypy)
    pr = await as_forge.open_or_update_pull_request(REPO, HEAD, "master", "Promote v2", "body")
    assert pr.created and pr.number == 1 and pr.state == "open" and not pr.merged
    assert (pr.head_ref, pr.base_ref) == (HEAD, "master")
    assert pr.head_sha == str(tip(bare, HEAD).id)
    assert pr.url.endswith(f"/{REPO}/pull/1") and pr.merge_commit_sha is None
    sent = github.requests[0]
    assert (sent.method, sent.path) == ("POST", f"/repos/{REPO}/pulls")
    assert sent.json == {"title": "Promote v2", "head": HEAD, "base": "master", "body": "body"}
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Accept"] == "application/vnd.github+json"
    assert sent.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert sent.headers["User-Agent"] == "waveline"


async def test_a_second_open_on_the_same_head_updates_the_one_pull_request(
    forge: GitHubForge, github: FakeGitHub, bare: Path
) -> None:
    first = await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "one")
    newer = commit(bare, HEAD, {"tags.json": b'{"svc": "v3"}\n'}, "promote v3 to internal")
    again = await forge.open_or_update_pull_request(REPO, HEAD, "master", "v3", "two")
    assert (again.number, again.created, again.head_sha) == (first.number, False, str(newer))
    assert [(r.method, r.path) for r in github.requests] == [
        ("POST", f"/repos/{REPO}/pulls"),
        ("POST", f"/repos/{REPO}/pulls"),
        ("GET", f"/repos/{REPO}/pulls"),
        ("PATCH", f"/repos/{REPO}/pulls/1"),
    ]
    assert github.requests[2].query == {"head": f"acme:{HEAD}", "base": "master", "state": "open"}
    assert github.requests[3].json == {"title": "v3", "body": "two"}
    assert (github.pull(REPO, 1)["title"], github.pull(REPO, 1)["body"]) == ("v3", "two")
    with pytest.raises(FakeReply):
        github.pull(REPO, 2)


async def test_a_closed_pull_request_is_replaced_by_a_new_one(
    forge: GitHubForge, github: FakeGitHub
) -> None:
    first = await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "")
    await github.close(REPO, first.number)
    assert (await forge.get_pull_request(REPO, first.number)).state == "closed"
    second = await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "")
    assert second.created and second.number == first.number + 1


async def test_a_wrong_token_is_permanent_and_never_shown(
    github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "ghp_wrong_token_should_never_leak_42"
    async with GitHubForge(github.url, token=SecretStr(wrong)) as forge:
        with pytest.raises(ForgeError) as info:
            await forge.open_or_update_pull_request(REPO, HEAD, "master", "t", "b")
    assert (info.value.status, info.value.retriable, info.value.code) == (401, False, "forge_error")
    assert "Bad credentials" in str(info.value)
    assert wrong not in str(info.value) and wrong not in caplog.text


async def test_the_fake_takes_both_auth_schemes_like_github(github: FakeGitHub) -> None:
    async with aiohttp.ClientSession() as http:
        for scheme, status in (("token", 200), ("Bearer", 200), ("Basic", 401)):
            headers = {"Authorization": f"{scheme} {TOKEN}"}
            async with http.get(f"{github.url}/repos/{REPO}/pulls", headers=headers) as resp:
                assert resp.status == status, scheme
        async with http.get(f"{github.url}/repos/{REPO}/pulls") as resp:
            assert (resp.status, await resp.json()) == (
                401,
                {
                    "message": "Bad credentials",
                    "documentation_url": "https://docs.github.com/rest",
                    "status": "401",
                },
            )


async def test_unknown_repository_and_pull_request_are_404(forge: GitHubForge) -> None:
    with pytest.raises(ForgeError) as repo_info:
        await forge.get_pull_request("acme/nope", 1)
    with pytest.raises(ForgeError) as pr_info:
        await forge.get_pull_request(REPO, 99)
    for info in (repo_info, pr_info):
        assert (info.value.status, info.value.retriable) == (404, False)


async def test_a_missing_head_branch_is_a_validation_error(forge: GitHubForge) -> None:
    with pytest.raises(ForgeError) as info:
        await forge.open_or_update_pull_request(REPO, "no-such-branch", "master", "t", "b")
    assert (info.value.status, info.value.retriable) == (422, False)
    assert "Validation Failed" in str(info.value) and "head invalid" in str(info.value)


async def test_merge_moves_master_in_the_bare_repository(forge: GitHubForge, bare: Path) -> None:
    old_master, head = tip(bare, "master").id, tip(bare, HEAD)
    pr = await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "")
    sha = await forge.merge_pull_request(REPO, pr.number, sha=pr.head_sha)
    merged = tip(bare, "master")
    assert str(merged.id) == sha
    assert merged.parent_ids == [old_master, head.id] and merged.tree_id == head.tree_id
    assert merged.message.startswith(f"Merge pull request #1 from acme/{HEAD}\n\nv2")
    after = await forge.get_pull_request(REPO, pr.number)
    assert (after.state, after.merged, after.merge_commit_sha) == ("closed", True, sha)


async def test_merge_of_diverged_branches_keeps_both_sides(forge: GitHubForge, bare: Path) -> None:
    commit(bare, "master", {"README.md": b"edited on master\n"}, "direct push")
    pr = await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "")
    await forge.merge_pull_request(REPO, pr.number, sha=pr.head_sha)
    assert len(tip(bare, "master").parents) == 2
    assert read(bare, "master", "README.md") == b"edited on master\n"
    assert read(bare, "master", "tags.json") == b'{"svc": "v2"}\n'


async def test_squash_writes_one_commit_with_the_given_message(
    forge: GitHubForge, bare: Path
) -> None:
    old_master = tip(bare, "master").id
    pr = await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "")
    sha = await forge.merge_pull_request(
        REPO, pr.number, sha=pr.head_sha, method="squash", commit_title="t", commit_message="m"
    )
    squashed = tip(bare, "master")
    assert str(squashed.id) == sha and squashed.parent_ids == [old_master]
    assert squashed.message == "t\n\nm" and squashed.tree_id == tip(bare, HEAD).tree_id


async def test_rebase_replays_the_head_commits_on_master(forge: GitHubForge, bare: Path) -> None:
    old_master = tip(bare, "master").id
    pr = await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "")
    sha = await forge.merge_pull_request(REPO, pr.number, sha=pr.head_sha, method="rebase")
    rebased = tip(bare, "master")
    assert str(rebased.id) == sha != pr.head_sha and rebased.parent_ids == [old_master]
    assert rebased.message == "promote v2 to internal"


async def test_merge_with_a_stale_sha_is_refused(forge: GitHubForge, bare: Path) -> None:
    pr = await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "")
    commit(bare, HEAD, {"tags.json": b'{"svc": "v3"}\n'}, "someone pushed")
    before = tip(bare, "master").id
    with pytest.raises(HeadChanged) as info:
        await forge.merge_pull_request(REPO, pr.number, sha=pr.head_sha)
    assert (info.value.status, info.value.retriable) == (409, False)
    assert tip(bare, "master").id == before


async def test_conflicting_changes_are_not_mergeable(forge: GitHubForge, bare: Path) -> None:
    commit(bare, "master", {"tags.json": b'{"svc": "hotfix"}\n'}, "hotfix on master")
    pr = await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "")
    with pytest.raises(PullRequestNotMergeable) as info:
        await forge.merge_pull_request(REPO, pr.number, sha=pr.head_sha)
    assert (info.value.status, info.value.retriable) == (405, False)
    with pytest.raises(ForgeError, match="unknown merge method"):
        await forge.merge_pull_request(REPO, pr.number, sha=pr.head_sha, method="ff")


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
async def test_server_trouble_is_retriable(
    forge: GitHubForge, github: FakeGitHub, status: int
) -> None:
    github.fail_next(status)
    with pytest.raises(ForgeError) as info:
        await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "")
    assert (info.value.status, info.value.retriable) == (status, True)
    assert (await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "")).created


@pytest.mark.parametrize(
    ("headers", "retriable"),
    [({"Retry-After": "60"}, True), ({"X-RateLimit-Remaining": "0"}, True), ({}, False)],
)
async def test_a_rate_limit_403_is_retriable_other_403_are_not(
    forge: GitHubForge, github: FakeGitHub, headers: dict[str, str], retriable: bool
) -> None:
    github.fail_next(403, headers=headers)
    with pytest.raises(ForgeError) as info:
        await forge.get_pull_request(REPO, 1)
    assert (info.value.status, info.value.retriable) == (403, retriable)


async def test_no_answer_is_retriable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with GitHubForge(f"http://127.0.0.1:{port}", token=SecretStr(TOKEN)) as forge:
        with pytest.raises(ForgeError) as info:
            await forge.get_pull_request(REPO, 1)
    assert (info.value.status, info.value.retriable) == (None, True)
    assert TOKEN not in str(info.value)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A webhook receiver on loopback that keeps every delivery's headers and raw body."""
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", received
    await runner.cleanup()


async def test_pull_request_webhooks_are_signed_and_in_order(
    bare: Path, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    async with (
        FakeGitHub({REPO: bare}, token=TOKEN, webhook_url=url, webhook_secret=HOOK_SECRET) as gh,
        GitHubForge(gh.url, token=SecretStr(TOKEN)) as forge,
    ):
        pr = await forge.open_or_update_pull_request(REPO, HEAD, "master", "v2", "")
        commit(bare, HEAD, {"tags.json": b'{"svc": "v3"}\n'}, "promote v3")
        await forge.open_or_update_pull_request(REPO, HEAD, "master", "v3", "")
        merged = await gh.merge(REPO, pr.number)
    docs: list[dict[str, Any]] = []
    for headers, body in received:
        expected = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Hub-Signature-256"], f"sha256={expected}")
        assert headers["X-GitHub-Event"] == "pull_request"
        uuid.UUID(headers["X-GitHub-Delivery"])
        docs.append(json.loads(body))
    assert [d["action"] for d in docs] == ["opened", "synchronize", "edited", "closed"]
    assert [d.status for d in gh.deliveries] == [202] * 4
    closed = docs[-1]
    assert closed["number"] == pr.number and closed["repository"]["full_name"] == REPO
    assert closed["pull_request"]["merged"] is True
    assert closed["pull_request"]["merge_commit_sha"] == merged == str(tip(bare, "master").id)
    assert closed["pull_request"]["head"]["ref"] == HEAD
    assert closed["pull_request"]["base"]["ref"] == "master"

"""Waveline's own push (pushwire.py) against real remotes: ``git receive-pack`` for file://,
``git http-backend`` behind basic auth (tests/gitserver.py) for http://. libgit2's push is
made to fail in these tests, so each one shows the own path did the work; every remote
passes ``git fsck --full`` after it."""

from __future__ import annotations

import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pygit2
import pytest

from tests.gitserver import GitHttpServer
from waveline.devstack.demo import seed_repo
from waveline.shared.config import RepoConfig
from waveline.shared.errors import GitFailure, PushRejected
from waveline.shared.gitengine.remote import CredentialsRefused
from waveline.shared.gitengine.repo import ConfigRepo, Credentials
from waveline.shared.gitengine.storage import ObjectStore

TOKEN = "ghp_own_push_token_24680"


@pytest.fixture(autouse=True)
def no_libgit2_push(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ConfigRepo, updates: object) -> None:
        raise AssertionError("libgit2's push was used")

    monkeypatch.setattr(ConfigRepo, "_push_libgit2", refuse)


@pytest.fixture(params=["file", "http"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(url, bare path) of a seeded remote, served over ``request.param``."""
    bare = tmp_path / "srv" / "cfg-app.git"
    seed_repo(bare)
    if request.param == "file":
        yield bare.as_uri(), bare
        return
    with GitHttpServer(tmp_path / "srv", TOKEN) as server:
        yield server.url("cfg-app.git"), bare


def clone(url: str, path: Path, token: str = TOKEN) -> ConfigRepo:
    config = RepoConfig.model_validate({"url": url, "allow_insecure_http": True})
    repo = ConfigRepo(
        "cfg-app",
        config,
        path,
        Credentials(token=token),
        store=ObjectStore(path),
        receive_pack_for_files=True,
    )
    repo.fetch()
    return repo


def git(bare: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={bare}", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def heads(bare: Path) -> dict[str, str]:
    out = git(bare, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads")
    return dict(line.split() for line in out.splitlines())


def fsck(bare: Path) -> None:
    result = subprocess.run(
        ["git", f"--git-dir={bare}", "fsck", "--full"], capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr


def change(repo: ConfigRepo, parent: pygit2.Oid, n: int) -> pygit2.Oid:
    new = repo.create_commit(parent, {"images/staging/tags.json": f"{n}\n".encode()}, f"c{n}")
    assert new is not None
    return new


def test_both_refs_land_atomically_and_the_remote_is_whole(
    remote: tuple[str, Path], tmp_path: Path
) -> None:
    url, bare = remote
    repo = clone(url, tmp_path / "clone.git")
    master = repo.remote_ref("master")
    assert master is not None
    tip = master
    for n in range(3):
        tip = change(repo, tip, n)
        repo.push({"auto": (repo.remote_ref("auto"), tip)})
    nested = repo.create_commit(tip, {"apps/a/b/c.yaml": b"x\n", "README.md": None}, "nested")
    assert nested is not None
    repo.push({"master": (master, tip), "auto": (tip, nested)})
    assert heads(bare) == {"refs/heads/master": str(tip), "refs/heads/auto": str(nested)}
    assert (repo.remote_ref("master"), repo.remote_ref("auto")) == (tip, nested)
    fsck(bare)
    # Another clone sees the same history.
    assert clone(url, tmp_path / "other.git").remote_ref("auto") == nested


def test_an_eviction_rewrite_is_pushed(remote: tuple[str, Path], tmp_path: Path) -> None:
    url, bare = remote
    repo = clone(url, tmp_path / "clone.git")
    base = repo.remote_ref("master")
    assert base is not None
    a = change(repo, base, 1)
    red = repo.create_commit(a, {"images/production/tags.json": b"red\n"}, "red")
    assert red is not None
    b = change(repo, red, 2)
    repo.push({"auto": (None, b)})
    b2 = change(repo, a, 2)  # b replayed onto a, without red
    repo.push({"auto": (b, b2)})
    assert heads(bare)["refs/heads/auto"] == str(b2)
    fsck(bare)


def test_a_broken_lease_sends_nothing(remote: tuple[str, Path], tmp_path: Path) -> None:
    url, bare = remote
    ours = clone(url, tmp_path / "ours.git")
    theirs = clone(url, tmp_path / "theirs.git")
    master = ours.remote_ref("master")
    assert master is not None
    theirs.push({"master": (master, change(theirs, master, 7))})
    before = (heads(bare), git(bare, "count-objects", "-v"))
    with pytest.raises(PushRejected, match="lease broken: refs/heads/master is "):
        ours.push({"master": (master, change(ours, master, 8))})
    assert (heads(bare), git(bare, "count-objects", "-v")) == before
    assert ours.remote_ref("master") == master  # not moved by a refused push
    fsck(bare)


def test_a_server_side_refusal_carries_the_reason(remote: tuple[str, Path], tmp_path: Path) -> None:
    url, bare = remote
    hook = bare / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    repo = clone(url, tmp_path / "clone.git")
    master = repo.remote_ref("master")
    assert master is not None
    before = heads(bare)
    with pytest.raises(PushRejected, match="pre-receive hook declined"):
        repo.push({"master": (master, change(repo, master, 1)), "auto": (None, master)})
    assert heads(bare) == before
    fsck(bare)


def test_a_writer_racing_us_past_the_advertisement_is_refused_by_the_remote(
    tmp_path: Path,
) -> None:
    """The remote re-checks each old value under its lock: a ref moved between the
    advertisement and the update (here by a hook, standing in for a concurrent push)."""
    bare = tmp_path / "srv" / "cfg-app.git"
    seed_repo(bare)
    repo = clone(bare.as_uri(), tmp_path / "clone.git")
    master = repo.remote_ref("master")
    assert master is not None
    other = change(repo, master, 99)
    repo.push({"auto": (None, other)})
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(
        f"#!/bin/sh\nunset GIT_QUARANTINE_PATH\ngit update-ref refs/heads/master {other} {master}\n"
    )
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(PushRejected, match="remote rejected"):
        repo.push({"master": (master, change(repo, master, 5))})
    assert heads(bare)["refs/heads/master"] == str(other)
    fsck(bare)


def test_a_wrong_token_is_refused_credentials(tmp_path: Path) -> None:
    bare = tmp_path / "srv" / "cfg-app.git"
    seed_repo(bare)
    with GitHttpServer(tmp_path / "srv", TOKEN) as server:
        url = server.url("cfg-app.git")
        repo = clone(url, tmp_path / "clone.git")
        master = repo.remote_ref("master")
        assert master is not None
        repo.creds.token = "wrong-token-1357"
        with pytest.raises(CredentialsRefused) as info:
            repo.push({"master": (master, change(repo, master, 1))})
        assert not info.value.retriable
        assert "wrong-token-1357" not in str(info.value)
        # A new token (as the GitHub App path mints) works on the retry.
        repo.creds.token = TOKEN
        repo.push({"master": (master, change(repo, master, 2))})
    fsck(bare)


def test_no_token_over_http_without_the_opt_in(tmp_path: Path) -> None:
    bare = tmp_path / "srv" / "cfg-app.git"
    seed_repo(bare)
    with GitHttpServer(tmp_path / "srv", TOKEN) as server:
        url = server.url("cfg-app.git")
        repo = clone(url, tmp_path / "clone.git")
        master = repo.remote_ref("master")
        assert master is not None
        seen = server.credentials_seen
        strict = ConfigRepo(
            "cfg-app",
            RepoConfig.model_validate({"url": url}),
            tmp_path / "clone.git",
            Credentials(token=TOKEN),
        )
        with pytest.raises(GitFailure, match="clear text") as info:
            strict.push({"master": (master, change(strict, master, 1))})
        assert not info.value.retriable
        assert server.credentials_seen == seen


class _Redirect(BaseHTTPRequestHandler):
    server: _RedirectServer

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def do_GET(self) -> None:
        self.send_response(301)
        self.send_header("Location", self.server.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _RedirectServer(ThreadingHTTPServer):
    target: str


def test_a_redirect_to_another_host_is_refused_without_the_token(tmp_path: Path) -> None:
    bare = tmp_path / "srv" / "cfg-app.git"
    seed_repo(bare)
    with GitHttpServer(tmp_path / "srv", TOKEN, host="127.0.0.2") as real:
        repo = clone(real.url("cfg-app.git"), tmp_path / "clone.git")
        master = repo.remote_ref("master")
        assert master is not None
        new = change(repo, master, 1)
        redirector = _RedirectServer(("127.0.0.1", 0), _Redirect)
        redirector.target = real.url("").rstrip("/")
        thread = threading.Thread(target=redirector.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{redirector.server_address[1]}/cfg-app.git"
            config = RepoConfig.model_validate({"url": url, "allow_insecure_http": True})
            moved = ConfigRepo("cfg-app", config, tmp_path / "clone.git", repo.creds)
            seen = real.credentials_seen
            with pytest.raises(GitFailure, match=r"redirected to http://127\.0\.0\.2") as info:
                moved.push({"master": (master, new)})
            assert not info.value.retriable
            assert real.credentials_seen == seen
        finally:
            redirector.shutdown()
            redirector.server_close()
    assert heads(bare)["refs/heads/master"] == str(master)


def test_file_remotes_are_written_in_process_by_default(tmp_path: Path) -> None:
    """Without receive_pack_for_files: the changed objects as a pack in the remote, the
    refs moved under their locks, the leases checked; no receive-pack (its hooks do not
    run, as with libgit2's local push)."""
    bare = tmp_path / "srv" / "cfg-app.git"
    seed_repo(bare)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    config = RepoConfig.model_validate({"url": bare.as_uri()})
    path = tmp_path / "clone.git"
    repo = ConfigRepo("cfg-app", config, path, store=ObjectStore(path))
    repo.fetch()
    master = repo.remote_ref("master")
    assert master is not None
    packs = set((bare / "objects" / "pack").glob("*.pack"))
    tip = change(repo, master, 1)
    repo.push({"master": (master, tip), "auto": (None, tip)})
    nested = repo.create_commit(tip, {"apps/x/y.yaml": b"y\n"}, "nested")
    assert nested is not None
    repo.push({"auto": (tip, nested)})
    assert heads(bare) == {"refs/heads/master": str(tip), "refs/heads/auto": str(nested)}
    assert len(set((bare / "objects" / "pack").glob("*.pack")) - packs) == 2
    fsck(bare)
    with pytest.raises(PushRejected, match="lease broken: refs/heads/master is "):
        repo.push({"master": (master, change(repo, master, 2))})
    assert heads(bare)["refs/heads/master"] == str(tip)
    assert len(set((bare / "objects" / "pack").glob("*.pack")) - packs) == 2


def file_clone(tmp_path: Path) -> tuple[Path, ConfigRepo, pygit2.Oid]:
    """A seeded remote, a clone pushing to it in process (file://), and its master."""
    bare = tmp_path / "srv" / "cfg-app.git"
    seed_repo(bare)
    path = tmp_path / "clone.git"
    repo = ConfigRepo("cfg-app", RepoConfig.model_validate({"url": bare.as_uri()}), path)
    repo.fetch()
    master = repo.remote_ref("master")
    assert master is not None
    return bare, repo, master


def test_a_ref_locked_by_another_writer_is_refused_in_process(tmp_path: Path) -> None:
    bare, repo, master = file_clone(tmp_path)
    (bare / "refs" / "heads" / "master.lock").write_text("")  # git's lock, held elsewhere
    with pytest.raises(PushRejected, match="remote rejected refs/heads/master"):
        repo.push({"master": (master, change(repo, master, 1))})
    assert heads(bare)["refs/heads/master"] == str(master)


def test_a_branch_created_at_a_commit_the_remote_has_sends_an_empty_pack(
    remote: tuple[str, Path], tmp_path: Path
) -> None:
    url, bare = remote
    repo = clone(url, tmp_path / "clone.git")
    master = repo.remote_ref("master")
    assert master is not None
    repo.push({"auto": (None, master)})
    assert heads(bare) == {"refs/heads/master": str(master), "refs/heads/auto": str(master)}
    assert repo.remote_ref("auto") == master
    fsck(bare)


def test_a_new_branch_on_a_remote_head_sends_only_what_changed_in_process(
    tmp_path: Path,
) -> None:
    """The first push of ``auto`` (no lease: the branch is new) on top of ``master``: the
    remote's heads count as what it has, so the pack holds the changed objects only, not
    the whole tree (libgit2's push, which the fixture refuses, is not needed)."""
    bare, repo, master = file_clone(tmp_path)
    packs = set((bare / "objects" / "pack").glob("*.pack"))
    tip = change(repo, master, 1)
    repo.push({"auto": (None, tip)})
    assert heads(bare) == {"refs/heads/master": str(master), "refs/heads/auto": str(tip)}
    (new_pack,) = set((bare / "objects" / "pack").glob("*.pack")) - packs
    listed = git(bare, "verify-pack", "-v", str(new_pack.with_suffix(".idx")))
    kinds = [line.split()[1] for line in listed.splitlines() if line[:40].isalnum()]
    # The commit, the root, images/ and images/staging/ trees, and the one blob.
    assert sorted(kinds) == ["blob", "commit", "tree", "tree", "tree"]
    fsck(bare)

"""Waveline's own push over HTTP at its edges: TLS verified (a self-signed certificate is
refused), a redirect followed within the origin only (https to http on the same host is
refused), answers too large or of the wrong type ended quickly with a permanent error, and
the fallback to libgit2 (a merge on the branch) actually pushing."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pygit2
import pytest

from tests.gitserver import GitHttpServer
from tests.gitserver import _Handler as _GitHandler
from tests.integration.test_own_push import TOKEN, change, clone, fsck, heads
from tests.tlscert import self_signed
from waveline.devstack.demo import seed_repo
from waveline.shared.config import RepoConfig
from waveline.shared.errors import GitFailure, GitUnreachable
from waveline.shared.gitengine import pushhttp
from waveline.shared.gitengine.repo import ConfigRepo
from waveline.shared.gitengine.storage import ObjectStore


class _Canned(BaseHTTPRequestHandler):
    """Answers every request with the server's ``status``, ``headers`` and ``body``."""

    server: _CannedServer

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def _answer(self) -> None:
        self.server.requests.append(self.path)
        self.send_response(self.server.status)
        for key, value in self.server.headers.items():
            self.send_header(key, value.replace("{path}", self.path))
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    do_GET = _answer
    do_POST = _answer


class _CannedServer(ThreadingHTTPServer):
    status: int
    headers: dict[str, str]
    body: bytes
    requests: list[str]


@contextmanager
def canned(
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[_CannedServer]:
    srv = _CannedServer(("127.0.0.1", 0), _Canned)
    srv.status, srv.body, srv.headers, srv.requests = status, body, headers or {}, []
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        srv.socket = context.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[ConfigRepo, Path]]:
    """A clone of a seeded remote (over http), and the remote's bare path."""
    bare = tmp_path / "srv" / "cfg-app.git"
    seed_repo(bare)
    with GitHttpServer(tmp_path / "srv", TOKEN) as server:
        yield clone(server.url("cfg-app.git"), tmp_path / "clone.git"), bare


def retarget(repo: ConfigRepo, url: str) -> ConfigRepo:
    """The same clone, pushing to ``url`` (new commits are made through it)."""
    config = RepoConfig.model_validate({"url": url, "allow_insecure_http": True})
    return ConfigRepo("cfg-app", config, repo.path, repo.creds, store=ObjectStore(repo.path))


def one_change(repo: ConfigRepo) -> dict[str, tuple[pygit2.Oid | None, pygit2.Oid]]:
    master = repo.remote_ref("master")
    assert master is not None
    return {"master": (master, change(repo, master, 1))}


def test_a_self_signed_certificate_is_refused(
    seeded: tuple[ConfigRepo, Path], tmp_path: Path
) -> None:
    repo, bare = seeded
    before = heads(bare)
    with canned(200, tls=self_signed(tmp_path)) as srv:
        url = f"https://127.0.0.1:{srv.server_address[1]}/cfg-app.git"
        with pytest.raises(GitFailure, match="TLS certificate did not verify") as info:
            (moved := retarget(repo, url)).push(one_change(moved))
        assert srv.requests == []  # the handshake failed: no request, no token
    assert not info.value.retriable
    assert heads(bare) == before


class _Moved(_GitHandler):
    """git http-backend, with ``/old/<path>`` answered by a redirect to ``/<path>``."""

    def _serve(self) -> None:
        if not self.path.startswith("/old/"):
            super()._serve()
            return
        self.send_response(301)
        self.send_header("Location", self.path[len("/old") :])
        self.send_header("Content-Length", "0")
        self.end_headers()
        MOVED.append(self.command)

    do_GET = _serve
    do_POST = _serve


MOVED: list[str] = []


def test_a_redirect_within_the_origin_is_followed(
    seeded: tuple[ConfigRepo, Path], tmp_path: Path
) -> None:
    repo, bare = seeded
    MOVED.clear()
    with GitHttpServer(tmp_path / "srv", TOKEN) as real:
        # gitserver.py takes no handler: this test's is swapped in (same server, same origin).
        real._server.RequestHandlerClass = _Moved
        moved = retarget(repo, real.url("old/cfg-app.git"))
        updates = one_change(moved)
        moved.push(updates)
    assert MOVED == ["GET"]  # the advertisement redirected, the POST sent where it pointed
    assert heads(bare)["refs/heads/master"] == str(updates["master"][1])
    fsck(bare)


def test_a_redirect_from_https_to_http_on_the_same_host_is_refused(
    seeded: tuple[ConfigRepo, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, bare = seeded
    cert, key = self_signed(tmp_path)
    # The certificate trusted, so the redirect (not the TLS check) is what is refused.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    before = heads(bare)
    with canned(200, b"unused") as plain:
        target = f"http://127.0.0.1:{plain.server_address[1]}/cfg-app.git"
        headers = {"Location": target + "/info/refs?service=git-receive-pack"}
        with canned(302, headers=headers, tls=(cert, key)) as secure:
            url = f"https://127.0.0.1:{secure.server_address[1]}/cfg-app.git"
            with pytest.raises(GitFailure, match=r"redirected to http://127\.0\.0\.1") as info:
                (moved := retarget(repo, url)).push(one_change(moved))
            assert len(secure.requests) == 1
        assert plain.requests == []
    assert not info.value.retriable
    assert heads(bare) == before


@pytest.mark.parametrize(
    ("body", "ctype", "why"),
    [
        (b"x" * 5000, "application/x-git-receive-pack-advertisement", "size limit"),
        (b"<html>sign in</html>", "text/html", "not smart HTTP"),
    ],
    ids=["too-large", "wrong-type"],
)
def test_a_wrong_answer_ends_quickly_and_for_good(
    seeded: tuple[ConfigRepo, Path],
    monkeypatch: pytest.MonkeyPatch,
    body: bytes,
    ctype: str,
    why: str,
) -> None:
    repo, bare = seeded
    monkeypatch.setattr(pushhttp, "MAX_ANSWER", 1000)
    before = heads(bare)
    with canned(200, body, {"Content-Type": ctype}) as srv:
        url = f"http://127.0.0.1:{srv.server_address[1]}/cfg-app.git"
        started = time.monotonic()
        with pytest.raises(GitFailure, match=why) as info:
            (moved := retarget(repo, url)).push(one_change(moved))
        assert time.monotonic() - started < 5
    assert not isinstance(info.value, GitUnreachable)
    assert not info.value.retriable
    assert heads(bare) == before


def test_a_merge_on_the_branch_is_pushed_by_libgit2(
    seeded: tuple[ConfigRepo, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, bare = seeded
    used: list[str] = []
    libgit2 = ConfigRepo._push_libgit2

    def spy(self: ConfigRepo, updates: Any) -> None:
        used.append("libgit2")
        libgit2(self, updates)

    monkeypatch.setattr(ConfigRepo, "_push_libgit2", spy)
    master = repo.remote_ref("master")
    assert master is not None
    side = change(repo, master, 1)
    main = change(repo, master, 2)
    main_commit = repo.repo.get(main)
    assert isinstance(main_commit, pygit2.Commit)
    sig = main_commit.author
    merge = repo.repo.create_commit(None, sig, sig, "merge", main_commit.tree_id, [main, side])
    repo.push({"master": (master, merge)})
    assert used == ["libgit2"]
    assert heads(bare)["refs/heads/master"] == str(merge)
    fsck(bare)

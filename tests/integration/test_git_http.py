"""Pushing over HTTPS-style smart HTTP with a token, against ``git http-backend``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.gitserver import GitHttpServer
from tests.integration.test_gitengine import OTHER_SHA, introduce, push
from tests.support import branch_log, make_config
from waveline.devstack.demo import seed_repo
from waveline.services.git_writer.apply import Applier
from waveline.shared.errors import GitFailure, PushRejected
from waveline.shared.gitengine.repo import ConfigRepo, Credentials

TOKEN = "ghp_test_token_0123456789abcdef"


@pytest.fixture
def server(tmp_path: Path) -> GitHttpServer:
    seed_repo(tmp_path / "srv" / "cfg-app.git")
    return GitHttpServer(tmp_path / "srv", TOKEN)


def writer(url: str, token: str, data: Path) -> Applier:
    config = make_config(url)
    # The test server speaks plain http on loopback; a token goes there only with the opt-in.
    repo_config = config.repos["cfg-app"].model_copy(update={"allow_insecure_http": True})
    repo = ConfigRepo("cfg-app", repo_config, data, Credentials(token=token))
    return Applier(repo, config)


def test_push_with_the_right_token_lands(server: GitHttpServer, tmp_path: Path) -> None:
    with server:
        w = writer(server.url("cfg-app.git"), TOKEN, tmp_path / "clone.git")
        w.refresh()
        result = push(w, introduce())
    assert result.outcome == "committed"
    assert str(branch_log(str(tmp_path / "srv" / "cfg-app.git"), "auto")[0].id) == result.sha


def test_a_wrong_token_is_refused_and_never_logged(
    server: GitHttpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with server:
        w = writer(server.url("cfg-app.git"), "wrong-token-xyz", tmp_path / "clone.git")
        with pytest.raises(GitFailure, match="refused") as info:
            w.refresh()
        assert not info.value.retriable
        assert server.refused >= 1
    assert "wrong-token-xyz" not in str(info.value)
    assert "wrong-token-xyz" not in caplog.text


def test_concurrent_push_is_caught_by_the_lease(server: GitHttpServer, tmp_path: Path) -> None:
    with server:
        url = server.url("cfg-app.git")
        ours = writer(url, TOKEN, tmp_path / "ours.git")
        theirs = writer(url, TOKEN, tmp_path / "theirs.git")
        ours.refresh()
        theirs.refresh()
        push(theirs, introduce(OTHER_SHA))
        with pytest.raises(PushRejected, match="lease"):
            push(ours, introduce())
        ours.refresh()
        assert push(ours, introduce()).outcome == "committed"
    assert len(branch_log(str(tmp_path / "srv" / "cfg-app.git"), "auto")) == 3


def test_a_reference_refused_by_the_server_is_a_failure(
    server: GitHttpServer, tmp_path: Path
) -> None:
    hook = tmp_path / "srv" / "cfg-app.git" / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    with server:
        w = writer(server.url("cfg-app.git"), TOKEN, tmp_path / "clone.git")
        w.refresh()
        with pytest.raises(PushRejected, match="rejected"):
            push(w, introduce())
    assert branch_log(str(tmp_path / "srv" / "cfg-app.git"), "auto") == []

"""A git remote that accepts connections and never answers: libgit2's timeouts end each
fetch, the writer waits it out (no dead letter) while another repository keeps committing,
and the command lands once the remote answers again; past the call deadline a repo process
is killed, the batch is retried once in a new process, then dead-lettered."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.gitserver import GitHttpServer
from tests.support import (
    branch_log,
    count_topic,
    introduce,
    make_config,
    produce_commands,
    read_topic,
    running,
    wait_for,
)
from waveline.devstack.demo import seed_repo
from waveline.shared.config import Secrets, Settings, WavelineConfig

TOKEN = "git-http-token-for-timeouts-0123"
TOKEN_ENV = "WAVELINE_TEST_HANG_GIT_TOKEN"


class Silent:
    """A TCP server on loopback that accepts and reads, and answers nothing until
    ``forward_to`` is set; from then on new connections are relayed to that port."""

    def __init__(self) -> None:
        self.forward_to: int | None = None
        self.accepted = 0
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            if self.forward_to is None:
                while await reader.read(65536):
                    pass  # swallow the request, never answer
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.forward_to)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Silent]:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    finally:
        dst.close()


def two_repos(remote: Path, hang_url: str) -> WavelineConfig:
    base = make_config(remote.as_uri()).model_dump(mode="json")
    base["repos"]["hang"] = {
        **base["repos"]["cfg-app"],
        "url": hang_url,
        "token_env": TOKEN_ENV,
        # A loopback test server: the token may cross plain http here.
        "allow_insecure_http": True,
    }
    base["pipelines"]["other"] = {**base["pipelines"]["app"], "repo": "hang"}
    return WavelineConfig.model_validate(base)


@pytest.mark.timeout(90)
async def test_a_silent_remote_times_out_is_waited_out_and_recovers(
    settings: Settings,
    secrets: Secrets,
    remote: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    seed_repo(tmp_path / "srv" / "cfg-app.git")
    fast = settings.model_copy(
        update={
            "git_connect_timeout_s": 2.0,
            "git_io_timeout_s": 2.0,
            "git_call_deadline_s": 20.0,
            "retry_backoff_s": 0.2,
            "retry_cap_s": 1.0,
        }
    )
    with GitHttpServer(tmp_path / "srv", TOKEN) as real:
        async with Silent().serving() as silent:
            config = two_repos(remote, f"http://127.0.0.1:{silent.port}/cfg-app.git")
            await produce_commands(
                fast, [introduce("hang", "other", 1), introduce("cfg-app", "app", 2)]
            )
            async with running(["git-writer"], fast, config, secrets) as rts:
                writer_rt = rts["git-writer"]
                await wait_for(
                    lambda: len(branch_log(str(remote), "auto")) == 2,
                    what="the other repository's commit",
                )
                await wait_for(lambda: bool(writer_rt.waits.current()), what="a wait for git")
                (waiting,) = writer_rt.waits.current().values()
                assert waiting["dependency"] == "git"
                await wait_for(lambda: silent.accepted >= 2, what="a retry after the timeout")
                assert writer_rt.not_live() == []
                # The remote answers again: the waiting command lands, nothing was lost.
                silent.forward_to = int(real.url("x").rsplit(":", 1)[1].split("/")[0])
                await wait_for(
                    lambda: len(branch_log(str(tmp_path / "srv" / "cfg-app.git"), "auto")) == 2,
                    timeout_s=30,
                    what="the waited command on the recovered remote",
                )
                await wait_for(lambda: not writer_rt.waits.current(), what="the wait to end")
    assert await count_topic(fast.kafka_bootstrap, f"{fast.topic_prefix}waveline.dlq") == 0


@pytest.mark.timeout(90)
async def test_past_the_deadline_the_repo_process_is_killed_retried_then_dead_lettered(
    settings: Settings,
    secrets: Secrets,
    remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    # libgit2 would wait 60 s; the deadline ends each call after 4 s (it counts from the
    # call, which for a new repo process includes its start: on a loaded machine, with the
    # suite's other worker beside it, 2 s was not always enough to reach the remote).
    slow = settings.model_copy(
        update={"git_io_timeout_s": 60.0, "git_connect_timeout_s": 60.0, "git_call_deadline_s": 4.0}
    )
    async with Silent().serving() as silent:
        config = two_repos(remote, f"http://127.0.0.1:{silent.port}/cfg-app.git")
        await produce_commands(
            slow, [introduce("hang", "other", 1), introduce("cfg-app", "app", 2)]
        )
        async with running(["git-writer"], slow, config, secrets) as rts:
            letters = await read_topic(
                slow.kafka_bootstrap,
                f"{slow.topic_prefix}waveline.dlq",
                until=lambda m: len(m) >= 1,
            )
            await wait_for(
                lambda: len(branch_log(str(remote), "auto")) == 2,
                what="the other repository's commit",
            )
            assert rts["git-writer"].not_live() == []
    (letter,) = letters
    assert json.loads(letter["payload"])["repo"] == "hang"
    assert "exited (code -9)" in letter["reason"]
    assert letter["retriable"] is False
    assert silent.accepted >= 2  # two processes, one after the other

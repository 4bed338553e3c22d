"""The CLI never sends its token to a host it was redirected to: a local server answering
``waveline status``/``approve`` with a redirect to another loopback host (and to another port
of the same host) sees the request, the other side never does."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from waveline.cli.main import main

TOKEN = "cli-operator-token-for-redirect-test"


@dataclass
class Recorder:
    """An HTTP server that records each request's path and Authorization header."""

    seen: list[tuple[str, str | None]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, request.headers.get("Authorization")))
        return web.json_response({"event_id": "x", "pipeline": "app", "repo": "r", "waves": []})


async def _serve(app: web.Application, host: str) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def elsewhere() -> AsyncIterator[tuple[Recorder, str, str]]:
    """The redirect's target: the same recorder on another loopback address and on another
    port of the first one."""
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    other_host, other_url = await _serve(app, "127.0.0.2")
    app2 = web.Application()
    app2.router.add_route("*", "/{tail:.*}", recorder.handle)
    other_port, other_port_url = await _serve(app2, "127.0.0.1")
    yield recorder, other_url, other_port_url
    await other_host.cleanup()
    await other_port.cleanup()


async def _redirector(target: str, code: int) -> tuple[web.AppRunner, str, Recorder]:
    recorder = Recorder()

    async def redirect(request: web.Request) -> web.Response:
        recorder.seen.append((request.path, request.headers.get("Authorization")))
        return web.Response(status=code, headers={"Location": target + request.path_qs})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner, url = await _serve(app, "127.0.0.1")
    return runner, url, recorder


@pytest.mark.parametrize("code", [301, 302, 307, 308])
@pytest.mark.parametrize("where", ["other host", "other port"])
@pytest.mark.parametrize(
    "argv", [["status", "app"], ["approve", "app", "production"]], ids=["status", "approve"]
)
async def test_the_token_does_not_follow_a_redirect(
    *,
    elsewhere: tuple[Recorder, str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
    where: str,
    argv: list[str],
) -> None:
    target_seen, other_host, other_port = elsewhere
    target = other_host if where == "other host" else other_port
    runner, url, first = await _redirector(target, code)
    monkeypatch.setenv("WAVELINE_URL", url)
    monkeypatch.setenv("WAVELINE_OPERATOR_TOKEN", TOKEN)
    try:
        async with asyncio.timeout(20):
            status = await asyncio.to_thread(main, argv)
    finally:
        await runner.cleanup()
    assert first.seen and first.seen[0][1] == f"Bearer {TOKEN}"
    assert target_seen.seen == []
    assert status == 1
    err = capsys.readouterr().err
    assert f"HTTP {code}" in err
    assert f"redirecting to {target}" in err
    assert "not following a redirect" in err
    assert TOKEN not in err


async def test_without_the_guard_the_token_would_follow(
    elsewhere: tuple[Recorder, str, str],
) -> None:
    """The attack is real: urllib's default opener carries Authorization to the new host."""
    target_seen, other_host, _ = elsewhere
    runner, url, _ = await _redirector(other_host, 307)
    request = urllib.request.Request(  # noqa: S310 (a loopback test server)
        url + "/v1/pipelines/app", headers={"Authorization": f"Bearer {TOKEN}"}
    )

    def fetch() -> None:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            resp.read()

    try:
        async with asyncio.timeout(20):
            await asyncio.to_thread(fetch)
    finally:
        await runner.cleanup()
    assert target_seen.seen == [("/v1/pipelines/app", f"Bearer {TOKEN}")]


async def test_an_answer_without_redirect_still_works(
    elsewhere: tuple[Recorder, str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target_seen, other_host, _ = elsewhere
    monkeypatch.setenv("WAVELINE_URL", other_host)
    monkeypatch.setenv("WAVELINE_OPERATOR_TOKEN", TOKEN)
    async with asyncio.timeout(20):
        status = await asyncio.to_thread(main, ["approve", "app", "production"])
    assert status == 0
    assert target_seen.seen == [("/v1/pipelines/app/waves/production/approve", f"Bearer {TOKEN}")]
    assert "approve accepted" in capsys.readouterr().out

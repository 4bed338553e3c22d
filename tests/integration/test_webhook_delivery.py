"""Outbound webhooks against real HTTP receivers on loopback: signatures the receiver can check,
headers and bearer applied, a real forward proxy honoured, retries and give-ups as specified,
the same bytes on every retry, and no secret in errors, reprs or logs.

No Kafka or Postgres: the receivers are aiohttp servers and the proxy an asyncio stream server,
all on 127.0.0.1 with ephemeral ports. Waits between retries go to a recording fake ``sleep``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from waveline.services.notifier.cloudevents import (
    CONTENT_TYPE,
    SLACK_CONTENT_TYPE,
    CloudEvent,
    promotion_requested,
    slack_payload,
)
from waveline.services.notifier.http import Attempt, deliver_once, parse_retry_after
from waveline.services.notifier.retry import RetryPolicy, deliver_with_retries
from waveline.services.notifier.signing import sign, verify
from waveline.services.notifier.target import WebhookTarget
from waveline.shared.errors import ConfigError, InvalidMessage

pytestmark = pytest.mark.timeout(30)

TOKEN = "whk-token-3f9a7c1e5b2d"
HEADER_SECRET = "hdr-credential-8e1f0a"
NO_JITTER = RetryPolicy(jitter=0)
WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0  # answer only after this long (or when the test ends)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A webhook receiver that records every request and answers from a script; the last
    reply repeats."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies or [Reply()]
        self.requests: list[Received] = []
        self.url = ""
        self.release = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        index = len(self.requests)
        self.requests.append(Received(request.path, dict(request.headers), await request.read()))
        reply = self.replies[min(index, len(self.replies) - 1)]
        if reply.hang_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), reply.hang_s)
        return web.Response(status=reply.status, headers=reply.headers)


@contextlib.asynccontextmanager
async def serve(*replies: Reply) -> AsyncIterator[Receiver]:
    receiver = Receiver(list(replies))
    async with TestServer(receiver.app, host="127.0.0.1") as server:
        receiver.url = str(server.make_url("/hook"))
        try:
            yield receiver
        finally:
            receiver.release.set()


@dataclass(frozen=True)
class Proxied:
    request_line: str
    headers: dict[str, str]


class ForwardProxy:
    """A minimal real HTTP/1.1 forward proxy: absolute-form requests only (no CONNECT),
    Basic proxy auth required, one request per connection."""

    def __init__(self, user: str, password: str) -> None:
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.seen: list[Proxied] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = [line for line in head.split("\r\n") if line]
            headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
            self.seen.append(Proxied(request_line, headers))
            method, target, _ = request_line.split(" ")
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if headers.get("proxy-authorization") != self.expected:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
                writer.write(b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                return
            url = urlsplit(target)
            assert url.scheme == "http" and url.hostname, "absolute-form expected"
            up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
            hop = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}
            forwarded = [
                f"{method} {url.path or '/'}{'?' + url.query if url.query else ''} HTTP/1.1"
            ]
            forwarded += [line for line in lines if line.split(":", 1)[0].lower() not in hop]
            forwarded.append("Connection: close")
            up_writer.write(("\r\n".join(forwarded) + "\r\n\r\n").encode("latin-1") + body)
            await up_writer.drain()
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await writer.drain()
            up_writer.close()
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def forward_proxy(user: str, password: str) -> AsyncIterator[tuple[ForwardProxy, int]]:
    proxy = ForwardProxy(user, password)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    try:
        yield proxy, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def event(event_id: str = "evt-0001") -> CloudEvent:
    return promotion_requested(
        event_id=event_id,
        pipeline="app",
        time=WHEN,
        subject="staging",
        data={"wave": "staging", "app_sha": "7d10434", "images": {"service1": "r/s1:7d10434"}},
    )


def target(url: str, **fields: object) -> WebhookTarget:
    return WebhookTarget.model_validate({"address": url, "token": TOKEN, **fields})


# --- signing, headers, proxy -------------------------------------------------------------


async def test_receiver_verifies_signature_over_exact_bytes(
    session: aiohttp.ClientSession,
) -> None:
    body = event().to_bytes()
    async with serve() as receiver:
        attempt = await deliver_once(session, target(receiver.url), body, CONTENT_TYPE)
    assert attempt == Attempt("delivered", 200, attempt.latency_ms)
    got = receiver.requests[0]
    assert got.body == body
    assert got.headers["Content-Type"] == CONTENT_TYPE
    signature = got.headers["X-Signature"]
    assert verify(got.body, TOKEN, signature)
    # What a Flux generic-hmac receiver computes: sha256=<hex HMAC of the raw body>.
    assert signature == "sha256=" + hmac.new(TOKEN.encode(), got.body, hashlib.sha256).hexdigest()
    assert not verify(got.body + b" ", TOKEN, signature)
    assert not verify(got.body, "another-token", signature)
    assert not verify(got.body, TOKEN, None)
    assert not verify(got.body, TOKEN, "md5=abcdef")
    sha512 = hmac.new(TOKEN.encode(), got.body, hashlib.sha512).hexdigest()
    assert verify(got.body, TOKEN, f"sha512={sha512}")
    document = json.loads(got.body)
    assert document["specversion"] == "1.0"
    assert document["id"] == "evt-0001"
    assert document["source"] == "waveline/app"
    assert document["time"] == "2024-05-01T12:00:00Z"


async def test_custom_headers_and_bearer_are_applied(session: aiohttp.ClientSession) -> None:
    async with serve() as receiver:
        secret = f"address: {receiver.url}\ntoken: {TOKEN}\nheaders: |\n"
        secret += f"  X-Team: platform\n  X-Api-Key: {HEADER_SECRET}\n"
        attempt = await deliver_once(
            session, WebhookTarget.from_secret(secret), slack_payload("hi"), SLACK_CONTENT_TYPE
        )
    assert attempt.delivered
    got = receiver.requests[0].headers
    assert got["Authorization"] == f"Bearer {TOKEN}"
    assert got["X-Team"] == "platform"
    assert got["X-Api-Key"] == HEADER_SECRET
    assert got["Content-Type"] == SLACK_CONTENT_TYPE
    assert receiver.requests[0].body == b'{"text":"hi"}'


async def test_explicit_authorization_header_wins_and_no_token_means_unsigned(
    session: aiohttp.ClientSession,
) -> None:
    async with serve() as receiver:
        flux_style = target(receiver.url, headers={"Authorization": HEADER_SECRET})
        await deliver_once(session, flux_style, b"{}", "application/json")
        await deliver_once(session, WebhookTarget(address=receiver.url), b"{}", "application/json")
    signed, unsigned = (r.headers for r in receiver.requests)
    assert signed["Authorization"] == HEADER_SECRET
    assert verify(b"{}", TOKEN, signed["X-Signature"])
    assert "Authorization" not in unsigned and "X-Signature" not in unsigned


async def test_proxy_is_honoured(session: aiohttp.ClientSession) -> None:
    body = event().to_bytes()
    async with serve() as receiver, forward_proxy("relay", "p@ss:word") as (proxy, port):
        via = target(receiver.url, proxy=f"http://relay:p%40ss%3Aword@127.0.0.1:{port}")
        attempt = await deliver_once(session, via, body, CONTENT_TYPE)
        assert "p%40ss" not in repr(via) and "relay:" not in str(via)
    assert attempt.delivered, attempt.error
    assert [p.request_line for p in proxy.seen] == [f"POST {receiver.url} HTTP/1.1"]
    assert proxy.seen[0].headers["x-signature"] == sign(body, TOKEN)
    got = receiver.requests[0]
    assert got.body == body and verify(got.body, TOKEN, got.headers["X-Signature"])
    assert "Proxy-Authorization" not in got.headers


async def test_wrong_proxy_credentials_give_up(session: aiohttp.ClientSession) -> None:
    async with serve() as receiver, forward_proxy("relay", "right") as (proxy, port):
        via = target(receiver.url, proxy=f"http://relay:wrong@127.0.0.1:{port}")
        attempt = await deliver_once(session, via, b"{}", CONTENT_TYPE)
    assert (attempt.outcome, attempt.status) == ("give_up", 407)
    assert len(proxy.seen) == 1 and receiver.requests == []


# --- retries -----------------------------------------------------------------------------


async def test_5xx_is_retried_with_growing_delays_and_identical_bytes(
    session: aiohttp.ClientSession,
) -> None:
    body = event("evt-stable").to_bytes()
    sleep, seen = FakeSleep(), list[Attempt]()
    async with serve(Reply(500), Reply(502), Reply(503), Reply(200)) as receiver:
        attempts = await deliver_with_retries(
            session,
            target(receiver.url),
            body,
            CONTENT_TYPE,
            NO_JITTER,
            sleep=sleep,
            on_attempt=seen.append,
        )
    assert [(a.outcome, a.status) for a in attempts] == [
        ("retry", 500),
        ("retry", 502),
        ("retry", 503),
        ("delivered", 200),
    ]
    assert seen == attempts
    assert sleep.delays == [0.5, 1.0, 2.0]
    assert attempts[0].error == "HTTP 500 Internal Server Error"
    assert {r.body for r in receiver.requests} == {body}
    assert {json.loads(r.body)["id"] for r in receiver.requests} == {"evt-stable"}
    assert len({r.headers["X-Signature"] for r in receiver.requests}) == 1


async def test_timeouts_are_retried(session: aiohttp.ClientSession) -> None:
    sleep = FakeSleep()
    async with serve(Reply(hang_s=10), Reply(hang_s=10), Reply(200)) as receiver:
        attempts = await deliver_with_retries(
            session,
            target(receiver.url, timeout_s=0.2),
            b"{}",
            CONTENT_TYPE,
            NO_JITTER,
            sleep=sleep,
        )
    assert [a.outcome for a in attempts] == ["retry", "retry", "delivered"]
    assert attempts[0].status is None and attempts[0].error == "timed out after 0.2s"
    assert 150 <= attempts[0].latency_ms < 5000
    assert sleep.delays == [0.5, 1.0]
    assert len(receiver.requests) == 3


async def test_gives_up_after_max_attempts_and_returns_them_all(
    session: aiohttp.ClientSession,
) -> None:
    sleep = FakeSleep()
    policy = RetryPolicy(max_attempts=4, jitter=0)
    async with serve(Reply(500)) as receiver:
        attempts = await deliver_with_retries(
            session, target(receiver.url), b"{}", CONTENT_TYPE, policy, sleep=sleep
        )
    assert [a.outcome for a in attempts] == ["retry"] * 4
    assert sleep.delays == [0.5, 1.0, 2.0]  # no wait after the last attempt
    assert len(receiver.requests) == 4


async def test_connection_errors_are_retried(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = FakeSleep()
    closed = target(f"http://127.0.0.1:{port}/hooks/{HEADER_SECRET}")
    attempts = await deliver_with_retries(
        session, closed, b"{}", CONTENT_TYPE, RetryPolicy(max_attempts=2), sleep=sleep
    )
    assert [(a.outcome, a.status) for a in attempts] == [("retry", None)] * 2
    assert attempts[0].error is not None and "127.0.0.1" in attempts[0].error
    assert HEADER_SECRET not in attempts[0].error and TOKEN not in attempts[0].error
    assert len(sleep.delays) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422, 301, 302, 307])
async def test_other_4xx_and_3xx_are_not_retried(
    session: aiohttp.ClientSession, status: int
) -> None:
    sleep = FakeSleep()
    async with serve(Reply(status, {"Location": "/hook"}), Reply(200)) as receiver:
        attempts = await deliver_with_retries(
            session, target(receiver.url), b"{}", CONTENT_TYPE, NO_JITTER, sleep=sleep
        )
    assert [(a.outcome, a.status) for a in attempts] == [("give_up", status)]
    assert sleep.delays == [] and len(receiver.requests) == 1  # redirect not followed


@pytest.mark.parametrize("status", [408, 429])
async def test_408_and_429_are_retried(session: aiohttp.ClientSession, status: int) -> None:
    sleep = FakeSleep()
    async with serve(Reply(status), Reply(200)) as receiver:
        attempts = await deliver_with_retries(
            session, target(receiver.url), b"{}", CONTENT_TYPE, NO_JITTER, sleep=sleep
        )
    assert [(a.outcome, a.status) for a in attempts] == [("retry", status), ("delivered", 200)]
    assert sleep.delays == [0.5] and len(receiver.requests) == 2


@pytest.mark.parametrize(
    ("status", "header", "retry_after", "wait"),
    [
        (429, "7", 7.0, 7.0),
        (503, " 2 ", 2.0, 2.0),
        (429, "0", 0.0, 0.5),
        (429, "100000", 100000.0, 300.0),  # capped by retry_after_cap_s
        (429, "Wed, 21 Oct 2015 07:28:00 GMT", None, 0.5),  # date form: not used
        (500, "9", None, 0.5),  # only 429 and 503 carry a usable Retry-After
    ],
)
async def test_retry_after_is_honoured(
    session: aiohttp.ClientSession,
    status: int,
    header: str,
    retry_after: float | None,
    wait: float,
) -> None:
    sleep = FakeSleep()
    async with serve(Reply(status, {"Retry-After": header}), Reply(200)) as receiver:
        attempts = await deliver_with_retries(
            session, target(receiver.url), b"{}", CONTENT_TYPE, NO_JITTER, sleep=sleep
        )
    assert attempts[0].retry_after_s == retry_after
    assert sleep.delays == [wait]
    assert attempts[-1].delivered


# --- secrets stay secret -----------------------------------------------------------------


async def test_token_never_appears_in_errors_reprs_or_logs(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    async with serve(Reply(hang_s=10), Reply(500)) as receiver:
        hooked = target(
            receiver.url + f"/{HEADER_SECRET}",
            headers={"X-Api-Key": HEADER_SECRET},
            timeout_s=0.2,
        )
        attempts = [await deliver_once(session, hooked, b"{}", CONTENT_TYPE) for _ in "ab"]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("waveline.")]
    assert ours  # the attempts were logged
    text = " ".join([repr(hooked), str(hooked), *(repr(a) for a in attempts), *ours])
    assert TOKEN not in text and HEADER_SECRET not in text
    assert "X-Api-Key" in repr(hooked) and "127.0.0.1" in repr(hooked)
    assert [a.outcome for a in attempts] == ["retry", "retry"]


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("", "no address"),
        (f"address: ~\ntoken: {TOKEN}", "no address"),
        (f"- {TOKEN}", "mapping"),
        (f"token: {TOKEN}", "no address"),
        (f"address: ftp://h/x\ntoken: {TOKEN}", "http:// or https://"),
        (f"address: http://u:{TOKEN}@h/x", "credentials"),
        (f"address: http://h/x\nproxy: socks5://h:1080\ntoken: {TOKEN}", "proxy"),
        (f"address: http://h/x\ntoken: {TOKEN}\ntokn: {TOKEN}", "unknown keys ['tokn']"),
        (f"address: http://h/x\ntoken: [{TOKEN}]", "token must be a string"),
        (f"address: http://h/x\ntoken: {TOKEN}\n  bad: : x", "not valid YAML at line"),
        (f'address: http://h/x\ntoken: "{TOKEN}\\n{TOKEN}"', "control characters"),
        (f"address: http://h/x\nheaders: 'X-A: [{TOKEN}'", "headers is not valid YAML"),
        (f"address: http://h/x\nheaders: '{TOKEN}'", "mapping of header name"),
        (f"address: http://h/x\nheaders: {{X-A: [{TOKEN}]}}", "'X-A' must have a string"),
        (f"address: http://h/x\nheaders: {{X-Signature: {TOKEN}}}", "set by Waveline"),
        (f"address: http://h/x\nheaders: {{'Bad Name': {TOKEN}}}", "valid HTTP field name"),
        (f'address: http://h/x\nheaders: {{X-A: "a\\r\\nX-B: {TOKEN}"}}', "control characters"),
        (f"address: http://h/x\nheaders: {{X-A: {TOKEN}, x-a: b}}", "given twice"),
    ],
)
def test_from_secret_errors_name_the_problem_without_values(secret: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookTarget.from_secret(secret)
    assert reason in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert caught.value.__cause__ is None and not caught.value.retriable


def test_from_secret_reads_flux_shaped_secrets() -> None:
    parsed = WebhookTarget.from_secret(
        "address: https://hooks.example.com/services/T0/B0/x\n"
        "proxy: ''\n"
        "token: 0123\n"
        "headers: |\n  Authorization: my-api-token\n  X-Forwarded-Proto: https\n",
        timeout_s=3,
    )
    assert parsed.token is not None and parsed.token.get_secret_value() == "0123"
    assert parsed.proxy is None and parsed.timeout_s == 3
    assert parsed.headers == {"Authorization": "my-api-token", "X-Forwarded-Proto": "https"}
    nested = WebhookTarget.from_secret("address: http://h/x\nheaders:\n  X-A: '1'\n")
    assert nested.headers == {"X-A": "1"} and nested.token is None
    nulls = WebhookTarget.from_secret("address: http://h/x\nproxy: null\ntoken: ~\nheaders:\n")
    assert (nulls.proxy, nulls.token, nulls.headers) == (None, None, {})
    # Defaults from the config file: the secret's address and headers win.
    merged = WebhookTarget.from_secret(
        f"token: {TOKEN}\nheaders: 'x-team: ops'",
        address="https://config.example/hook",
        headers={"X-Team": "default", "X-Env": "prod"},
    )
    assert merged.address == "https://config.example/hook"
    assert merged.headers == {"X-Env": "prod", "x-team": "ops"}
    assert WebhookTarget.from_secret("address: http://h/x", address="http://z").address == (
        "http://h/x"
    )
    with pytest.raises(ValidationError) as caught:
        WebhookTarget.model_validate({"address": "http://h", "headers": {"X-A": f"{TOKEN}\n"}})
    assert TOKEN not in str(caught.value)


# --- payloads and policy (no network) ----------------------------------------------------


def test_cloud_event_bytes_are_deterministic() -> None:
    a = CloudEvent(
        "e1", "waveline/app", "io.waveline.promotion.requested", WHEN, {"b": 1, "a": [1, "é"]}
    )
    b = CloudEvent(
        "e1",
        "waveline/app",
        "io.waveline.promotion.requested",
        WHEN.astimezone(timezone(timedelta(hours=2))),
        {"a": [1, "é"], "b": 1},
    )
    assert a.to_bytes() == b.to_bytes()
    assert a.to_bytes().startswith(b'{"data":{"a":[1,"\xc3\xa9"],"b":1},"datacontenttype"')
    assert json.loads(event().to_bytes())["subject"] == "staging"
    assert "subject" not in a.to_dict()
    assert json.loads(event().to_bytes())["pipeline"] == "app"
    with pytest.raises(InvalidMessage):
        CloudEvent("e1", "s", "t", datetime(2024, 5, 1), {})  # naive: refused
    with pytest.raises(InvalidMessage):
        CloudEvent("", "s", "t", WHEN, {})
    with pytest.raises(InvalidMessage):
        CloudEvent("e1", "s", "t", WHEN, {"x": float("nan")}).to_bytes()
    later = CloudEvent("e1", "s", "t", WHEN.replace(microsecond=5), {})
    assert later.to_dict()["time"] == "2024-05-01T12:00:00.000005Z"


def test_retry_policy_delay_bounds() -> None:
    assert [NO_JITTER.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    policy = RetryPolicy(jitter=0.5)
    full = RetryPolicy(jitter=1)
    rng = random.Random(7)
    for n in [*range(1, 40), 5000]:
        nominal = min(0.5 * 2.0 ** min(n - 1, 100), 30.0)
        for _ in range(50):
            assert nominal * 0.5 <= policy.delay(n, rng) <= nominal <= 30
            assert 0 <= full.delay(n, rng) <= nominal
            assert 12 <= policy.delay(n, rng, retry_after_s=12) <= 300
            assert policy.delay(n, rng, retry_after_s=10**6) == 300
    assert RetryPolicy().delay(3, random.Random(1)) == RetryPolicy().delay(3, random.Random(1))
    with pytest.raises(ValueError, match="counts from 1"):
        policy.delay(0)


def test_retry_policy_budget_and_validation() -> None:
    policy = RetryPolicy(max_attempts=3, jitter=0)
    assert not policy.exhausted(2) and policy.exhausted(3)
    retry, done = Attempt("retry", 500, 1.0), Attempt("delivered", 200, 1.0)
    assert policy.next_delay(retry, 1) == 0.5 and policy.next_delay(retry, 2) == 1.0
    assert policy.next_delay(retry, 3) is None
    assert policy.next_delay(done, 1) is None
    assert policy.next_delay(Attempt("give_up", 404, 1.0), 1) is None
    assert policy.next_delay(Attempt("retry", 429, 1.0, None, 4.0), 1) == 4.0
    for bad in [{"jitter": 1.5}, {"max_attempts": 0}, {"base_s": 5, "cap_s": 1}, {"factor": 0.5}]:
        with pytest.raises(ValidationError):
            RetryPolicy.model_validate(bad)
    assert parse_retry_after("-1") is None and parse_retry_after("\u0661") is None

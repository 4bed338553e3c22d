"""The HTTP front door under abuse, against ingest as ``waveline run ingest`` serves it
(``IngestServer``: the front door, aiohttp, real Kafka and PostgreSQL): slow clients are cut
off, connections are bounded, compressed bodies are refused without being inflated, deep
JSON is 400 and a field of the wrong type is 422 on every endpoint."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import resource
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import ARGOCD_TOKEN, CI_TOKEN, GITHUB_SECRET, OPERATOR_TOKEN
from tests.support import APP_SHA, count_topic, image_set, wait_for
from waveline.services.ingest.server import IngestServer
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.runtime import bootstrap

HEADER_S = 2.5  # > 1 s: the slow-loris client below sends a header line every second
BODY_S = 2.0
IDLE_S = 5.0  # > HEADER_S: an idle keep-alive connection is not held to the head deadline
MAX_CONNECTIONS = 12
CI = {"Authorization": f"Bearer {CI_TOKEN}"}
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
ARGO = {"Authorization": f"Bearer {ARGOCD_TOKEN}"}
SHA = "55576ca70ab6acdfaab7e5db445eaf79e41e6332"


@pytest.fixture
async def ingest(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> AsyncIterator[IngestServer]:
    tight = settings.model_copy(
        update={
            "http_header_timeout_s": HEADER_S,
            "http_body_timeout_s": BODY_S,
            "http_max_connections": MAX_CONNECTIONS,
            "http_idle_timeout_s": IDLE_S,
        }
    )
    runtime = bootstrap("ingest", tight, config, secrets)
    await runtime.start()
    server = IngestServer(runtime)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        await runtime.stop()


async def connect(server: IngestServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def until_closed(reader: asyncio.StreamReader, within_s: float) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not
    within ``within_s``)."""
    received = b""
    try:
        async with asyncio.timeout(within_s):
            while chunk := await reader.read(65536):
                received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError as exc:
        raise AssertionError(f"still open after {within_s} s; got {received!r}") from exc
    return received


async def dribble(writer: asyncio.StreamWriter, pieces: list[bytes], every_s: float) -> None:
    """Send one piece every ``every_s`` until done or the server hangs up."""
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(every_s)
    except ConnectionError:
        pass


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def scrape(server: IngestServer) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/metrics") as resp,
    ):
        return await resp.text()


async def test_slow_loris_and_silent_connections_are_cut_at_the_header_deadline(
    ingest: IngestServer,
) -> None:
    loris_reader, loris = await connect(ingest)
    silent_reader, silent = await connect(ingest)
    started = time.monotonic()
    lines = [b"POST /v1/images HTTP/1.1\r\n", b"Host: ingest\r\n"]
    lines += [f"X-Padding-{i}: {'a' * 20}\r\n".encode() for i in range(30)]
    sending = asyncio.create_task(dribble(loris, lines, every_s=1.0))
    got, nothing = await asyncio.gather(
        until_closed(loris_reader, HEADER_S + 3), until_closed(silent_reader, HEADER_S + 3)
    )
    elapsed = time.monotonic() - started
    await sending
    assert got == b"" and nothing == b""
    # Cut at the deadline, while the client was still sending a line a second (30 s' worth).
    assert HEADER_S - 0.5 <= elapsed <= HEADER_S + 2, elapsed
    loris.close()
    silent.close()
    metrics = await scrape(ingest)  # and the front door still serves everyone else
    assert metric(metrics, "waveline_ingest_head_timeouts_total") == 2


async def test_slow_body_gets_408_and_the_connection_closes(
    ingest: IngestServer, settings: Settings
) -> None:
    reader, writer = await connect(ingest)
    body = json.dumps(image_set()).encode()
    head = (
        "POST /v1/images HTTP/1.1\r\nHost: ingest\r\n"
        f"Authorization: Bearer {CI_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer.write(head)
    started = time.monotonic()
    sending = asyncio.create_task(dribble(writer, [bytes([b]) for b in body], every_s=0.5))
    answer = await until_closed(reader, BODY_S + HEADER_S + 3)
    elapsed = time.monotonic() - started
    await sending
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"error": "timeout"' in answer
    assert elapsed <= BODY_S + HEADER_S + 1, elapsed
    topic = f"{settings.topic_prefix}waveline.images"
    assert await count_topic(settings.kafka_bootstrap, topic) == 0


async def test_an_unread_slow_body_ends_its_connection(ingest: IngestServer) -> None:
    """A request refused before its body is read (no token) does not leave the client
    trickling the rest of the body for as long as it likes."""
    reader, writer = await connect(ingest)
    writer.write(b"POST /v1/images HTTP/1.1\r\nHost: ingest\r\nContent-Length: 5000\r\n\r\n{")
    started = time.monotonic()
    sending = asyncio.create_task(dribble(writer, [b" "] * 60, every_s=0.25))
    answer = await until_closed(reader, HEADER_S + 3)
    elapsed = time.monotonic() - started
    await sending
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401 "), answer
    assert b"Connection: close" in answer
    assert elapsed <= HEADER_S + 1, elapsed


async def test_an_idle_keep_alive_connection_closes_after_the_idle_timeout(
    ingest: IngestServer,
) -> None:
    reader, writer = await connect(ingest)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: ingest\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 "), head
    started = time.monotonic()
    rest = await until_closed(reader, IDLE_S + 3)
    elapsed = time.monotonic() - started
    writer.close()
    assert rest.endswith(b'{"status": "ok"}'), rest
    assert IDLE_S - 0.5 <= elapsed <= IDLE_S + 2, elapsed


async def test_connections_past_the_bound_are_refused_and_a_client_in_still_works(
    ingest: IngestServer, caplog: pytest.LogCaptureFixture
) -> None:
    door = ingest.front_door
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as client:
        async with client.get(f"{ingest.url}/healthz") as resp:
            assert resp.status == 200
        await wait_for(lambda: door.open_connections == 1, timeout_s=5, what="client in")
        idle = [await connect(ingest) for _ in range(MAX_CONNECTIONS - 1)]
        await wait_for(
            lambda: door.open_connections == MAX_CONNECTIONS, timeout_s=5, what="bound reached"
        )
        extra = [await connect(ingest) for _ in range(3 * MAX_CONNECTIONS)]
        for reader, _ in extra:
            assert await until_closed(reader, 2.0) == b""  # closed at once, unanswered
        assert door.open_connections == MAX_CONNECTIONS
        # The client's keep-alive connection is in: it is served as if nothing happened.
        async with client.get(f"{ingest.url}/healthz") as resp:
            assert resp.status == 200
        # The idle ones never sent a head: cut at the deadline, which makes room again.
        for reader, _ in idle:
            assert await until_closed(reader, HEADER_S + 2) == b""
    await wait_for(lambda: door.open_connections == 0, timeout_s=5, what="all closed")
    metrics = await scrape(ingest)
    assert metric(metrics, "waveline_ingest_connections_refused_total") == 3 * MAX_CONNECTIONS
    # One line when the bound is reached and one when it is left, not one per refusal.
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("frontdoor")]
    assert len(lines) == 2, lines
    assert "refusing new ones" in lines[0] and "accepting new ones again" in lines[1]
    for _, writer in idle + extra:
        writer.close()


def github_headers(body: bytes, event: str = "status") -> dict[str, str]:
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-Hub-Signature-256": f"sha256={digest}"}


async def test_compressed_bodies_are_refused_with_415(
    ingest: IngestServer, settings: Settings
) -> None:
    plain = json.dumps(image_set()).encode()
    async with aiohttp.ClientSession(base_url=ingest.url) as client:
        for coding, data in [
            ("gzip", gzip.compress(plain)),
            ("deflate", zlib.compress(plain)),
            ("br", b"\x0b\x02\x80hello\x03"),
            ("gzip, identity", gzip.compress(plain)),
        ]:
            headers = {**CI, "Content-Encoding": coding, "Content-Type": "application/json"}
            async with client.post("/v1/images", data=data, headers=headers) as resp:
                assert resp.status == 415, (coding, await resp.text())
                assert (await resp.json())["error"] == "unsupported_encoding"
            signed = {**github_headers(data), "Content-Encoding": coding}
            async with client.post("/v1/webhooks/github", data=data, headers=signed) as resp:
                assert resp.status == 415, (coding, await resp.text())
        for coding in ("identity", ""):  # no coding at all is fine
            headers = {**CI, "Content-Encoding": coding, "Content-Type": "application/json"}
            async with client.post("/v1/images", data=plain, headers=headers) as resp:
                assert resp.status == 202, await resp.text()
    topic = f"{settings.topic_prefix}waveline.images"
    assert await count_topic(settings.kafka_bootstrap, topic) == 2


async def test_a_zip_bomb_is_never_inflated(ingest: IngestServer) -> None:
    """20 deflate bombs of ~200 KB that would each inflate to 200 MiB (4 GiB in all):
    answered at once, with the process's CPU time and peak memory (the server runs in this
    process) hardly moving. Inflating them would take seconds of CPU."""
    squeezer = zlib.compressobj(9)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(squeezer.compress(zeros) for _ in range(200)) + squeezer.flush()
    assert len(bomb) < 256 * 1024
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    cpu_before, wall_before = time.process_time(), time.monotonic()
    async with aiohttp.ClientSession(base_url=ingest.url) as client:
        for _ in range(20):
            headers = {**CI, "Content-Encoding": "deflate", "Content-Type": "application/json"}
            async with client.post("/v1/images", data=bomb, headers=headers) as resp:
                assert resp.status == 415
    cpu = time.process_time() - cpu_before
    wall = time.monotonic() - wall_before
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert cpu < 1.0, f"{cpu:.2f} s of CPU: something inflated the body"
    assert wall < 5.0, wall
    assert grown_mib < 32, f"peak memory grew {grown_mib:.0f} MiB"


def nested(levels: int, key: str) -> bytes:
    """A JSON object whose ``key`` holds arrays, the deepest ``levels`` deep."""
    return f'{{"{key}": '.encode() + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


RESULT = f"/v1/pipelines/app/waves/staging/promotions/{uuid.uuid4()}/result"

# Every endpoint that reads a JSON body, with what it takes to get to the body and a field
# it reads (approve reads none: any object will do).
JSON_ENDPOINTS: list[tuple[str, dict[str, str], str | None]] = [
    ("/v1/images", CI, "pipeline"),
    (f"/v1/pipelines/app/images?app_sha={APP_SHA}", CI, "svc"),
    ("/v1/webhooks/github", {}, "repository"),  # signed per body
    ("/v1/webhooks/argocd", ARGO, "app"),
    ("/v1/pipelines/app/waves/staging/rollback", OPERATOR, "to"),
    ("/v1/pipelines/app/waves/staging/approve", OPERATOR, None),
    (RESULT, OPERATOR, "status"),
]


async def post(
    client: aiohttp.ClientSession, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, Any]]:
    if path == "/v1/webhooks/github":
        headers = github_headers(body)
    headers = {**headers, "Content-Type": "application/json"}
    async with client.post(path, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def nothing_published(settings: Settings) -> None:
    for topic in ("images", "checks", "deploys", "operator", "pulls"):
        name = f"{settings.topic_prefix}waveline.{topic}"
        assert await count_topic(settings.kafka_bootstrap, name) == 0, name


async def test_deep_json_is_400_on_every_json_endpoint(
    ingest: IngestServer, settings: Settings
) -> None:
    async with aiohttp.ClientSession(base_url=ingest.url) as client:
        for path, headers, key in JSON_ENDPOINTS:
            for levels in (33, 100_000):  # just past the limit; far past Python's recursion
                status, doc = await post(client, path, headers, nested(levels, key or "x"))
                assert (status, doc["error"]) == (400, "too_deep"), (path, levels, doc)
            if key is None:
                continue
            # At the limit the document is parsed, and refused for what it says.
            status, doc = await post(client, path, headers, nested(32, key))
            assert (status, doc["error"]) == (422, "invalid_field"), (path, doc)
    await nothing_published(settings)


GITHUB_STATUS: dict[str, Any] = {
    "sha": SHA,
    "state": "success",
    "context": "ci/validate",
    "branches": [{"name": "auto"}],
    "repository": {"full_name": "remote/cfg-app"},
}

WRONG_TYPES: list[tuple[str, dict[str, str], dict[str, Any], str]] = [
    (RESULT, OPERATOR, {"status": []}, "status"),
    (RESULT, OPERATOR, {"status": {"succeeded": True}}, "status"),
    (RESULT, OPERATOR, {"status": "succeeded", "detail": 5}, "detail"),
    (RESULT, OPERATOR, {"status": "succeeded", "detail": "\ud800"}, "detail"),  # unencodable
    ("/v1/images", CI, {**image_set(), "app_sha": 5}, "app_sha"),
    ("/v1/images", CI, {**image_set(), "pipeline": ["app"]}, "pipeline"),
    ("/v1/images", CI, {**image_set(), "images": []}, "images"),
    (f"/v1/pipelines/app/images?app_sha={APP_SHA}", CI, {"svc": []}, "images.svc"),
    ("/v1/webhooks/github", {}, {**GITHUB_STATUS, "repository": []}, "repository"),
    ("/v1/webhooks/github", {}, {**GITHUB_STATUS, "sha": 5}, "sha"),
    ("/v1/webhooks/github", {}, {**GITHUB_STATUS, "branches": 7}, "branches"),
    ("/v1/webhooks/argocd", ARGO, {"app": "staging-us", "revision": 7}, "revision"),
    ("/v1/webhooks/argocd", ARGO, {"app": ["staging-us"], "revision": SHA}, "app"),
    ("/v1/pipelines/app/waves/staging/rollback", OPERATOR, {"to": 5}, "to"),
    ("/v1/pipelines/app/waves/staging/rollback", OPERATOR, {"to": ["previous"]}, "to"),
]


async def test_a_field_of_the_wrong_type_is_422_on_every_endpoint(
    ingest: IngestServer, settings: Settings
) -> None:
    async with aiohttp.ClientSession(base_url=ingest.url) as client:
        for path, headers, doc, field in WRONG_TYPES:
            status, answer = await post(client, path, headers, json.dumps(doc).encode())
            assert (status, answer["error"]) == (422, "invalid_field"), (path, doc, answer)
            fields = [d["field"] for d in answer["detail"]]
            assert any(f == field or f.startswith(f"{field}.") for f in fields), (field, fields)
    await nothing_published(settings)


NOT_JSON_OBJECTS = [
    (b'{"status": NaN}', "NaN"),
    (b'{"status": ' + b"1" * 5000 + b"}", "digits"),
    (b'{"status": "\xff"}', "UTF-8"),
    (b'["succeeded"]', "array"),
]


async def test_bodies_that_are_no_json_object_are_400(ingest: IngestServer) -> None:
    async with aiohttp.ClientSession(base_url=ingest.url) as client:
        for body, why in NOT_JSON_OBJECTS:
            status, doc = await post(client, RESULT, OPERATOR, body)
            assert (status, doc["error"]) == (400, "malformed"), (body[:40], doc)
            assert why in doc["detail"], (why, doc)

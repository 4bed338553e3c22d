"""The notifier on real Kafka and Postgres, delivering to real HTTP receivers on loopback.

The receivers are aiohttp servers on an ephemeral 127.0.0.1 port that record every request
(headers, exact body bytes, arrival time) and answer from per-test scripts: a status code
(with headers), or ``"hang"`` (no answer until the test ends, so the notifier's attempt times
out). Input events are produced straight to the topics; what the notifier did is read back
from the receivers, from its follow-up events on Kafka and from its tables.

- ``/hook``: the production wave's webhook promotion strategy (secret with address, token
  and a custom header);
- ``/events``: a ``cloudevents`` notification (secret with address and token: signed);
- ``/chat``: a ``slack`` notification (plain ``url``, unsigned).

One notifier serves the whole module (its six consumers join one group one after another,
which takes about 15 s): every test uses its own promotion ids and texts, scripts the
receivers for those alone and looks only at them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal, TypeVar, cast

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaProducer
from multidict import CIMultiDict
from pydantic import SecretStr

from tests.infra import Infra
from tests.support import (
    APP_SHA,
    image_set,
    isolated_settings,
    make_config,
    read_topic,
    running,
    wait_for,
)
from waveline.services.notifier.retry import RetryPolicy
from waveline.services.notifier.service import policy_of
from waveline.services.notifier.signing import sign, verify
from waveline.services.notifier.worker import IDLE_S
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.models.base import Message, utcnow
from waveline.shared.models.dlq import DeadLetter
from waveline.shared.models.git import GitEvent
from waveline.shared.models.images import ImageSetAnnounced
from waveline.shared.models.promotions import PromotionEvent, PromotionStatus
from waveline.shared.models.waves import WaveStatus
from waveline.shared.runtime import Runtime
from waveline.shared.topics import Topics

pytestmark = pytest.mark.timeout(60)

HOOK_ENV = "WAVELINE_TEST_PROMOTION_HOOK"
EVENTS_ENV = "WAVELINE_TEST_EVENTS_HOOK"
HOOK_TOKEN = "hook-token-7f3c9a1d5e"
EVENTS_TOKEN = "events-token-2b8e6f04"
CFG_SHA = "c0ffee" + "0" * 34
CLOUDEVENTS_JSON = "application/cloudevents+json"
# The module's retry rules: 3 attempts, waits of 0.2-0.4 s then 0.4-0.8 s, 1 s per attempt.
DELIVERY = {"max_attempts": 3, "backoff": 0.4, "cap": 2, "timeout": 1}
T = TypeVar("T")

# -- receivers ---------------------------------------------------------------------------

# A status, a status with response headers, or no answer until the receiver is released.
Reply = int | tuple[int, Mapping[str, str]] | Literal["hang"]


@dataclass(frozen=True)
class Hit:
    """One request as the receiver saw it."""

    path: str
    headers: CIMultiDict[str]
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def json(self) -> dict[str, Any]:
        doc = json.loads(self.body)
        assert isinstance(doc, dict)
        return doc

    @property
    def id(self) -> str | None:
        """The CloudEvent id (``None`` for a Slack body)."""
        value = self.json.get("id")
        return value if isinstance(value, str) else None


@dataclass
class Receiver:
    """Records every request. A request whose body contains a scripted text gets that
    script's replies in turn (the last one repeats); any other gets 200."""

    scripts: list[tuple[bytes, list[Reply]]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def script(self, text: str | uuid.UUID, *replies: Reply) -> None:
        self.scripts.append((str(text).encode(), list(replies)))

    def _reply(self, body: bytes) -> Reply:
        for text, replies in self.scripts:
            if text in body:
                return replies.pop(0) if len(replies) > 1 else replies[0]
        return 200

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.hits.append(Hit(request.path, CIMultiDict(request.headers), body, time.monotonic()))
        reply = self._reply(body)
        if isinstance(reply, str):  # "hang"
            await self.release.wait()  # the test's end; the notifier gave up long before
            return web.Response(status=200)
        status, headers = reply if isinstance(reply, tuple) else (reply, {})
        return web.Response(status=status, headers=headers)

    def of(self, event_id: str | uuid.UUID) -> list[Hit]:
        """The requests carrying CloudEvent ``event_id``."""
        return [h for h in self.hits if h.id == str(event_id)]

    def containing(self, text: str | uuid.UUID) -> list[Hit]:
        return [h for h in self.hits if str(text).encode() in h.body]


@dataclass
class Receivers:
    hook: Receiver = field(default_factory=Receiver)
    events: Receiver = field(default_factory=Receiver)
    chat: Receiver = field(default_factory=Receiver)
    base: str = ""


@contextlib.asynccontextmanager
async def serve_receivers() -> AsyncIterator[Receivers]:
    found = Receivers()
    app = web.Application()
    app.router.add_post("/hook", found.hook.handle)
    app.router.add_post("/events", found.events.handle)
    app.router.add_post("/chat", found.chat.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        found.base = f"http://127.0.0.1:{server.port}"
        try:
            yield found
        finally:
            for receiver in (found.hook, found.events, found.chat):
                receiver.release.set()


# -- config, events, Kafka and Postgres helpers -------------------------------------------


def notifier_config(repo_url: str, base: str, **delivery: Any) -> WavelineConfig:
    """The test config with production promoted by webhook, two notifications and fast
    retries (``delivery`` overrides ``DELIVERY``)."""
    doc = make_config(repo_url).model_dump(mode="json")
    production = doc["pipelines"]["app"]["waves"][2]
    assert production["name"] == "production"
    production["strategy"] = {"kind": "webhook", "secret_env": HOOK_ENV}
    doc["notifications"] = {
        "events": {"format": "cloudevents", "secret_env": EVENTS_ENV},
        "chat": {"format": "slack", "url": f"{base}/chat"},
    }
    # Numbers are seconds: parse_duration's string forms ("1s") are whole seconds only.
    doc["delivery"] = DELIVERY | delivery
    return WavelineConfig.model_validate(doc)


def secret_texts(base: str) -> dict[str, str]:
    """The webhook secrets, as their environment variables hold them."""
    return {
        HOOK_ENV: f"address: {base}/hook\ntoken: {HOOK_TOKEN}\nheaders: |\n  X-Team: platform\n",
        EVENTS_ENV: f"address: {base}/events\ntoken: {EVENTS_TOKEN}\n",
    }


def policy_for(config: WavelineConfig) -> RetryPolicy:
    """The notifier's retry policy for ``config`` (``policy_of`` reads only the config)."""
    return policy_of(cast(Runtime, SimpleNamespace(config=config)))


def requested(app_sha: str | None = None) -> PromotionEvent:
    """What the promoter publishes when production is promoted by webhook."""
    pid = uuid.uuid4()
    sha = app_sha or uuid.uuid4().hex + "0" * 8
    return PromotionEvent(
        event_id=uuid.uuid5(pid, "requested"),
        promotion_id=pid,
        pipeline="app",
        from_wave="internal",
        to_wave="production",
        app_sha=sha,
        images=ImageSetAnnounced.model_validate(image_set(sha)).images,
        cfg_sha=CFG_SHA,
        strategy="webhook",
        status="requested",
        at=utcnow(),
    )


def dead_letter(error_code: str, *, service: str = "git-writer") -> DeadLetter:
    event_id = uuid.uuid4()
    return DeadLetter(
        event_id=event_id,
        service=service,
        source_topic="waveline.git.commands",
        key="cfg-app",
        payload="{}",
        error_code=error_code,
        reason=f"{error_code} for the test ({event_id})",
        retriable=False,
        failed_at=utcnow(),
    )


async def produce(settings: Settings, base_topic: str, key: str, *messages: Message) -> None:
    """Publish ``messages`` in order to ``base_topic``, all with ``key`` (so on one partition:
    consumed in this order)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for message in messages:
            await producer.send_and_wait(
                Topics(settings.topic_prefix).name(base_topic), message.to_bytes(), key=key.encode()
            )
    finally:
        await producer.stop()


async def topic_messages(
    settings: Settings,
    base_topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 30.0,
) -> list[dict[str, Any]]:
    return await read_topic(
        settings.kafka_bootstrap,
        Topics(settings.topic_prefix).name(base_topic),
        until=until,
        timeout_s=timeout_s,
    )


def statuses_of(messages: list[dict[str, Any]], pid: uuid.UUID) -> list[str]:
    return [m["status"] for m in messages if m["promotion_id"] == str(pid)]


async def promotion_reaches(
    settings: Settings, pid: uuid.UUID, status: PromotionStatus, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """The promotions topic once it holds ``status`` for ``pid``."""
    return await topic_messages(
        settings, "waveline.promotions", lambda ms: status in statuses_of(ms, pid), timeout_s
    )


def letters_about(messages: list[dict[str, Any]], text: str | uuid.UUID) -> list[DeadLetter]:
    return [DeadLetter.model_validate(m) for m in messages if str(text) in m["payload"]]


async def dead_letters_about(
    settings: Settings, text: str | uuid.UUID, timeout_s: float = 30.0
) -> list[DeadLetter]:
    """The dead letters whose payload holds ``text``, once there is one."""
    messages = await topic_messages(
        settings, "waveline.dlq", lambda ms: bool(letters_about(ms, text)), timeout_s
    )
    return letters_about(messages, text)


async def query(settings: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(),
        server_settings={"search_path": settings.database_schema},
    )
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def eventually(
    probe: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    *,
    what: str,
    timeout_s: float = 30.0,
) -> T:
    """Poll ``probe`` until ``ok`` holds; its last value."""
    value = await probe()
    try:
        async with asyncio.timeout(timeout_s):
            while not ok(value):
                await asyncio.sleep(0.1)
                value = await probe()
    except TimeoutError as exc:
        raise AssertionError(f"timed out waiting for {what}; last: {value!r}") from exc
    return value


async def delivery(settings: Settings, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    rows = await query(settings, "SELECT * FROM deliveries WHERE delivery_id = $1", delivery_id)
    return rows[0] if rows else None


async def attempts(settings: Settings, delivery_id: uuid.UUID) -> list[asyncpg.Record]:
    return await query(
        settings,
        "SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
        delivery_id,
    )


async def announced(
    settings: Settings, delivery_id: uuid.UUID, state: str, timeout_s: float = 30.0
) -> asyncpg.Record:
    """The delivery once it ended in ``state`` and its follow-up was published."""
    row = await eventually(
        lambda: delivery(settings, delivery_id),
        lambda r: r is not None and r["state"] == state and r["announced"],
        what=f"delivery {delivery_id} {state} and announced",
        timeout_s=timeout_s,
    )
    assert row is not None
    return row


def gaps(hits: list[Hit]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(hits)]


# -- the notifier under test -----------------------------------------------------------------


@dataclass
class World:
    settings: Settings
    config: WavelineConfig
    receivers: Receivers

    @property
    def hook(self) -> Receiver:
        return self.receivers.hook

    @property
    def events(self) -> Receiver:
        return self.receivers.events

    @property
    def chat(self) -> Receiver:
        return self.receivers.chat


@pytest.fixture(scope="module")
async def world(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """One notifier on this module's own topics, groups and schema (as ``settings`` makes
    them per test), with the three receivers."""
    data_dir = tmp_path_factory.mktemp("notifier") / "data"
    async with (
        isolated_settings(infra.bootstrap, infra.database_url, data_dir) as settings,
        serve_receivers() as receivers,
    ):
        # The notifier never touches the config repo: any URL does.
        config = notifier_config("file:///nonexistent/cfg-app.git", receivers.base)
        secrets = Secrets(named={k: SecretStr(v) for k, v in secret_texts(receivers.base).items()})
        async with running(["notifier"], settings, config, secrets):
            yield World(settings, config, receivers)


# -- the webhook promotion strategy ---------------------------------------------------------


async def test_promotion_request_is_a_signed_cloudevent_and_reported_delivered(
    world: World,
) -> None:
    settings = world.settings
    event = requested()
    pid = event.promotion_id
    await produce(settings, "waveline.promotions", "app", event)
    messages = await promotion_reaches(settings, pid, "delivered")
    row = await announced(settings, pid, "delivered")
    tries = await attempts(settings, pid)

    [hit] = world.hook.containing(pid)
    assert hit.path == "/hook"
    assert hit.headers["Content-Type"].startswith(CLOUDEVENTS_JSON)
    assert hit.headers["X-Signature"] == sign(hit.body, HOOK_TOKEN)
    assert verify(hit.body, HOOK_TOKEN, hit.headers["X-Signature"])
    assert not verify(hit.body, "another-token", hit.headers["X-Signature"])
    assert hit.headers["Authorization"] == f"Bearer {HOOK_TOKEN}"
    assert hit.headers["X-Team"] == "platform"

    cloud = hit.json
    assert cloud["specversion"] == "1.0"
    assert cloud["id"] == str(pid)
    assert cloud["type"] == "io.waveline.promotion.requested"
    assert cloud["source"] == "waveline/app"
    assert cloud["subject"] == "production"
    assert cloud["pipeline"] == "app"
    data = cloud["data"]
    assert data["promotion_id"] == str(pid)
    assert (data["pipeline"], data["from_wave"], data["to_wave"]) == (
        "app",
        "internal",
        "production",
    )
    assert data["app_sha"] == event.app_sha
    assert data["config_commit"] == CFG_SHA
    assert data["images"] == {
        svc: {"tag": ref.tag, "digest": ref.digest} for svc, ref in event.images.items()
    }
    assert data["trailers"]["Autocommit-Event-Id"] == str(pid)
    assert data["result_url"] == f"/v1/pipelines/app/waves/production/promotions/{pid}/result"
    # A request is not a notification.
    assert world.events.containing(pid) == [] and world.chat.containing(pid) == []

    assert statuses_of(messages, pid) == ["requested", "delivered"]
    follow_up = PromotionEvent.model_validate(
        next(m for m in messages if m["promotion_id"] == str(pid) and m["status"] == "delivered")
    )
    assert follow_up.event_id == uuid.uuid5(pid, "delivered")
    assert follow_up.strategy == "webhook"
    assert (follow_up.from_wave, follow_up.to_wave) == ("internal", "production")
    assert follow_up.app_sha == event.app_sha
    assert follow_up.images == event.images
    assert follow_up.cfg_sha == CFG_SHA

    assert row["kind"] == "promotion"
    assert row["target"] == "app/production"
    assert row["promotion_id"] == pid
    assert row["attempts"] == 1
    assert bytes(row["body"]) == hit.body  # the exact bytes, kept for any retry
    assert [(t["attempt"], t["status_code"], t["outcome"], t["error"]) for t in tries] == [
        (1, 200, "delivered", None)
    ]
    assert tries[0]["latency_ms"] > 0


async def test_server_errors_are_retried_with_the_same_bytes_and_growing_waits(
    world: World,
) -> None:
    """500, 500, then 200: three attempts of one body. The wait after attempt n lies in
    [nominal_n * (1 - jitter), nominal_n] (plus up to one idle poll of the worker), and the
    nominal wait doubles while jitter is 0.5: the smallest second wait is the longest first."""
    settings = world.settings
    event = requested()
    pid = event.promotion_id
    world.hook.script(pid, 500, 500, 200)
    await produce(settings, "waveline.promotions", "app", event)
    await promotion_reaches(settings, pid, "delivered")
    await announced(settings, pid, "delivered")
    tries = await attempts(settings, pid)

    hits = world.hook.containing(pid)
    assert len(hits) == 3
    assert len({h.body for h in hits}) == 1
    assert {h.id for h in hits} == {str(pid)}
    assert len({h.headers["X-Signature"] for h in hits}) == 1
    policy = policy_for(world.config)
    assert policy.nominal(2) * (1 - policy.jitter) >= policy.nominal(1)
    for n, gap in enumerate(gaps(hits), start=1):
        low, high = policy.nominal(n) * (1 - policy.jitter), policy.nominal(n)
        assert low <= gap <= high + IDLE_S + 1.0, (n, gaps(hits))
    assert [(t["attempt"], t["status_code"], t["outcome"]) for t in tries] == [
        (1, 500, "retry"),
        (2, 500, "retry"),
        (3, 200, "delivered"),
    ]
    assert tries[0]["error"] == "HTTP 500 Internal Server Error"


async def test_receiver_down_dead_letters_after_max_attempts(world: World) -> None:
    settings = world.settings
    event = requested()
    pid = event.promotion_id
    world.hook.script(pid, 500)
    await produce(settings, "waveline.promotions", "app", event)
    [letter] = await dead_letters_about(settings, pid)
    messages = await promotion_reaches(settings, pid, "failed")
    row = await announced(settings, pid, "failed")
    tries = await attempts(settings, pid)
    # A failed promotion delivery is itself notified, as a dead letter.
    notice_id = uuid.uuid5(pid, "dead-letter")
    await wait_for(lambda: bool(world.events.of(notice_id)), what="dead-letter notice")

    hits = world.hook.containing(pid)
    assert len(hits) == 3
    assert len({h.body for h in hits}) == 1
    assert letter.event_id == notice_id
    assert letter.service == "notifier"
    assert letter.error_code == "promotion_delivery_failed"
    assert letter.source_topic == Topics(settings.topic_prefix).promotions
    assert letter.key == "app"
    assert letter.retriable is False
    assert letter.payload.encode() == hits[0].body
    assert "gave up after 3 attempt(s)" in letter.reason
    assert "HTTP 500" in letter.reason
    assert HOOK_TOKEN not in letter.reason

    assert statuses_of(messages, pid) == ["requested", "failed"]
    failed = PromotionEvent.model_validate(
        next(m for m in messages if m["promotion_id"] == str(pid) and m["status"] == "failed")
    )
    assert failed.event_id == uuid.uuid5(pid, "failed")
    assert failed.detail == "HTTP 500 Internal Server Error"
    assert row["attempts"] == 3
    assert [t["status_code"] for t in tries] == [500, 500, 500]

    [notice] = world.events.of(notice_id)
    assert notice.json["type"] == "io.waveline.deadletter"
    assert notice.json["data"]["error_code"] == "promotion_delivery_failed"
    assert verify(notice.body, EVENTS_TOKEN, notice.headers["X-Signature"])


async def test_client_error_is_not_retried(world: World) -> None:
    settings = world.settings
    event = requested()
    pid = event.promotion_id
    world.hook.script(pid, 400)
    await produce(settings, "waveline.promotions", "app", event)
    [letter] = await dead_letters_about(settings, pid)
    messages = await promotion_reaches(settings, pid, "failed")
    await announced(settings, pid, "failed")
    tries = await attempts(settings, pid)

    assert len(world.hook.containing(pid)) == 1
    assert [(t["attempt"], t["status_code"], t["outcome"]) for t in tries] == [(1, 400, "give_up")]
    assert letter.error_code == "promotion_delivery_failed"
    assert "gave up after 1 attempt(s)" in letter.reason
    assert statuses_of(messages, pid) == ["requested", "failed"]


async def test_too_many_requests_is_retried_after_retry_after(world: World) -> None:
    """429 means later, not never: retried, and not before the receiver's Retry-After."""
    settings = world.settings
    event = requested()
    pid = event.promotion_id
    world.hook.script(pid, (429, {"Retry-After": "1"}), 200)
    await produce(settings, "waveline.promotions", "app", event)
    await promotion_reaches(settings, pid, "delivered")
    await announced(settings, pid, "delivered")
    tries = await attempts(settings, pid)

    hits = world.hook.containing(pid)
    assert len(hits) == 2
    assert hits[0].body == hits[1].body
    assert gaps(hits)[0] >= 1.0  # Retry-After: 1 beats the 0.2-0.4 s backoff
    assert [(t["status_code"], t["outcome"]) for t in tries] == [(429, "retry"), (200, "delivered")]


async def test_hanging_receiver_times_out_and_is_retried(world: World) -> None:
    settings = world.settings
    event = requested()
    pid = event.promotion_id
    world.hook.script(pid, "hang", 200)
    await produce(settings, "waveline.promotions", "app", event)
    await promotion_reaches(settings, pid, "delivered")
    await announced(settings, pid, "delivered")
    tries = await attempts(settings, pid)

    assert len(world.hook.containing(pid)) == 2
    assert [(t["attempt"], t["status_code"], t["outcome"]) for t in tries] == [
        (1, None, "retry"),
        (2, 200, "delivered"),
    ]
    assert tries[0]["error"] == "timed out after 1s"
    assert tries[0]["latency_ms"] >= 900


async def test_redelivered_promotion_event_is_delivered_once(world: World) -> None:
    """The same Kafka message twice (a producer retry, a replay), and once more after it was
    delivered: one delivery. A later promotion on the same partition is the marker that the
    copies before it were consumed."""
    settings = world.settings
    event, marker = requested(), requested()
    pid = event.promotion_id
    await produce(settings, "waveline.promotions", "app", event, event)
    await promotion_reaches(settings, pid, "delivered")
    await announced(settings, pid, "delivered")
    await produce(settings, "waveline.promotions", "app", event, marker)
    messages = await promotion_reaches(settings, marker.promotion_id, "delivered")
    await announced(settings, marker.promotion_id, "delivered")
    rows = await query(
        settings,
        "SELECT delivery_id, attempts FROM deliveries WHERE promotion_id = $1",
        pid,
    )

    assert len(world.hook.of(pid)) == 1
    assert len(world.hook.of(marker.promotion_id)) == 1
    assert Counter(statuses_of(messages, pid)) == {"requested": 3, "delivered": 1}
    assert [(r["delivery_id"], r["attempts"]) for r in rows] == [(pid, 1)]


# -- notifications -------------------------------------------------------------------------


async def test_notifications_as_cloudevents_and_slack_text(world: World) -> None:
    """Eviction, degraded wave, finished promotion and another service's dead letter are
    told to both notifications. Each is preceded on its partition by an event that must not
    be notified (a commit, a running wave, a delivered promotion, a failed notification's
    dead letter), so once the four arrive, those were consumed and ignored."""
    settings = world.settings
    now = utcnow()
    committed = GitEvent(
        event_id=uuid.uuid4(),
        command_id=uuid.uuid4(),
        command_kind="introduce",
        repo="cfg-app",
        outcome="committed",
        sha=uuid.uuid4().hex + "1" * 8,
        at=now,
    )
    evicted = GitEvent(
        event_id=uuid.uuid4(),
        command_id=uuid.uuid4(),
        command_kind="evict",
        repo="cfg-app",
        outcome="evicted",
        branch="auto",
        old_sha=uuid.uuid4().hex + "e" * 8,
        sha=uuid.uuid4().hex + "2" * 8,
        timings_ms={"push_ms": 12.0},
        at=now,
    )
    running_wave = WaveStatus(
        event_id=uuid.uuid4(), pipeline="app", wave="internal", state="running", at=now
    )
    degraded = WaveStatus(
        event_id=uuid.uuid4(),
        pipeline="app",
        wave="internal",
        state="failing",
        app_sha=APP_SHA,
        reason=f"internal-us is Degraded ({uuid.uuid4()})",
        at=now,
    )
    base = requested()
    delivered = base.model_copy(update={"event_id": uuid.uuid4(), "status": "delivered"})
    done = base.model_copy(update={"event_id": uuid.uuid4(), "status": "done"})
    looping = dead_letter("notification_delivery_failed", service="notifier")
    letter = dead_letter("git_failed")
    told = {
        "io.waveline.commit.evicted": evicted.event_id,
        "io.waveline.wave.degraded": degraded.event_id,
        "io.waveline.promotion.done": done.event_id,
        "io.waveline.deadletter": letter.event_id,
    }
    ignored = [committed.event_id, running_wave.event_id, delivered.event_id, looping.event_id]

    await produce(settings, "waveline.git.events", "cfg-app", committed, evicted)
    await produce(settings, "waveline.waves", "app", running_wave, degraded)
    await produce(settings, "waveline.promotions", "app", delivered, done)
    await produce(settings, "waveline.dlq", "cfg-app", looping, letter)
    texts = {
        "evicted": f"cfg-app: evicted {evicted.old_sha} from auto",
        "degraded": f"app/internal is failing: {degraded.reason}",
        "done": f"app: {base.app_sha[:10]} promoted to production (webhook)",
        "letter": f"git-writer dead-lettered a message from waveline.git.commands: git_failed: "
        f"{letter.reason}",
    }
    await wait_for(
        lambda: (
            all(world.events.of(i) for i in told.values())
            and all(world.chat.containing(t) for t in texts.values())
        ),
        what="four notifications to each receiver",
    )
    ids = [uuid.uuid5(i, name) for i in told.values() for name in ("events", "chat")]
    rows = await eventually(
        lambda: query(settings, "SELECT * FROM deliveries WHERE delivery_id = ANY($1)", ids),
        lambda rs: len(rs) == 8 and all(r["announced"] for r in rs),
        what="eight delivered notifications",
    )

    for event_type, event_id in told.items():
        [hit] = world.events.of(event_id)
        assert hit.json["type"] == event_type
        assert hit.headers["Content-Type"].startswith(CLOUDEVENTS_JSON)
        assert verify(hit.body, EVENTS_TOKEN, hit.headers["X-Signature"])
        assert hit.headers["Authorization"] == f"Bearer {EVENTS_TOKEN}"
    for event_id in ignored:
        assert world.events.of(event_id) == []
    assert world.chat.containing(looping.reason) == []
    for event in (evicted, degraded, done, letter):
        assert world.hook.containing(event.event_id) == []

    ev = world.events.of(evicted.event_id)[0].json
    assert ev["source"] == "waveline/app"  # the pipelines of the repo
    assert ev["subject"] == "cfg-app"
    assert ev["data"]["old_sha"] == evicted.old_sha
    assert "timings_ms" not in ev["data"]
    wave = world.events.of(degraded.event_id)[0].json
    assert wave["subject"] == "internal"
    assert wave["data"]["reason"] == degraded.reason
    promo = world.events.of(done.event_id)[0].json
    assert promo["subject"] == "production"
    assert promo["data"]["promotion_id"] == str(base.promotion_id)
    assert promo["data"]["status"] == "done"
    dl = world.events.of(letter.event_id)[0].json
    assert dl["source"] == "waveline"
    assert dl["subject"] == "waveline.git.commands"
    assert dl["data"]["error_code"] == "git_failed"

    for text in texts.values():
        [hit] = world.chat.containing(text)
        assert hit.headers["Content-Type"].startswith("application/json")
        assert "X-Signature" not in hit.headers  # no token: unsigned
        assert set(hit.json) == {"text"}
        assert hit.json["text"].startswith("[waveline] ")

    assert {r["kind"] for r in rows} == {"notification"}
    assert {r["state"] for r in rows} == {"delivered"}
    assert {r["target"] for r in rows} == {"notification:events", "notification:chat"}


async def test_undeliverable_notification_is_dead_lettered_but_not_notified(
    world: World,
) -> None:
    """The chat receiver fails a notification: it is dead-lettered as
    notification_delivery_failed, and that dead letter is not notified again (no loop)."""
    settings = world.settings
    failing = WaveStatus(
        event_id=uuid.uuid4(),
        pipeline="app",
        wave="staging",
        state="failing",
        reason=f"staging-us: sync failed ({uuid.uuid4()})",
        at=utcnow(),
    )
    assert failing.reason is not None
    world.chat.script(failing.reason, 500)
    await produce(settings, "waveline.waves", "app", failing)
    [own] = await dead_letters_about(settings, failing.reason)
    # A marker after it on its partition: once the marker is notified, the notifier's own
    # dead letter has been consumed.
    marker = dead_letter("marker")
    await produce(settings, "waveline.dlq", own.key or "", marker)
    await wait_for(lambda: bool(world.events.of(marker.event_id)), what="marker notice")

    assert len(world.chat.containing(failing.reason)) == 3
    assert own.error_code == "notification_delivery_failed"
    assert own.service == "notifier"
    assert own.key == "app"  # the one pipeline it concerns
    assert own.source_topic == Topics(settings.topic_prefix).waves
    assert "io.waveline.failed to notification:chat" in own.reason
    assert "gave up after 3 attempt(s)" in own.reason
    [told] = world.events.of(failing.event_id)  # the working receiver had it
    assert told.json["type"] == "io.waveline.failed"
    assert world.events.of(own.event_id) == []
    assert world.chat.containing("notification_delivery_failed") == []

"""Wave verifications against real PostgreSQL, a real HTTP endpoint and a small Prometheus
HTTP API (tests/fakeprometheus.py): an HTTP check failing then passing, Prometheus queries
passing and failing with the reason, and runs that survive a restart of the loop, a second
replica, and a replica that died holding a lease."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from tests.fakeprometheus import FakePrometheus, running_prometheus
from tests.infra import Infra
from tests.support import fresh_schema
from waveline.services.promoter import verify_store
from waveline.services.promoter.verify import (
    VerificationLoop,
    as_gate,
    start_verifications,
    verification_state,
)
from waveline.services.promoter.verify_rules import RunState
from waveline.shared.config import Secrets, WavelineConfig
from waveline.shared.models.base import utcnow

pytestmark = pytest.mark.timeout(60)

CHECK_KEY = "check-key-for-tests-5f1e0c"
PROM_TOKEN = "prom-token-for-tests-77aa21"
SECRETS = Secrets(
    named={
        "CHECK_KEY": SecretStr(CHECK_KEY),
        "WRONG_KEY": SecretStr("wrong-" + CHECK_KEY),
        "PROM_TOKEN": SecretStr(PROM_TOKEN),
    }
)
RATE = "sum(rate(http_requests_total{code!~'5..'}[5m])) / sum(rate(http_requests_total[5m]))"
P99 = "histogram_quantile(0.99, sum by (le) (rate(request_seconds_bucket[5m])))"


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    async with fresh_schema(infra.database_url) as (_, pool):
        yield pool


class Endpoint:
    """A health endpoint wanting the secret header: 503 for its first ``failures`` calls,
    then 200 with ``{"status": {"ready": true}}``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") != CHECK_KEY:
            return web.json_response({"error": "unauthorized"}, status=401)
        self.calls += 1
        if self.calls <= self.failures:
            return web.json_response({"status": {"ready": False}}, status=503)
        return web.json_response({"status": {"ready": True}})


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    found = Endpoint(failures=2)
    app = web.Application()
    app.router.add_get("/healthz", found.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    found.url = str(server.make_url("/healthz"))
    try:
        yield found
    finally:
        await server.close()


@pytest.fixture
async def prometheus() -> AsyncIterator[FakePrometheus]:
    async with running_prometheus(token=PROM_TOKEN) as fake:
        yield fake


def make_config(prometheus: FakePrometheus | None, **waves: list[dict[str, Any]]) -> WavelineConfig:
    return WavelineConfig.model_validate(
        {
            "repos": {"cfg": {"url": "file:///tmp/cfg.git"}},
            "pipelines": {
                "app": {
                    "repo": "cfg",
                    "waves": [
                        {"name": name, "targets": [f"{name}-a"], "verifications": checks}
                        for name, checks in waves.items()
                    ],
                }
            },
        }
        | ({"prometheus": {"url": prometheus.url, "token_env": "PROM_TOKEN"}} if prometheus else {})
    )


def http_check(url: str, attempts: int) -> dict[str, Any]:
    return {
        "name": "ready",
        "http": {
            "url": url,
            "secret_headers": {"X-Api-Key": "CHECK_KEY"},
            "field": "status.ready",
            "equals": True,
        },
        "attempts": attempts,
        "interval": 0.05,
    }


def wrong_key(url: str, name: str = "key", env: str = "WRONG_KEY") -> dict[str, Any]:
    check = {"url": url, "secret_headers": {"X-Api-Key": env}}
    return {"name": name, "http": check, "attempts": 1}


def query(name: str, promql: str, op: str, value: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "prometheus": {"query": promql, "condition": {"op": op, "value": value}},
        "interval": 0.05,
        **extra,
    }


async def settle(
    pool: asyncpg.Pool, config: WavelineConfig, wave: str, sha: str, loops: list[VerificationLoop]
) -> str:
    """Run the loops until the set's verdict is no longer running; its reason."""
    for loop in loops:
        loop.start()
    try:
        async with asyncio.timeout(15):
            state = await verification_state(pool, config, "app", wave, sha)
            while state.status == "running":
                await asyncio.sleep(0.05)
                state = await verification_state(pool, config, "app", wave, sha)
    finally:
        for loop in loops:
            await loop.stop()
    return state.reason


def loop_of(pool: asyncpg.Pool, config: WavelineConfig, **extra: Any) -> VerificationLoop:
    return VerificationLoop(pool, config, SECRETS, tick_s=0.02, **extra)


async def test_http_verification_fails_then_passes(
    pool: asyncpg.Pool, endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(None, staging=[http_check(endpoint.url, attempts=5)])
    assert await start_verifications(pool, config, "app", "staging", "a" * 40) == 1
    assert await start_verifications(pool, config, "app", "staging", "a" * 40) == 0
    first = await verification_state(pool, config, "app", "staging", "a" * 40)
    assert as_gate(first).reason == "verifying ready 0/5"
    assert as_gate(first).waiting_for == "verification"

    assert await settle(pool, config, "staging", "a" * 40, [loop_of(pool, config)]) == "verified"
    assert endpoint.calls == 3  # two 503s, then the pass; nothing after
    state = await verification_state(pool, config, "app", "staging", "a" * 40)
    assert as_gate(state).is_open

    # A check that keeps failing uses its attempts and fails with what it saw.
    endpoint.failures, endpoint.calls = 100, 0
    tight = make_config(None, staging=[http_check(endpoint.url, attempts=2)])
    await start_verifications(pool, tight, "app", "staging", "b" * 40)
    reason = await settle(pool, tight, "staging", "b" * 40, [loop_of(pool, tight)])
    assert reason == "failed: ready: HTTP 503, expected 200 (after 2 attempts)"
    assert endpoint.calls == 2

    # Unreachable, or refused for a wrong secret: the reason says so, and no secret is
    # written to a row or a log line.
    down = make_config(
        None,
        staging=[
            http_check("http://127.0.0.1:9/healthz", 1),
            wrong_key(endpoint.url),
            wrong_key(endpoint.url, name="unset", env="UNSET_KEY"),
        ],
    )
    await start_verifications(pool, down, "app", "staging", "c" * 40)
    with caplog.at_level(logging.DEBUG):
        reason = await settle(pool, down, "staging", "c" * 40, [loop_of(pool, down)])
    assert reason == "failed: ready: unreachable (ClientConnectorError) (after 1 attempt)"
    both = await verify_store.runs_for(
        pool, [("app", "staging", "c" * 40), ("app", "staging", "a" * 40)]
    )
    assert both[("app", "staging", "a" * 40)]["ready"].status == "passed"
    assert both[("app", "staging", "c" * 40)]["key"].reason == (
        "key: HTTP 401, expected 200 (after 1 attempt)"
    )
    assert both[("app", "staging", "c" * 40)]["unset"].reason == (
        "unset: verification unset, header X-Api-Key: environment variable UNSET_KEY is not set"
        " (after 1 attempt)"
    )
    rows = await pool.fetch("SELECT * FROM verification_runs")
    for secret in (CHECK_KEY, "wrong-" + CHECK_KEY):
        assert secret not in caplog.text
        assert not [r for r in rows if secret in repr(dict(r))]


async def test_prometheus_verifications_pass_and_fail(
    pool: asyncpg.Pool, prometheus: FakePrometheus
) -> None:
    prometheus.values = {RATE: [["0.999", "0.995"], ["0.993", "1"], ["0.999", "0.991"]]}
    rate = query("success-rate", RATE, ">=", 0.99, count=3)
    rate["prometheus"]["timeout"] = 0.5  # sent as Prometheus takes durations: 1s
    config = make_config(prometheus, prod=[rate])
    await start_verifications(pool, config, "app", "prod", "c" * 40)
    assert await settle(pool, config, "prod", "c" * 40, [loop_of(pool, config)]) == "verified"
    assert prometheus.asked == [RATE] * 3

    prometheus.values = {P99: [["0.21"], ["0.25"], ["0.42"], ["0.2"]]}
    prometheus.asked.clear()
    failing = make_config(
        prometheus,
        prod=[query("p99-latency", P99, "<=", 0.3, count=5, failure_limit=0)],
    )
    await start_verifications(pool, failing, "app", "prod", "d" * 40)
    reason = await settle(pool, failing, "prod", "d" * 40, [loop_of(pool, failing)])
    assert reason == 'failed: p99-latency: {instance="api-0:8080",job="api"} 0.42 not <= 0.3'
    assert prometheus.asked == [P99] * 3  # failed at the third: no more queries

    # A query Prometheus cannot parse fails at once; an empty answer fails by default.
    prometheus.asked.clear()
    broken = make_config(
        prometheus,
        prod=[query("broken", "sum(rate(x[5m])", ">", 0), query("absent", "nothing", ">", 0)],
    )
    await start_verifications(pool, broken, "app", "prod", "e" * 40)
    reason = await settle(pool, broken, "prod", "e" * 40, [loop_of(pool, broken)])
    assert reason.startswith("failed: broken: Prometheus bad_data: invalid parameter")
    runs = await verify_store.runs_of(pool, "app", "prod", "e" * 40)
    assert runs["absent"].reason == "absent: query returned no samples"


async def test_runs_resume_after_a_restart_and_are_never_measured_twice(
    pool: asyncpg.Pool, prometheus: FakePrometheus
) -> None:
    prometheus.values = {RATE: [["1"]]}
    check = query("success-rate", RATE, ">=", 0.99, count=6)
    config = make_config(prometheus, prod=[check | {"interval": 0.3}])
    await start_verifications(pool, config, "app", "prod", "f" * 40)
    first = loop_of(pool, config)
    first.start()
    async with asyncio.timeout(10):
        runs: dict[str, RunState] = {}
        while runs.get("success-rate", RunState()).measurements < 2:
            await asyncio.sleep(0.02)
            runs = await verify_store.runs_of(pool, "app", "prod", "f" * 40)
    await first.stop()  # the promoter restarts: two replicas come back
    state = await verification_state(pool, config, "app", "prod", "f" * 40)
    assert state.reason == "verifying success-rate 2/6"
    again = [loop_of(pool, config), loop_of(pool, config)]
    assert await settle(pool, config, "prod", "f" * 40, again) == "verified"
    assert len(prometheus.asked) == 6  # resumed at 3/6, and no measurement taken twice


async def test_a_lease_of_a_dead_replica_is_taken_over_once_it_ends(
    pool: asyncpg.Pool, prometheus: FakePrometheus
) -> None:
    prometheus.values = {RATE: [["1"]]}
    config = make_config(prometheus, prod=[query("success-rate", RATE, ">=", 0.99)])
    await start_verifications(pool, config, "app", "prod", "9" * 40)
    now = utcnow()
    dead = await verify_store.claim(pool, uuid.uuid4(), now, now + timedelta(minutes=5), 10)
    assert [c.key.name for c in dead] == ["success-rate"]
    assert await loop_of(pool, config).run_due() == 0  # leased: not measured meanwhile
    later = loop_of(pool, config, clock=lambda: utcnow() + timedelta(minutes=6))
    try:
        assert await later.run_due() == 1
    finally:
        await later.stop()
    state = await verification_state(pool, config, "app", "prod", "9" * 40)
    assert state.passed
    assert prometheus.asked == [RATE]


async def test_an_ended_run_is_acted_on_once_even_after_a_failed_action_and_a_restart(
    pool: asyncpg.Pool, prometheus: FakePrometheus
) -> None:
    prometheus.values = {RATE: [["0.5"]]}
    config = make_config(prometheus, prod=[query("success-rate", RATE, ">=", 0.99)])
    await start_verifications(pool, config, "app", "prod", "8" * 40)
    acted: list[tuple[str, str, str]] = []

    async def refuse(*key: str) -> None:
        raise RuntimeError("the promoter could not act")

    async def act(*key: str) -> None:
        state = await verification_state(pool, config, *key)
        acted.append((key[2][:4], state.status, state.reason))

    first = loop_of(pool, config, on_finished=refuse)
    assert await first.run_due() == 1
    await first.stop()
    soon = loop_of(pool, config, on_finished=act)
    await soon.run_due()
    await soon.stop()
    assert acted == []  # not before its retry is due
    # Restarted: the failed action is tried again once its retry is due, and only once.
    later = loop_of(pool, config, on_finished=act, clock=lambda: utcnow() + timedelta(seconds=6))
    try:
        for _ in range(3):
            await later.run_due()
    finally:
        await later.stop()
    assert acted == [
        (
            "8888",
            "failed",
            'failed: success-rate: {instance="api-0:8080",job="api"} 0.5 not >= 0.99',
        )
    ]
    assert prometheus.asked == [RATE]

"""The gates of issue 17 wired into the promoter's flow (real Kafka and PostgreSQL, the
promoter service alone, wave statuses produced as the status-tracker would): a wave's
verification runs when it runs a set, keeps the next gate shut until it passes, and a
failed one holds the wave (``on_failure: hold``); a manual freeze keeps a promotion whose
other gates are open waiting until it is lifted, and an introduction too (the first wave's
only gate)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.support import count_topic, image_set, produce, read_topic, running
from waveline.services.promoter import freeze_store
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.models.base import utcnow
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.models.waves import WaveStatus

A, B = "a" * 40, "b" * 40


class Health:
    """A service's health endpoint: 503 until ``healthy``."""

    def __init__(self) -> None:
        self.healthy = False
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        return web.Response(status=200 if self.healthy else 503)


@pytest.fixture
async def health() -> AsyncIterator[tuple[Health, str]]:
    state = Health()
    app = web.Application()
    app.router.add_get("/healthz", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield state, f"http://127.0.0.1:{port}/healthz"
    finally:
        await runner.cleanup()


def gated_config(remote_url: str, health_url: str) -> WavelineConfig:
    check = {"name": "ready", "http": {"url": health_url}, "attempts": 2, "interval": "1s"}
    return WavelineConfig.model_validate(
        {
            "repos": {"cfg-app": {"url": remote_url, "required_checks": ["ci/validate"]}},
            "pipelines": {
                "app": {
                    "repo": "cfg-app",
                    "waves": [
                        {"name": "staging", "targets": ["staging-us"], "verifications": [check]},
                        {"name": "production", "targets": ["prod-us"]},
                    ],
                }
            },
        }
    )


async def wave_runs(rt: Any, app_sha: str, position: int) -> None:
    status = WaveStatus(
        event_id=uuid.uuid4(),
        pipeline="app",
        wave="staging",
        state="running",
        app_sha=app_sha,
        cfg_sha=f"{position:040x}",
        at=utcnow(),
        cfg_position=position,
    )
    await rt.publish(status, rt.topics.waves, key="app")


async def promotion_status(pool: asyncpg.Pool, app_sha: str) -> str | None:
    found: str | None = await pool.fetchval(
        "SELECT status FROM promotions WHERE wave = 'production' AND app_sha = $1", app_sha
    )
    return found


async def test_verification_and_freeze_gates_in_the_promoters_flow(
    settings: Settings, secrets: Secrets, remote: Path, health: tuple[Health, str]
) -> None:
    endpoint, url = health
    config = gated_config(remote.as_uri(), url)
    async with asyncio.timeout(60), running(["promoter"], settings, config, secrets) as rts:
        rt = rts["promoter"]
        pool = rt.pool

        # A fails its verification: production's gate stays shut, staging is held.
        await wave_runs(rt, A, 1)
        await until(
            lambda: pool.fetchval(
                "SELECT held FROM wave_gates WHERE pipeline = 'app' AND wave = 'staging'"
            )
        )
        assert endpoint.calls == 2
        assert await promotion_status(pool, A) == "waiting"
        action = await pool.fetchrow("SELECT action, actor, detail FROM operator_actions")
        assert action is not None
        assert (action["action"], action["actor"]) == ("hold", "verification")

        # B passes, but a manual freeze of production keeps it waiting until lifted.
        await freeze_store.freeze(pool, "app", "production", "release week", "ops")
        endpoint.healthy = True
        await wave_runs(rt, B, 2)
        await until(
            lambda: pool.fetchval(
                "SELECT status = 'passed' FROM verification_runs WHERE app_sha = $1", B
            )
        )
        await asyncio.sleep(1.5)  # three gate ticks
        assert await promotion_status(pool, B) == "waiting"
        assert await promotion_status(pool, A) == "superseded"
        await freeze_store.lift(pool, "app", "production", "ops")
        await until(lambda: _is(pool, B, "requested"))


async def test_a_freeze_keeps_introductions_waiting_until_lifted(
    settings: Settings, secrets: Secrets, remote: Path, health: tuple[Health, str]
) -> None:
    config = gated_config(remote.as_uri(), health[1])
    async with asyncio.timeout(60), running(["promoter"], settings, config, secrets) as rts:
        pool = rts["promoter"].pool
        await freeze_store.freeze(pool, None, None, "incident 42", "ops")
        await produce(settings, "waveline.images", [json.dumps(image_set(A)).encode()])
        intro = "SELECT status FROM promotions WHERE kind = 'introduce' AND app_sha = $1"
        await until(lambda: pool.fetchval(intro, A))
        await asyncio.sleep(1.0)  # two gate ticks
        assert await pool.fetchval(intro, A) == "waiting"
        commands = f"{settings.topic_prefix}waveline.git.commands"
        assert await count_topic(settings.kafka_bootstrap, commands) == 0
        await freeze_store.lift(pool, None, None, "ops")
        await until(lambda: _intro_requested(pool, intro))
        (sent,) = await read_topic(settings.kafka_bootstrap, commands, until=lambda m: len(m) >= 1)
        assert (sent["kind"], sent["app_sha"], sent["wave"]) == ("introduce", A, "staging")


async def _intro_requested(pool: asyncpg.Pool, query: str) -> bool:
    return bool(await pool.fetchval(query, A) == "requested")


async def _is(pool: asyncpg.Pool, app_sha: str, status: str) -> bool:
    return await promotion_status(pool, app_sha) == status


async def until(check: Callable[[], Awaitable[Any]]) -> None:
    """Poll ``check`` until it answers something true (the test's timeout bounds it)."""
    while not await check():  # noqa: ASYNC110 (rows written by another service: no event)
        await asyncio.sleep(0.1)


async def test_a_rollback_from_a_run_not_yet_recorded_waits_for_it(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    """Staging runs B in the status-tracker's table (what the API and dashboard show) but
    the promoter has not read that wave status yet when an operator asks for "previous":
    the command waits for it (retriable) instead of being dead-lettered as "never ran
    previous", then rolls back to A."""
    config = WavelineConfig.model_validate(
        {
            "repos": {"cfg-app": {"url": remote.as_uri()}},
            "pipelines": {
                "app": {
                    "repo": "cfg-app",
                    "waves": [
                        {"name": "staging", "targets": ["staging-us"]},
                        {"name": "production", "targets": ["prod-us"]},
                    ],
                }
            },
        }
    )
    async with asyncio.timeout(60), running(["promoter"], settings, config, secrets) as rts:
        rt = rts["promoter"]
        pool = rt.pool
        await wave_runs(rt, A, 1)
        await until(lambda: pool.fetchval("SELECT count(*) = 1 FROM wave_runs"))
        # The tracker's word that B runs, ahead of the wave status the promoter reads.
        await pool.execute(
            "INSERT INTO wave_status (pipeline, wave, state, app_sha, cfg_sha, since)"
            " VALUES ('app', 'staging', 'running', $1, $2, now())",
            B,
            f"{2:040x}",
        )
        rollback = OperatorCommand(
            event_id=uuid.uuid4(),
            pipeline="app",
            wave="staging",
            action="rollback",
            to="previous",
            actor="alice",
            issued_at=utcnow(),
        )
        await produce(settings, "waveline.operator", [rollback.to_bytes()], key=b"app")
        await asyncio.sleep(1.5)  # handled and refused (retriable) at least once by now
        assert await count_topic(settings.kafka_bootstrap, rt.topics.dlq) == 0
        assert not await pool.fetchval("SELECT count(*) FROM promotions WHERE kind = 'rollback'")
        await wave_runs(rt, B, 2)
        commands = await read_topic(
            settings.kafka_bootstrap,
            rt.topics.git_commands,
            until=lambda found: any(c.get("kind") == "rollback" for c in found),
        )
        (command,) = [c for c in commands if c.get("kind") == "rollback"]
        assert (command["app_sha"], command["to_sha"]) == (A, f"{1:040x}")
        assert await count_topic(settings.kafka_bootstrap, rt.topics.dlq) == 0

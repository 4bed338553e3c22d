"""git-writer through real Kafka and Postgres: batching, dead letters, and crash safety
(the process is killed at each point of the commit/push/record/ack sequence)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pygit2
import pytest
from pydantic import BaseModel

from tests.support import (
    branch_log,
    count_topic,
    introduce,
    make_config,
    produce_commands,
    read_topic,
    running,
    service_env,
    wait_for,
)
from waveline.devstack.demo import seed_repo
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.errors import BrokerUnavailable
from waveline.shared.faults import EXIT_CODE
from waveline.shared.gitengine import trailers
from waveline.shared.models.git import Evict, IntroduceImages
from waveline.shared.runtime import Runtime


def command(n: int, repo: str = "cfg-app") -> IntroduceImages:
    return introduce(repo, "app" if repo == "cfg-app" else "other", n)


async def produce(settings: Settings, commands: Sequence[IntroduceImages | Evict]) -> None:
    await produce_commands(settings, commands)


def event_ids_on_auto(remote: Path) -> list[str]:
    return [trailers.parse(c.message).event_id or "" for c in branch_log(str(remote), "auto")[:-1]]


async def test_waiting_commands_are_batched(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    commands = [command(n + 1) for n in range(30)]
    await produce(settings, commands)
    async with running(["git-writer"], settings, config, secrets):
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 31, what="30 commits")
        events = await read_topic(
            settings.kafka_bootstrap,
            f"{settings.topic_prefix}waveline.git.events",
            until=lambda m: len(m) >= 30,
        )
    # One commit per image set, in command order, each with its own Event-Id.
    assert event_ids_on_auto(remote) == [str(c.command_id) for c in reversed(commands)]
    assert {e["outcome"] for e in events} == {"committed"}
    assert max(e["timings_ms"]["batch_size"] for e in events) > 1
    assert all(e["timings_ms"]["push_ms"] > 0 for e in events)


async def test_an_unreachable_remote_is_waited_out_and_the_writer_carries_on(
    settings: Settings, secrets: Secrets, remote: Path, tmp_path: Path
) -> None:
    """A remote that does not answer is an outage, not a bad command: its commands wait
    (readiness names git), the other repository keeps committing, nothing is
    dead-lettered, and once the remote is there the waiting command lands."""
    later = tmp_path / "later.git"
    base = make_config(remote.as_uri()).model_dump(mode="json")
    base["repos"]["broken"] = {**base["repos"]["cfg-app"], "url": later.as_uri()}
    base["pipelines"]["other"] = {**base["pipelines"]["app"], "repo": "broken"}
    config = WavelineConfig.model_validate(base)
    fast = settings.model_copy(update={"retry_backoff_s": 0.05, "retry_cap_s": 0.5})
    await produce(fast, [command(1, "broken"), command(2)])
    async with running(["git-writer"], fast, config, secrets) as runtimes:
        waits = runtimes["git-writer"].waits
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 2, what="good commit")
        await wait_for(lambda: bool(waits.current()), what="the writer waits")
        (waiting,) = waits.current().values()
        assert waiting["dependency"] == "git"
        assert "later.git" in waiting["reason"]
        seed_repo(later)  # the remote is back
        await wait_for(lambda: len(branch_log(str(later), "auto")) == 2, what="waited commit")
        await wait_for(lambda: not waits.current(), what="the wait to end")
    assert await count_topic(fast.kafka_bootstrap, f"{fast.topic_prefix}waveline.dlq") == 0


async def test_a_failed_publish_sends_the_poll_back_and_events_keep_push_order(
    settings: Settings,
    config: WavelineConfig,
    secrets: Secrets,
    remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A round's events are published while the next round is built, and that round's
    push waits for them. When a publish fails, every record of the poll comes back: each
    command still lands once, every one gets its event, and the first event of each
    command appears in the order of the commits on auto (the third event of a six-command
    batch fails, so events sent beside it would overtake its resend)."""
    commands = [command(n + 1) for n in range(12)]
    original = Runtime.publish
    calls = 0

    async def flaky(self: Runtime, message: BaseModel, topic: str, *, key: str) -> None:
        nonlocal calls
        if topic.endswith("waveline.git.events"):
            calls += 1
            if calls == 3:
                raise BrokerUnavailable("injected: Kafka did not acknowledge")
        await original(self, message, topic, key=key)

    monkeypatch.setattr(Runtime, "publish", flaky)
    await produce(settings, commands[:6])  # waiting before the writer starts: one batch
    async with running(["git-writer"], settings, config, secrets):
        for cmd in commands[6:]:  # then spread out, so that polls hold several rounds
            await produce(settings, [cmd])
            await asyncio.sleep(0.01)
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 13, what="12 commits")
        events = await read_topic(
            settings.kafka_bootstrap,
            f"{settings.topic_prefix}waveline.git.events",
            until=lambda m: {e["command_id"] for e in m} >= {str(c.command_id) for c in commands},
        )
        async with asyncio.timeout(30):  # every result marked done
            while await _done(settings) != len(commands):  # noqa: ASYNC110 (polls Postgres)
                await asyncio.sleep(0.1)
    assert calls > len(commands)  # the failed poll was handled again
    assert sorted(event_ids_on_auto(remote)) == sorted(str(c.command_id) for c in commands)
    assert {e["outcome"] for e in events} == {"committed"}
    first_seen: list[str] = []
    for event in events:
        if event["sha"] not in first_seen:
            first_seen.append(event["sha"])
    on_auto = [str(c.id) for c in reversed(branch_log(str(remote), "auto")[:-1])]
    assert first_seen == on_auto


async def _done(settings: Settings) -> int:
    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(),
        server_settings={"search_path": settings.database_schema},
    )
    try:
        value = await conn.fetchval("SELECT count(*) FROM git_command_results WHERE state = 'done'")
        return int(value)
    finally:
        await conn.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("point", ["before_commit", "before_push", "after_push", "after_record"])
async def test_killed_at_any_point_loses_and_duplicates_nothing(
    settings: Settings, config: WavelineConfig, remote: Path, tmp_path: Path, point: str
) -> None:
    commands = [command(n + 1) for n in range(3)]
    await produce(settings, commands)
    fault = tmp_path / "fault"
    fault.write_text(point)
    env = service_env(settings, config, tmp_path)
    argv = [sys.executable, "-m", "waveline", "run", "git-writer"]
    log = (tmp_path / "git-writer.log").open("wb")
    first = await asyncio.create_subprocess_exec(*argv, env=env, stdout=log, stderr=log)
    assert await asyncio.wait_for(first.wait(), 90) == EXIT_CODE
    assert not fault.exists()
    pushed_before_restart = len(branch_log(str(remote), "auto"))
    second = await asyncio.create_subprocess_exec(*argv, env=env, stdout=log, stderr=log)
    try:
        await wait_for(
            lambda: len(branch_log(str(remote), "auto")) == 4, timeout_s=90, what="3 commits"
        )
        events = await read_topic(
            settings.kafka_bootstrap,
            f"{settings.topic_prefix}waveline.git.events",
            until=lambda m: {e["command_id"] for e in m} >= {str(c.command_id) for c in commands},
            timeout_s=60,
        )
        conn = await asyncpg.connect(
            settings.database_url.get_secret_value(),
            server_settings={"search_path": settings.database_schema},
        )
        try:
            rows = await conn.fetch("SELECT state, outcome FROM git_command_results")
        finally:
            await conn.close()
    finally:
        second.terminate()
        await second.wait()
        log.close()
    if point in {"before_commit", "before_push"}:
        assert pushed_before_restart == 0  # auto was never pushed before the kill
    else:
        assert pushed_before_restart == 4
    assert sorted(event_ids_on_auto(remote)) == sorted(str(c.command_id) for c in commands)
    assert {e["outcome"] for e in events} <= {"committed", "noop"}
    by_command = {e["command_id"]: e for e in events}
    assert all(by_command[str(c.command_id)]["outcome"] == "committed" for c in commands)
    assert sorted((r["state"], r["outcome"]) for r in rows) == [("done", "committed")] * 3


async def test_a_clean_stop_packs_what_only_memory_held(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    """New objects live in the writer's memory until packed; stopping packs them, so even
    a commit no branch of the remote points at any more (evicted) stays in the clone."""
    async with running(["git-writer"], settings, config, secrets):
        await produce(settings, [command(1)])
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 2, what="1 commit")
        # The first batch also packs what the clone held at start; what comes after stays
        # in memory until the next packing, 2,000 updates away.
        await produce(settings, [command(2), command(3)])
        await wait_for(lambda: len(branch_log(str(remote), "auto")) == 4, what="3 commits")
        evicted = branch_log(str(remote), "auto")[1].id  # the second image set's commit
        evict = Evict(
            command_id=uuid.uuid4(), repo="cfg-app", issued_at=datetime.now(UTC), sha=str(evicted)
        )
        await produce(settings, [evict])
        await wait_for(
            lambda: evicted not in {c.id for c in branch_log(str(remote), "auto")},
            what="the second commit evicted",
        )
    clone = pygit2.Repository(str(settings.data_dir / "repos" / "cfg-app.git"))
    objects = Path(clone.path) / "objects"
    assert not any(objects.glob("[0-9a-f][0-9a-f]/*"))  # nothing was written loose
    assert isinstance(clone.get(evicted), pygit2.Commit)  # packed on the way out

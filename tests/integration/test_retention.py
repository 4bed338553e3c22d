"""Retention against the real PostgreSQL (shared/retention.py, docs/reliability.md): rows
past their retention go, in batches; rows a rule still needs stay whatever their age (one
test per rule); younger rows stay; no row goes before the redelivery floor."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import pytest

from tests.infra import Infra
from tests.support import fresh_schema
from waveline.services.ingest.pipeline_view import LISTED, pipeline_snapshot
from waveline.shared import retention
from waveline.shared.config import PipelineConfig, Settings
from waveline.shared.errors import ConfigError
from waveline.shared.retention import prune_forever, prune_once
from waveline.shared.retention_store import delete_batch
from waveline.shared.runtime import Runtime

OLD = 40.0  # days: past the default retention of 30
YOUNG = 1.0
SERVICES = ("promoter", "git-writer", "status-tracker", "notifier")
# What the git-writer's pass deletes when one command result is past the retention.
GIT_WRITER_ONE_RESULT = {"git_command_results": 1, "evictions": 0, "set_attempts": 0}

pytestmark = pytest.mark.timeout(60)


def ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def sha() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    async with fresh_schema(infra.database_url) as found:
        yield found


async def prune_all(pool: asyncpg.Pool, settings: Settings) -> dict[str, int]:
    deleted: dict[str, int] = {}
    async with asyncio.timeout(30):
        for service in SERVICES:
            deleted.update(await prune_once(pool, settings, service))
    return deleted


async def count(pool: asyncpg.Pool, table: str, where: str = "true", *args: Any) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *args))  # noqa: S608


# -- rows ---------------------------------------------------------------------------------


async def promotion(
    pool: asyncpg.Pool,
    age: float,
    *,
    status: str = "done",
    wave: str = "staging",
    app_sha: str | None = None,
    from_wave: str | None = None,
) -> uuid.UUID:
    pid = uuid.uuid4()
    await pool.execute(
        "INSERT INTO promotions (promotion_id, pipeline, wave, from_wave, app_sha, kind, status,"
        " created_at, updated_at) VALUES ($1, 'app', $2, $3, $4, 'promote', $5, $6, $6)",
        pid,
        wave,
        from_wave,
        app_sha or sha(),
        status,
        ago(age),
    )
    return pid


async def image_set(pool: asyncpg.Pool, age: float, app_sha: str) -> None:
    await pool.execute(
        "INSERT INTO image_sets (pipeline, app_sha, images, event_id, received_at)"
        " VALUES ('app', $1, '{}', $2, $3)",
        app_sha,
        uuid.uuid4(),
        ago(age),
    )


async def wave_run(pool: asyncpg.Pool, age: float, app_sha: str, wave: str = "staging") -> None:
    await pool.execute(
        "INSERT INTO wave_runs (pipeline, wave, app_sha, cfg_sha, since)"
        " VALUES ('app', $1, $2, $3, $4)",
        wave,
        app_sha,
        sha(),
        ago(age),
    )


async def wave_status(
    pool: asyncpg.Pool, app_sha: str, cfg_sha: str, wave: str = "staging"
) -> None:
    await pool.execute(
        "INSERT INTO wave_status (pipeline, wave, state, app_sha, cfg_sha, since)"
        " VALUES ('app', $1, 'healthy', $2, $3, now())",
        wave,
        app_sha,
        cfg_sha,
    )


async def command_result(pool: asyncpg.Pool, age: float, state: str = "done") -> uuid.UUID:
    cid = uuid.uuid4()
    await pool.execute(
        "INSERT INTO git_command_results (command_id, repo, kind, outcome, state, sha, event,"
        " finished_at) VALUES ($1, 'cfg', 'introduce', 'committed', $2, $3, '{}', $4)",
        cid,
        state,
        sha(),
        ago(age),
    )
    return cid


async def auto_commit(pool: asyncpg.Pool, age: float, state: str, commit: str | None = None) -> str:
    commit = commit or sha()
    await pool.execute(
        "INSERT INTO auto_commits (repo, sha, state, created_at) VALUES ('cfg', $1, $2, $3)",
        commit,
        state,
        ago(age),
    )
    return commit


async def check(pool: asyncpg.Pool, age: float, commit: str, table: str = "commit_checks") -> None:
    await pool.execute(
        f"INSERT INTO {table} (repo, sha, context, state, reported_at)"  # noqa: S608
        " VALUES ('cfg', $1, 'ci/validate', 'success', $2)",
        commit,
        ago(age),
    )


async def commit_waves(pool: asyncpg.Pool, age: float, commit: str | None = None) -> str:
    commit = commit or sha()
    await pool.execute(
        "INSERT INTO commit_waves (repo, sha, waves, recorded_at) VALUES ('cfg', $1, $2, $3)",
        commit,
        json.dumps({"app/staging": sha()}),
        ago(age),
    )
    return commit


async def delivery(
    pool: asyncpg.Pool, age: float, state: str = "delivered", announced: bool = True
) -> uuid.UUID:
    did = uuid.uuid4()
    await pool.execute(
        "INSERT INTO deliveries (delivery_id, kind, target, event_type, source_topic, body,"
        " content_type, state, announced, created_at, updated_at)"
        " VALUES ($1, 'notification', 'notification:ops', 't', 'waveline.waves', '\\x00',"
        " 'application/json', $2, $3, $4, $4)",
        did,
        state,
        announced,
        ago(age),
    )
    for attempt in (1, 2):
        await pool.execute(
            "INSERT INTO delivery_attempts (delivery_id, attempt, latency_ms, outcome, at)"
            " VALUES ($1, $2, 1.0, 'ok', $3)",
            did,
            attempt,
            ago(age),
        )
    return did


async def pull_request(
    pool: asyncpg.Pool, age: float, number: int, state: str = "merged", head: str | None = None
) -> None:
    await pool.execute(
        "INSERT INTO pull_requests (repo, number, branch, base, pipeline, wave, promotion_id,"
        " app_sha, head_sha, url, state, updated_at, event_at)"
        " VALUES ('cfg', $1, 'waveline/app/prod', 'master', 'app', 'prod', $2, $3, $4,"
        " 'https://example.com/pr', $5, $6, $6)",
        number,
        uuid.uuid4(),
        sha(),
        head or sha(),
        state,
        ago(age),
    )


async def watched(pool: asyncpg.Pool, age: float) -> str:
    """A commit Waveline saw watched point at (positions follow insertion order)."""
    commit = sha()
    await pool.execute(
        "INSERT INTO watched_commits (repo, sha, recorded_at) VALUES ('cfg', $1, $2)",
        commit,
        ago(age),
    )
    return commit


async def github_delivery(pool: asyncpg.Pool, age: float) -> str:
    did = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO github_deliveries (delivery_id, received_at) VALUES ($1, $2)", did, ago(age)
    )
    return did


async def ignored_delivery(pool: asyncpg.Pool, age: float) -> str:
    repo = f"someone/{uuid.uuid4()}"
    await pool.execute(
        "INSERT INTO ignored_deliveries (repo, reason, known, event, detail, at)"
        " VALUES ($1, 'unknown_repository', false, 'status', 'not configured', $2)",
        repo,
        ago(age),
    )
    return repo


async def operator_action(pool: asyncpg.Pool, age: float) -> str:
    event_id = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO operator_actions (event_id, pipeline, wave, action, actor, issued_at,"
        " recorded_at) VALUES ($1, 'app', 'staging', 'approve', 'ops', $2, $2)",
        uuid.UUID(event_id),
        ago(age),
    )
    return event_id


# -- what goes, what stays ----------------------------------------------------------------


async def test_rows_past_the_retention_go_and_younger_rows_stay(
    db: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = db
    settings = settings.model_copy(update={"retention_wave_runs": 2})
    old_set, young_set = sha(), sha()
    old_promotion = await promotion(pool, OLD, app_sha=old_set)
    await pool.execute(
        "INSERT INTO approvals (promotion_id, actor) VALUES ($1, 'ops')", old_promotion
    )
    await promotion(pool, YOUNG, app_sha=young_set)
    await image_set(pool, OLD, old_set)  # named only by the old promotion: goes with it
    await image_set(pool, YOUNG, young_set)
    for age in (OLD + 2, OLD + 1, OLD, YOUNG, YOUNG / 2):
        await wave_run(pool, age, sha())
    old_result, young_result = await command_result(pool, OLD), await command_result(pool, YOUNG)
    old_commit = await auto_commit(pool, OLD, "green")
    young_commit = await auto_commit(pool, YOUNG, "green")
    await check(pool, OLD, old_commit)
    await check(pool, YOUNG, young_commit)
    await commit_waves(pool, OLD)
    await commit_waves(pool, YOUNG)
    old_delivery, young_delivery = await delivery(pool, OLD), await delivery(pool, YOUNG)
    await pull_request(pool, OLD, 1)
    await pull_request(pool, YOUNG, 2)
    await check(pool, OLD, sha(), "pull_request_checks")
    await check(pool, YOUNG, sha(), "pull_request_checks")
    # Watched commits: an old one nothing reports goes; one a target reports stays, and so
    # does each repo's newest, whatever their age.
    old_watched, reported_watched = await watched(pool, OLD + 1), await watched(pool, OLD)
    await pool.execute(
        "INSERT INTO target_deploys (target, revision, phase, health, sync, reported_at,"
        " position) VALUES ('staging-us', $1, '', 'Healthy', 'Synced', now(), 1)",
        reported_watched,
    )
    newest_watched = await watched(pool, OLD)
    old_hook, young_hook = await github_delivery(pool, OLD), await github_delivery(pool, YOUNG)
    old_action, young_action = await operator_action(pool, OLD), await operator_action(pool, YOUNG)
    old_ignored = await ignored_delivery(pool, OLD)
    young_ignored = await ignored_delivery(pool, YOUNG)
    # DORA: staging's two old statuses go (a newer one says what it runs); internal's only
    # status stays, however old. An old app commit time goes with its set, not before.
    for wave, age in (
        ("staging", OLD + 1),
        ("staging", OLD),
        ("staging", YOUNG),
        ("internal", OLD),
    ):
        await pool.execute(
            "INSERT INTO dora_wave_history (event_id, pipeline, wave, state, app_sha, at)"
            " VALUES ($1, 'app', $2, 'running', $3, $4)",
            uuid.uuid4(),
            wave,
            sha(),
            ago(age),
        )
    for app_sha in (old_set, young_set):
        await pool.execute(
            "INSERT INTO dora_app_commits (pipeline, app_sha, committed_at) VALUES ('app', $1, $2)",
            app_sha,
            ago(OLD),
        )

    deleted = await prune_all(pool, settings)

    assert deleted == {
        "promotions": 1,
        "wave_runs": 3,
        "image_sets": 1,
        "git_command_results": 1,
        "auto_commits": 1,
        "commit_checks": 1,
        "commit_waves": 1,
        "watched_commits": 1,
        "github_deliveries": 1,
        "ignored_deliveries": 1,
        "operator_actions": 1,
        "dora_wave_history": 2,
        "dora_app_commits": 1,
        "verification_runs": 0,
        "evictions": 0,
        "set_attempts": 0,
        "deliveries": 1,
        "pull_requests": 1,
        "pull_request_checks": 1,
    }
    assert await count(pool, "promotions") == 1
    assert await count(pool, "approvals") == 0
    assert await count(pool, "image_sets", "app_sha = $1", young_set) == 1
    assert await count(pool, "wave_runs", "since > now() - interval '2 days'") == 2
    assert await count(pool, "wave_runs") == 2
    assert await count(pool, "git_command_results", "command_id = $1", young_result) == 1
    assert await count(pool, "git_command_results", "command_id = $1", old_result) == 0
    assert await count(pool, "auto_commits", "sha = $1", young_commit) == 1
    assert await count(pool, "commit_checks", "sha = $1", young_commit) == 1
    assert await count(pool, "commit_waves") == 1
    assert await count(pool, "deliveries", "delivery_id = $1", young_delivery) == 1
    assert await count(pool, "delivery_attempts", "delivery_id = $1", old_delivery) == 0
    assert await count(pool, "delivery_attempts", "delivery_id = $1", young_delivery) == 2
    assert await count(pool, "pull_requests", "number = 2") == 1
    assert await count(pool, "pull_request_checks") == 1
    assert await count(pool, "watched_commits", "sha = $1", old_watched) == 0
    assert await count(pool, "watched_commits") == 2
    assert await count(pool, "watched_commits", "sha = $1", newest_watched) == 1
    assert await count(pool, "github_deliveries", "delivery_id = $1", old_hook) == 0
    assert await count(pool, "github_deliveries", "delivery_id = $1", young_hook) == 1
    assert await count(pool, "ignored_deliveries", "repo = $1", old_ignored) == 0
    assert await count(pool, "ignored_deliveries", "repo = $1", young_ignored) == 1
    assert await count(pool, "operator_actions", "event_id = $1::uuid", old_action) == 0
    assert await count(pool, "operator_actions", "event_id = $1::uuid", young_action) == 1
    assert await count(pool, "dora_wave_history", "wave = 'internal'") == 1
    assert await count(pool, "dora_wave_history", "wave = 'staging'") == 1
    assert await count(pool, "dora_app_commits", "app_sha = $1", young_set) == 1
    # A second pass finds nothing more.
    assert set((await prune_all(pool, settings)).values()) == {0}


async def test_evictions_attempts_and_verification_runs_nothing_reads_go(
    db: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = db
    for age in (OLD, YOUNG):
        app_sha = sha()
        await pool.execute(
            "INSERT INTO evictions (repo, sha, pipeline, app_sha, wave, attempt, evicted_at)"
            " VALUES ('cfg-app', $1, 'app', $2, 'staging', 1, $3)",
            sha(),
            app_sha,
            ago(age),
        )
        await pool.execute(
            "INSERT INTO set_attempts (pipeline, app_sha, attempt, command_id, source,"
            " requested_at) VALUES ('app', $1, 2, $2, 'retry', $3)",
            app_sha,
            uuid.uuid4(),
            ago(age),
        )
    running_now = sha()
    await pool.execute(
        "INSERT INTO wave_status (pipeline, wave, state, app_sha, cfg_sha, since)"
        " VALUES ('app', 'staging', 'running', $1, $2, now())",
        running_now,
        sha(),
    )
    runs = {
        "gone": ("passed", True, sha()),
        "cancelled": ("cancelled", False, sha()),
        "running": ("running", False, sha()),
        "not acted on": ("failed", False, sha()),
        "what staging runs": ("passed", True, running_now),
    }
    for name, (status, handled, app_sha) in runs.items():
        await pool.execute(
            "INSERT INTO verification_runs (pipeline, wave, app_sha, name, kind, status,"
            " handled, next_at, started_at) VALUES ('app', 'staging', $1, $2, 'http', $3, $4,"
            " now(), $5)",
            app_sha,
            name,
            status,
            handled,
            ago(OLD),
        )

    deleted = await prune_all(pool, settings)

    assert (deleted["evictions"], deleted["set_attempts"], deleted["verification_runs"]) == (
        1,
        1,
        2,
    )
    assert await count(pool, "evictions", "evicted_at > now() - interval '2 days'") == 1
    assert await count(pool, "set_attempts", "requested_at > now() - interval '2 days'") == 1
    kept = {r["name"] for r in await pool.fetch("SELECT name FROM verification_runs")}
    assert kept == {"running", "not acted on", "what staging runs"}


async def test_promotions_the_gates_and_the_pipeline_view_read_stay(
    db: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = db
    waiting = await promotion(pool, OLD + 5, status="waiting", wave="internal")
    blocked = await promotion(pool, OLD + 4, status="blocked", wave="internal")
    # Unfinished, and nothing later into its wave is done: it may still complete.
    requested = await promotion(pool, OLD + 3, status="requested", wave="production")
    await promotion(pool, OLD + 2, status="failed", wave="production")
    await promotion(pool, OLD + 1, status="failed", wave="production")
    # Unfinished, but a later promotion into its wave is done: the wave moved past it.
    overtaken = await promotion(pool, OLD + 3, status="requested", wave="staging")
    await promotion(pool, OLD + 2, status="done", wave="staging")
    # The newest promotion into a wave stays, whatever its state and age.
    newest = await promotion(pool, OLD, status="done", wave="staging")
    await promotion(pool, OLD, status="waiting", wave="internal")

    deleted = await prune_once(pool, settings, "promoter")

    kept = {r["promotion_id"] for r in await pool.fetch("SELECT promotion_id FROM promotions")}
    assert {waiting, blocked, requested, newest} <= kept
    assert overtaken not in kept
    # Besides the overtaken one, the finished ones that are not their wave's newest went.
    assert deleted["promotions"] == 3
    assert len(kept) == 6


async def test_each_wave_keeps_its_rollback_targets_and_what_it_runs(
    db: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = db
    settings = settings.model_copy(update={"retention_wave_runs": 3})
    runs = [sha() for _ in range(8)]
    for i, app_sha in enumerate(runs):  # runs[0] is the oldest
        await wave_run(pool, OLD + 8 - i, app_sha)
    await wave_run(pool, OLD + 20, sha(), wave="internal")  # its wave's only run
    # The wave runs an old set again (after a rollback, say); a waiting promotion leaves
    # from another old run.
    await wave_status(pool, runs[0], sha())
    await promotion(
        pool, YOUNG, status="waiting", wave="internal", app_sha=runs[1], from_wave="staging"
    )

    deleted = await prune_once(pool, settings, "promoter")

    left = {
        r["app_sha"]
        for r in await pool.fetch("SELECT app_sha FROM wave_runs WHERE wave = 'staging'")
    }
    assert left == {runs[0], runs[1], *runs[-3:]}
    assert await count(pool, "wave_runs", "wave = 'internal'") == 1
    assert deleted["wave_runs"] == 3
    # 'previous' is still there to roll back to: the second newest run.
    previous = await pool.fetchval(
        "SELECT app_sha FROM wave_runs WHERE pipeline = 'app' AND wave = 'staging'"
        " ORDER BY since DESC OFFSET 1 LIMIT 1"
    )
    assert previous == runs[-2]


async def test_image_sets_named_by_a_promotion_a_run_or_a_wave_stay(
    db: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = db
    by_promotion, by_run, by_wave, unnamed = sha(), sha(), sha(), sha()
    for app_sha in (by_promotion, by_run, by_wave, unnamed):
        await image_set(pool, OLD, app_sha)
    await promotion(pool, YOUNG, status="requested", app_sha=by_promotion)
    await wave_run(pool, YOUNG, by_run, wave="internal")
    await wave_status(pool, by_wave, sha(), wave="production")

    deleted = await prune_once(pool, settings, "promoter")

    left = {r["app_sha"] for r in await pool.fetch("SELECT app_sha FROM image_sets")}
    assert left == {by_promotion, by_run, by_wave}
    assert deleted["image_sets"] == 1


async def test_command_results_still_pushing_stay(db: tuple[Settings, asyncpg.Pool]) -> None:
    settings, pool = db
    pushing = await command_result(pool, OLD, state="pushing")
    await command_result(pool, OLD)

    assert await prune_once(pool, settings, "git-writer") == GIT_WRITER_ONE_RESULT
    assert await count(pool, "git_command_results", "command_id = $1", pushing) == 1


async def test_commits_pending_on_auto_and_their_checks_stay(
    db: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = db
    pending = await auto_commit(pool, OLD, "pending")
    await check(pool, OLD, pending)
    await auto_commit(pool, OLD - 1, "red")  # later, but evicted: pending is still on auto
    replaced = await auto_commit(pool, OLD, "replaced")
    await check(pool, OLD, replaced)
    # Pending, but a later commit of the repo was green: it is on the watched branch.
    overtaken = await auto_commit(pool, OLD + 2, "pending")
    await check(pool, OLD + 2, overtaken)
    await auto_commit(pool, OLD + 1, "green")

    deleted = await prune_once(pool, settings, "status-tracker")

    left = {r["sha"] for r in await pool.fetch("SELECT sha FROM auto_commits")}
    assert left == {pending}
    assert {r["sha"] for r in await pool.fetch("SELECT sha FROM commit_checks")} == {pending}
    assert deleted["auto_commits"] == 4
    assert deleted["commit_checks"] == 2


async def test_commit_waves_a_wave_may_still_read_stay(db: tuple[Settings, asyncpg.Pool]) -> None:
    settings, pool = db
    deployed = await commit_waves(pool, OLD + 6)
    await pool.execute(
        "INSERT INTO target_deploys (target, revision, phase, health, sync, reported_at)"
        " VALUES ('staging-us', $1, 'Succeeded', 'Healthy', 'Synced', now())",
        deployed,
    )
    running = await commit_waves(pool, OLD + 5)
    await wave_status(pool, sha(), running)
    rollback_target = await commit_waves(pool, OLD + 4)
    await pool.execute(
        "INSERT INTO wave_runs (pipeline, wave, app_sha, cfg_sha, since)"
        " VALUES ('app', 'internal', $1, $2, now())",
        sha(),
        rollback_target,
    )
    pending = await commit_waves(pool, OLD + 3, await auto_commit(pool, OLD + 3, "pending"))
    forgotten = await commit_waves(pool, OLD + 2)
    newest = await commit_waves(pool, OLD + 1)  # the repo's newest, however old

    deleted = await prune_once(pool, settings, "status-tracker")

    left = {r["sha"] for r in await pool.fetch("SELECT sha FROM commit_waves")}
    assert left == {deployed, running, rollback_target, pending, newest}
    assert forgotten not in left
    assert deleted["commit_waves"] == 1


async def test_deliveries_not_finished_or_not_announced_stay(
    db: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = db
    pending = await delivery(pool, OLD, state="pending", announced=False)
    unannounced = await delivery(pool, OLD, state="failed", announced=False)
    await delivery(pool, OLD, state="failed", announced=True)

    deleted = await prune_once(pool, settings, "notifier")

    left = {r["delivery_id"] for r in await pool.fetch("SELECT delivery_id FROM deliveries")}
    assert left == {pending, unannounced}
    assert await count(pool, "delivery_attempts") == 4
    assert deleted["deliveries"] == 1


async def test_open_pull_requests_their_checks_and_the_newest_per_branch_stay(
    db: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = db
    head = sha()
    await pull_request(pool, OLD + 3, 1, state="open", head=head)
    await check(pool, OLD, head, "pull_request_checks")
    await check(pool, OLD, sha(), "pull_request_checks")
    await pull_request(pool, OLD + 2, 2, state="closed")
    await pull_request(pool, OLD + 1, 3, state="merged")  # the branch's newest

    deleted = await prune_once(pool, settings, "notifier")

    assert {r["number"] for r in await pool.fetch("SELECT number FROM pull_requests")} == {1, 3}
    assert {r["sha"] for r in await pool.fetch("SELECT sha FROM pull_request_checks")} == {head}
    assert deleted["pull_requests"] == 1
    assert deleted["pull_request_checks"] == 1


# -- settings, batches, locks, the loop ---------------------------------------------------


async def test_no_row_goes_before_the_redelivery_floor(db: tuple[Settings, asyncpg.Pool]) -> None:
    settings, pool = db
    settings = settings.model_copy(
        update={
            "retention_days": 1.0,
            "retention_days_by_table": {"deliveries": 2.0},
            "retention_redelivery_days": 7.0,
        }
    )
    inside_floor = await command_result(pool, 5)
    await command_result(pool, 8)
    await delivery(pool, 5)
    await delivery(pool, 8)

    assert await prune_once(pool, settings, "git-writer") == GIT_WRITER_ONE_RESULT
    assert await count(pool, "git_command_results", "command_id = $1", inside_floor) == 1
    assert (await prune_once(pool, settings, "notifier"))["deliveries"] == 1

    # Below the floor (a dev stack whose topics keep records shortly), the table's own
    # retention applies.
    short = settings.model_copy(update={"retention_redelivery_days": 0.0})
    assert await prune_once(pool, short, "git-writer") == GIT_WRITER_ONE_RESULT
    assert (await prune_once(pool, short, "notifier"))["deliveries"] == 1


async def test_an_unknown_table_is_a_config_error(db: tuple[Settings, asyncpg.Pool]) -> None:
    settings, pool = db
    wrong = settings.model_copy(update={"retention_days_by_table": {"promotion": 3.0}})
    with pytest.raises(ConfigError, match="promotion"):
        await prune_once(pool, wrong, "promoter")
    with pytest.raises(ValueError, match="greater than zero"):
        Settings(retention_days_by_table={"promotions": 0})


async def test_a_big_backlog_goes_in_batches(
    db: tuple[Settings, asyncpg.Pool], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, pool = db
    await pool.execute(
        "INSERT INTO git_command_results (command_id, repo, kind, outcome, state, sha, event,"
        " finished_at) SELECT gen_random_uuid(), 'cfg', 'introduce', 'committed', 'done', 'x',"
        " '{}', now() - interval '40 days' FROM generate_series(1, 25000)"
    )
    await command_result(pool, YOUNG)
    batches: list[int] = []

    async def spy(*args: Any) -> int:
        batches.append(await delete_batch(*args))
        return batches[-1]

    monkeypatch.setattr(retention, "delete_batch", spy)
    assert settings.retention_batch_rows == 10_000

    assert await prune_once(pool, settings, "git-writer") == {
        **GIT_WRITER_ONE_RESULT,
        "git_command_results": 25_000,
    }
    assert batches == [10_000, 10_000, 5_000, 0, 0]  # then one empty batch per other table
    assert await count(pool, "git_command_results") == 1


async def test_a_dry_run_counts_and_deletes_nothing(db: tuple[Settings, asyncpg.Pool]) -> None:
    settings, pool = db
    await command_result(pool, OLD)
    await command_result(pool, OLD)
    await command_result(pool, YOUNG)

    assert await prune_once(pool, settings, "git-writer", dry_run=True) == {
        **GIT_WRITER_ONE_RESULT,
        "git_command_results": 2,
    }
    assert await count(pool, "git_command_results") == 3


async def test_a_row_a_service_holds_locked_is_skipped_not_waited_for(
    db: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = db
    held = await command_result(pool, OLD)
    await command_result(pool, OLD)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT 1 FROM git_command_results WHERE command_id = $1 FOR UPDATE", held
        )
        async with asyncio.timeout(5):
            assert await prune_once(pool, settings, "git-writer") == GIT_WRITER_ONE_RESULT
    assert await prune_once(pool, settings, "git-writer") == GIT_WRITER_ONE_RESULT


def stand_in(service: str, settings: Settings, pool: asyncpg.Pool) -> Runtime:
    """What prune_forever uses of a runtime: its service, settings and pool."""
    return cast(Runtime, SimpleNamespace(service=service, settings=settings, pool=pool))


async def test_prune_forever_prunes_soon_after_start_and_on_every_interval(
    db: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = db
    await command_result(pool, OLD)
    task = asyncio.create_task(prune_forever(stand_in("git-writer", settings, pool), 0.1))

    async def emptied() -> None:
        while await count(pool, "git_command_results"):  # noqa: ASYNC110 (polls the table)
            await asyncio.sleep(0.05)

    try:
        async with asyncio.timeout(10):
            await emptied()
            await command_result(pool, OLD)  # a later pass takes this one too
            await emptied()
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_prune_forever_ends_at_once_without_tables_or_with_a_bad_setting(
    db: tuple[Settings, asyncpg.Pool], caplog: pytest.LogCaptureFixture
) -> None:
    settings, pool = db
    wrong = settings.model_copy(update={"retention_days_by_table": {"nope": 1.0}})
    async with asyncio.timeout(2):
        await prune_forever(stand_in("ingest", settings, pool), 3600)
        await prune_forever(stand_in("promoter", wrong, pool), 3600)
    assert "retention disabled" in caplog.text


async def test_the_pipeline_view_lists_a_bounded_number_of_unfinished_items(
    db: tuple[Settings, asyncpg.Pool],
) -> None:
    """Overtaken promotions and commits without checks of their own stay unfinished until
    retention prunes them; the pipeline view lists the newest LISTED of each, and every
    promotion a gate holds."""
    _, pool = db
    pipeline = PipelineConfig.model_validate(
        {
            "repo": "cfg",
            "waves": [
                {"name": "staging", "targets": ["s"]},
                {"name": "internal", "targets": ["i"]},
            ],
        }
    )
    gated = sha()
    await wave_run(pool, YOUNG, gated)  # what the gate's bake time counts from
    waiting = await promotion(
        pool, YOUNG + 1, status="waiting", wave="internal", app_sha=gated, from_wave="staging"
    )
    await pool.execute(
        "INSERT INTO promotions (promotion_id, pipeline, wave, app_sha, kind, status, created_at,"
        " updated_at) SELECT gen_random_uuid(), 'app', w, md5(w || i::text), 'introduce',"
        " 'requested', now() - i * interval '1 second', now()"
        " FROM generate_series(1, 300) i, unnest(ARRAY['staging', 'internal']) w"
    )
    await pool.execute(
        "INSERT INTO auto_commits (repo, sha, state, created_at) SELECT 'cfg', md5(i::text),"
        " 'pending', now() - i * interval '1 second' FROM generate_series(1, 300) i"
    )

    async with asyncio.timeout(10):
        view = await pipeline_snapshot(pool, "app", pipeline)

    staging, internal = view["waves"]
    assert len(staging["promotions"]) == LISTED
    assert len(internal["promotions"]) == LISTED + 1
    assert internal["promotions"][0]["promotion_id"] == str(waiting)  # oldest first
    assert "bake_remaining_s" in internal["gate"]
    assert len(view["pending_commits"]) == LISTED
    newest = await pool.fetchval("SELECT sha FROM auto_commits ORDER BY created_at DESC LIMIT 1")
    assert view["pending_commits"][-1]["sha"] == newest

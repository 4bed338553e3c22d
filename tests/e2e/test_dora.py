"""DORA numbers of a scripted history run through the real services (real Kafka, Postgres and
a git remote), as computed by hand, live (PostgreSQL) and rebuilt from git and the topics,
and on the promoter's ``/metrics`` (docs/dora.md).

The history, on a two-wave pipeline (staging → production, no gate):
A (its app commit an hour old) reaches staging, then production; B's commit is evicted (red
check); staging degrades on A and recovers; C reaches staging and staging is rolled back to A.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest

from tests.conftest import CI_TOKEN
from tests.e2e.test_waves import Api, head
from tests.support import image_set, running
from waveline.cli import dora as cli_dora
from waveline.cli.trace import collect
from waveline.services.ingest.app import create_app
from waveline.shared import dora_git, dora_store
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.dora import Announced, Durations, Fact, PipelineDora, WaveRan, compute
from waveline.shared.dora_view import pipeline_dora

pytestmark = pytest.mark.e2e

A = "a" * 40
B = "b" * 40
C = "c" * 40
WAVES = {"app": ["staging", "production"]}


def two_waves(url: str) -> dict[str, Any]:
    return {
        "repos": {
            "cfg-app": {
                "url": url,
                "author": {"name": "waveline", "email": "waveline@example.com"},
                "required_checks": ["ci/validate"],
            }
        },
        "pipelines": {
            "app": {
                "repo": "cfg-app",
                "layout": {"kind": "images-json", "path": "images/{wave}"},
                "waves": [
                    {"name": "staging", "targets": ["staging-us"]},
                    {"name": "production", "targets": ["prod-us"]},
                ],
            }
        },
    }


async def announce(client: TestClient, app_sha: str, committed_at: datetime | None) -> None:  # type: ignore[type-arg]
    body = image_set(app_sha)
    if committed_at is not None:
        body["app_committed_at"] = committed_at.isoformat()
    resp = await client.post(
        "/v1/images", json=body, headers={"Authorization": f"Bearer {CI_TOKEN}"}
    )
    assert resp.status == 202, await resp.text()


def counts(n: PipelineDora) -> tuple[object, ...]:
    """Everything but the durations, which may differ by the git commit time's second."""
    return (
        n.deployments,
        n.all_deployments,
        n.failed_changes,
        n.change_failure_rate,
        n.open_failures,
        n.failures_by_kind,
        n.lead_time.count,
        n.time_to_restore.count,
        [(w.wave, w.deployments, w.failed_changes, w.time_to_restore.count) for w in n.waves],
    )


def close(a: Durations, b: Durations, tolerance_s: float = 3.0) -> bool:
    pairs = [(a.median_s, b.median_s), (a.p90_s, b.p90_s)]
    return a.count == b.count and all(
        (x is None and y is None) or (x is not None and y is not None and abs(x - y) <= tolerance_s)
        for x, y in pairs
    )


@pytest.mark.timeout(150)
async def test_dora_live_and_from_git_agree_with_the_hand_computed_numbers(
    settings: Settings, secrets: Secrets, remote: Path, tmp_path: Path
) -> None:
    doc = two_waves(remote.as_uri())
    config = WavelineConfig.model_validate(doc)
    config_file = tmp_path / "waveline.yaml"
    config_file.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    since = datetime.now(UTC) - timedelta(minutes=1)
    committed_at = since - timedelta(hours=1)
    names = ["ingest", "git-writer", "status-tracker", "promoter"]
    async with (
        running(names, settings, config, secrets) as rts,
        TestClient(TestServer(create_app(rts["ingest"]))) as client,
    ):
        api = Api(client, remote)
        # An app commit time without an offset is refused: nothing guesses a time zone.
        naive = {**image_set(A), "app_committed_at": "2026-12-01T10:00:00"}
        resp = await client.post(
            "/v1/images", json=naive, headers={"Authorization": f"Bearer {CI_TOKEN}"}
        )
        assert resp.status == 422, await resp.text()
        assert (await resp.json())["error"] == "invalid_field"
        # A: staging, then production.
        await announce(client, A, committed_at)
        a1 = await api.wait_auto(2, "A into staging")
        await api.status(a1, "success")
        await api.wait_master(a1)
        await api.deployed("staging-us", a1)
        a2 = await api.wait_auto(3, "A into production")
        await api.status(a2, "success")
        await api.wait_master(a2)
        await api.deployed("prod-us", a2)
        await api.wait_state(lambda d: d["waves"][1]["app_sha"] == A, "production runs A")
        # B: evicted.
        await announce(client, B, None)
        b1 = await api.wait_auto(4, "B into staging")
        await api.status(b1, "failure")
        await api.wait_for_auto(lambda log: b1 not in {str(c.id) for c in log}, "B evicted")
        # Staging degrades on A and recovers.
        await api.deployed("staging-us", a1, health="Degraded")
        await api.wait_state(lambda d: d["waves"][0]["state"] == "failing", "staging failing")
        await api.deployed("staging-us", a1)
        await api.wait_state(lambda d: d["waves"][0]["state"] == "running", "staging recovered")
        # Git's commit times have whole seconds: the rebuilt history orders a commit after
        # the statuses before it only if it is made in a later second (a CI run rebuilt one
        # restore fewer than the live numbers; same-second events are the likely cause).
        await asyncio.sleep(1.1)
        # C reaches staging; staging is rolled back to A.
        # C through the bare route, its commit time in the query.
        resp = await client.post(
            "/v1/pipelines/app/images",
            params={"app_sha": C, "app_committed_at": committed_at.isoformat()},
            json=image_set(C)["images"],
            headers={"Authorization": f"Bearer {CI_TOKEN}"},
        )
        assert resp.status == 202, await resp.text()
        await api.wait_for_auto(
            lambda log: api.auto_head_info().get("Autocommit-App-SHA") == C, "C into staging"
        )
        c1 = head(remote, "auto")
        await api.status(c1, "success")
        await api.wait_master(c1)
        await api.deployed("staging-us", c1)
        await api.wait_state(lambda d: d["waves"][0]["app_sha"] == C, "staging runs C")
        await asyncio.sleep(1.1)  # the rollback's commit in a later second (above)
        await api.operator("staging", "rollback", {"to": "previous"})
        await api.wait_for_auto(
            lambda log: (api.auto_head_info().get("Autocommit-Reason") or "").startswith(
                "rollback"
            ),
            "the rollback commit",
        )
        r = head(remote, "auto")
        await api.status(r, "success")
        await api.wait_master(r)
        await api.deployed("staging-us", r)
        await api.wait_state(
            lambda d: d["waves"][0]["app_sha"] == A and d["waves"][0]["cfg_commit"] == r,
            "staging runs A again",
        )
        pool = rts["promoter"].pool
        # The feed stores the wave history in its own consumer group: wait for the last run.
        live: list[Fact] = []
        async with asyncio.timeout(20):
            while sum(isinstance(f, WaveRan) for f in live) < 5:
                await asyncio.sleep(0.2)
                live = await dora_store.load_facts(pool, ["app"])
        sent = {f.app_sha: f.committed_at for f in live if isinstance(f, Announced)}
        assert sent == {A: committed_at, B: None, C: committed_at}
        until = datetime.now(UTC) + timedelta(seconds=1)
        [numbers] = compute(live, WAVES, since, until)
        # What the dashboard calls: the same numbers, as JSON.
        view = await pipeline_dora(
            pool, config, "app", days=(until - since).total_seconds() / 86400, now=until
        )
        # /metrics: the first scrape starts the computation, a later one shows it.
        registry = rts["promoter"].waits.registry
        generate_latest(registry)
        async with asyncio.timeout(10):
            while b'waveline_dora_deployments{pipeline="app",wave="staging"} 3.0' not in (  # noqa: ASYNC110
                generate_latest(registry)
            ):
                await asyncio.sleep(0.2)
        scraped = generate_latest(registry).decode()
    # By hand: staging ran A, C, then A again (the recovery on A is no deployment), and failed
    # three changes (B evicted, A degraded, C rolled back), restored twice; production ran A.
    staging, production = numbers.waves
    assert (staging.deployments, staging.failed_changes, staging.change_failure_rate) == (3, 3, 1.0)
    assert (staging.time_to_restore.count, staging.open_failures) == (2, 0)
    assert (production.deployments, production.failed_changes) == (1, 0)
    assert (numbers.deployments, numbers.all_deployments, numbers.failed_changes) == (1, 4, 3)
    assert numbers.change_failure_rate == 0.75
    assert numbers.failures_by_kind == {"evicted": 1, "failed": 1, "rollback": 1}
    # Lead time from the app commit CI sent (an hour before the window) to production.
    assert numbers.lead_time.count == 1
    assert numbers.lead_time.median_s is not None
    assert 3600 + 60 <= numbers.lead_time.median_s <= 3600 + 60 + 150
    assert 'waveline_dora_change_failure_rate{pipeline="app"} 0.75' in scraped
    assert view is not None
    # (the window's start may differ by a microsecond: days are a float)
    assert {**view, "since": None} == {**numbers.to_json(), "since": None}
    assert 'waveline_dora_failures{kind="evicted",pipeline="app"} 1.0' in scraped

    # Rebuilt from the remote's trailers and the topics: the same numbers.
    observed = await collect(settings, datetime(1970, 1, 1, tzinfo=UTC))
    rebuilt_facts = dora_git.rebuild(
        {"cfg-app": remote}, {"cfg-app": ("master", "auto")}, {"app": "cfg-app"}, observed
    )
    [rebuilt] = compute(rebuilt_facts, WAVES, since, until)
    assert counts(rebuilt) == counts(numbers)
    assert close(rebuilt.lead_time, numbers.lead_time)
    assert close(rebuilt.time_to_restore, numbers.time_to_restore)
    for a, b in zip(rebuilt.waves, numbers.waves, strict=True):
        assert close(a.time_to_restore, b.time_to_restore)

    # ``waveline dora`` reads the same, live and --from-git (the remote as the clone).
    cli_settings = settings.model_copy(update={"config": config_file})
    window = since.isoformat()
    [cli_live] = await asyncio.to_thread(
        cli_dora.numbers, cli_settings, "app", window, from_git=False, now=until
    )
    [cli_git] = await asyncio.to_thread(
        cli_dora.numbers, cli_settings, "app", window, from_git=True, git_dir=remote, now=until
    )
    assert counts(cli_live) == counts(cli_git) == counts(numbers)
    assert close(cli_git.time_to_restore, numbers.time_to_restore)

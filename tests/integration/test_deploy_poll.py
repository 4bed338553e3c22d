"""A poll of deploy reports handled together ends where handling them one at a time ends,
on PostgreSQL: the same WaveStatus messages (states, event ids, lagging targets), the same
rows (counted, held, wave states) and the same counts of held and ignored reports. The poll
spans several waves of several pipelines, with several reports per target, a quorum wave,
a failing wave, held, stale and unknown-target reports."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tests.infra import Infra
from tests.support import isolated_settings
from waveline.services.status_tracker import store
from waveline.services.status_tracker.service import StatusTracker
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.models.deploys import DeployReported
from waveline.shared.models.waves import WaveStatus
from waveline.shared.runtime import Runtime, bootstrap

pytestmark = pytest.mark.timeout(90)

REPO = "cfg-app"
C1, C2, C3, UNKNOWN = ("c1" * 20, "c2" * 20, "c3" * 20, "99" * 20)
X, Y, Z = "a" * 40, "b" * 40, "d" * 40
PIPELINES = ("p0", "p1", "p2")
T0 = datetime(2026, 12, 7, tzinfo=UTC)


def fleet_config(url: str) -> WavelineConfig:
    return WavelineConfig.model_validate(
        {
            "repos": {REPO: {"url": url, "author": {"name": "waveline", "email": "w@example.com"}}},
            "pipelines": {
                p: {
                    "repo": REPO,
                    "layout": {"kind": "images-json", "path": f"{p}/{{wave}}"},
                    "waves": [
                        {
                            "name": "staging",
                            "targets": [f"{p}-s-{i}" for i in range(3)],
                            # p0's staging runs a set once two of its three targets do.
                            **({"min_healthy": 2} if p == "p0" else {}),
                        },
                        {"name": "production", "targets": [f"{p}-p-{i}" for i in range(2)]},
                    ],
                }
                for p in PIPELINES
            },
        }
    )


def report(
    n: int, target: str, revision: str, health: str = "Healthy", **kw: str
) -> DeployReported:
    return DeployReported(
        event_id=uuid.uuid4(),
        app=target,
        revision=revision,
        phase=kw.get("phase", "Succeeded"),
        health=health,
        sync=kw.get("sync", "Synced"),
        reported_at=T0 + timedelta(seconds=n),
    )


# p0's staging runs X on all three targets before the poll.
BEFORE = [report(i, f"p0-s-{i}", C1) for i in range(3)]
POLL = [
    # p0 staging: one target falls out of sync; a quorum still runs X, lagging changes.
    report(10, "p0-s-2", C1, sync="OutOfSync"),
    # p0 production: a degraded target fails the wave, whatever the other one says.
    report(11, "p0-p-0", C1, health="Degraded"),
    report(12, "p0-p-1", C1),
    report(13, "p0-p-1", C1, health="Progressing"),
    # p1 staging: a stale report (earlier revision), a held one, then all on C2.
    report(14, "p1-s-0", C2),
    report(15, "p1-s-0", C1),
    report(16, "p1-s-1", UNKNOWN),
    report(17, "p1-s-1", C2),
    report(18, "p1-s-2", C2),
    # p2 staging: every target twice on C3; production on two different sets.
    *(report(20 + i, f"p2-s-{i % 3}", C3) for i in range(6)),
    report(30, "p2-p-0", C3),
    report(31, "p2-p-1", C2),
    report(32, "nobody", C3),  # no wave lists it
    report(33, "p2-p-0", UNKNOWN),  # held: unknown, and not earlier than C3 for all we know
]


@contextlib.asynccontextmanager
async def tracker(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> AsyncIterator[tuple[StatusTracker, list[WaveStatus]]]:
    """A status-tracker on ``settings``' schema, its watched branch C1, C2, C3 (each wave
    holds X, Y, then Z at C3), and the wave statuses it publishes."""
    runtime = bootstrap("status-tracker", settings, config, secrets)
    await runtime.start()
    published: list[WaveStatus] = []
    publish = runtime.publish

    async def spy(message: BaseModel, topic: str, *, key: str) -> None:
        if isinstance(message, WaveStatus):
            published.append(message)
        await publish(message, topic, key=key)

    runtime.publish = spy  # type: ignore[method-assign]
    try:
        async with runtime.pool.acquire() as conn:
            await store.record_watched(conn, [(REPO, C1), (REPO, C2), (REPO, C3)])
            for sha, app in ((C1, X), (C2, Y), (C3, Z)):
                holds = {f"{p}/{w}": app for p in PIPELINES for w in ("staging", "production")}
                await conn.execute(
                    "INSERT INTO commit_waves (repo, sha, waves) VALUES ($1, $2, $3::jsonb)",
                    REPO,
                    sha,
                    json.dumps(holds),
                )
        yield StatusTracker(runtime), published
    finally:
        await runtime.stop()


async def rows(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    queries = {
        "target_deploys": "SELECT target, revision, health, sync, reported_at, position"
        " FROM target_deploys ORDER BY target",
        "held_deploys": "SELECT target, revision, reported_at FROM held_deploys ORDER BY 1, 2",
        "wave_status": "SELECT pipeline, wave, state, app_sha, cfg_sha, lagging"
        " FROM wave_status ORDER BY 1, 2",
    }
    return {t: [tuple(r) for r in await runtime.pool.fetch(q)] for t, q in queries.items()}


def counts(tracker: StatusTracker) -> dict[str, float]:
    registry = tracker.runtime.waits.registry
    names = {
        "held": ("waveline_deploy_reports_held_total", {}),
        **{
            reason: ("waveline_deploy_reports_ignored_total", {"reason": reason})
            for reason in ("stale", "unknown_target", "not_on_watched")
        },
    }
    return {k: registry.get_sample_value(n, labels) or 0.0 for k, (n, labels) in names.items()}


def by_wave(published: Sequence[WaveStatus]) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    waves: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for s in published:
        waves.setdefault((s.pipeline, s.wave), []).append(
            (s.event_id, s.state, s.app_sha, s.cfg_sha, s.cfg_position, s.lagging, s.reason)
        )
    return waves


async def test_a_poll_publishes_what_one_by_one_would(
    infra: Infra, settings: Settings, secrets: Secrets, remote: Path, tmp_path: Path
) -> None:
    config = fleet_config(remote.as_uri())
    async with (
        isolated_settings(infra.bootstrap, infra.database_url, tmp_path / "b") as other,
        tracker(settings, config, secrets) as (single, single_out),
        tracker(other, config, secrets) as (polled, polled_out),
    ):
        for t in [*(f"{p}-{w}-{i}" for p in PIPELINES for w in "sp" for i in range(3)), "x"]:
            assert single.deploys.waves_of(t) == config.pipelines_of_target(t)
        for side in (single, polled):
            await side.deploys.on_deploys(BEFORE)
        single_out.clear()
        polled_out.clear()
        for one in POLL:
            await single.deploys.on_deploys([one])
        await polled.deploys.on_deploys(POLL)
        assert by_wave(polled_out) == by_wave(single_out)
        assert await rows(polled.runtime) == await rows(single.runtime)
        assert counts(polled) == counts(single)
        # What they agree on is what the rules say.
        assert [(s.pipeline, s.wave, s.state, s.app_sha, s.cfg_sha) for s in polled_out] == [
            ("p0", "production", "failing", X, C1),
            ("p1", "staging", "running", Y, C2),
            ("p2", "staging", "running", Z, C3),
        ]
        waves = {(r[0], r[1]): r[2:] for r in (await rows(polled.runtime))["wave_status"]}
        assert waves[("p0", "staging")] == ("running", X, C1, ["p0-s-2"])
        held = (await rows(polled.runtime))["held_deploys"]
        assert [(t, r) for t, r, _ in held] == [("p1-s-1", UNKNOWN), ("p2-p-0", UNKNOWN)]
        assert counts(polled) == {
            "held": 2.0,
            "stale": 1.0,
            "unknown_target": 1.0,
            "not_on_watched": 0.0,
        }

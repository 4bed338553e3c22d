"""The status-tracker keeps auto's order in ``auto_commits.created_at`` even for commits
recorded in one poll: the rules that say a pending commit is on watched ("made before the
repo's newest green commit": reconciler, retry, retention, the pipeline view) compare it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from waveline.services.status_tracker.service import StatusTracker
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.models.git import GitEvent
from waveline.shared.runtime import bootstrap

pytestmark = pytest.mark.timeout(60)


def event(sha: str, **extra: object) -> GitEvent:
    return GitEvent.model_validate(
        {
            "event_id": uuid.uuid4(),
            "command_id": uuid.uuid4(),
            "command_kind": "introduce",
            "repo": "cfg-app",
            "outcome": "committed",
            "branch": "auto",
            "sha": sha,
            "pipeline": "app",
            "wave": "staging",
            "app_sha": "1" * 40,
            "at": datetime.now(UTC),
            **extra,
        }
    )


async def test_commits_of_one_poll_keep_their_order(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    runtime = bootstrap("status-tracker", settings, config, secrets)
    await runtime.start()
    try:
        tracker = StatusTracker(runtime)
        a, b, c, c2, d, e = ("a" * 40, "b" * 40, "c" * 40, "c2" * 20, "d" * 40, "e" * 40)
        # One poll: three commits, B evicted (C replayed as C2), D on top; then E, whose
        # command found C2 replayed again as C3 first (a replay an earlier eviction left).
        evict = event(c2, command_kind="evict", outcome="evicted", old_sha=b, replayed={c: c2})
        await tracker.on_git_events([event(a), event(b), event(c), evict, event(d)])
        c3 = "f" * 40
        await tracker.on_git_events([event(e, replayed={c2: c3})])
        rows = await runtime.pool.fetch(
            "SELECT sha FROM auto_commits WHERE repo = 'cfg-app' ORDER BY created_at"
        )
        times = await runtime.pool.fetch(
            "SELECT count(DISTINCT created_at) AS n FROM auto_commits WHERE repo = 'cfg-app'"
        )
    finally:
        await runtime.stop()
    assert [r["sha"] for r in rows] == [a, b, c, c2, d, c3, e]
    assert times[0]["n"] == 7

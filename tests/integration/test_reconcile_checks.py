"""Reconcile checks on real Kafka and PostgreSQL against the fake GitHub: commits of auto whose
status webhooks were lost are read on the forge and judged by the status-tracker, within a
small rate-limit budget and through 429s with Retry-After, without losing a verdict
(docs/reconcile.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pygit2
import pytest
from pydantic import SecretStr

from tests.fakegithub import FakeGitHub
from tests.support import make_config, read_topic, running
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.reconcile_config import ReconcileSettings

pytestmark = pytest.mark.integration
TOKEN = "forge-token-for-reconcile-7c2e11"
FULL = "remote/cfg-app"
BUDGET, WINDOW_S, SHARE = 8, 2.0, 0.5


def commits_on_auto(remote: Path, n: int) -> list[str]:
    """``n`` commits on ``auto`` of the bare ``remote``, oldest first."""
    repo = pygit2.Repository(str(remote))
    parent = repo.references["refs/heads/master"].target
    sig = pygit2.Signature("waveline", "waveline@example.com")
    tree = repo[parent].peel(pygit2.Commit).tree.id
    shas = []
    for i in range(n):
        parent = repo.create_commit(None, sig, sig, f"commit {i}", tree, [parent])
        shas.append(str(parent))
    repo.references.create("refs/heads/auto", parent, force=True)
    return shas


def config_with_forge(remote: Path, api_url: str) -> WavelineConfig:
    doc = make_config(remote.as_uri()).model_dump(mode="json")
    doc["repos"]["cfg-app"]["required_checks"] = ["ci/validate", {"name": "build", "app": "ci-app"}]
    doc["repos"]["cfg-app"]["forge"] = {"api_url": api_url, "token_env": "WAVELINE_GITHUB_TOKEN"}
    return WavelineConfig.model_validate(doc)


@pytest.mark.timeout(90)
async def test_a_rate_limited_forge_slows_the_poller_without_losing_a_verdict(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    shas = commits_on_auto(remote, 6)
    green, red, untrusted = shas[:4], shas[4], shas[5]
    async with FakeGitHub({FULL: remote}, token=TOKEN) as gh:
        checks = gh.checks
        for sha in shas:
            checks.set_status(FULL, sha, "ci/validate", "pending")
            checks.set_status(FULL, sha, "ci/validate", "failure" if sha == red else "success")
            checks.set_check_run(FULL, sha, "build", "completed", "success",
                                 app="intruder" if sha == untrusted else "ci-app")  # fmt: skip
        checks.set_budget(BUDGET, WINDOW_S)
        checks.throttle(429, retry_after_s=1, times=2)
        reconcile = ReconcileSettings(
            reconcile_checks_after_s=0.2,
            reconcile_interval_s=0.1,
            reconcile_backoff_cap_s=0.5,
            reconcile_budget_share=SHARE,
        )
        settings = settings.model_copy(update={"reconcile": reconcile})
        secrets = secrets.model_copy(update={"named": {"WAVELINE_GITHUB_TOKEN": SecretStr(TOKEN)}})
        config = config_with_forge(remote, gh.url)
        async with running(["status-tracker", "reconciler"], settings, config, secrets) as rts:
            pool = rts["reconciler"].pool
            await pool.executemany(
                "INSERT INTO auto_commits (repo, sha, pipeline, wave, app_sha)"
                " VALUES ('cfg-app', $1, 'app', 'staging', $2)",
                [(sha, f"{i:040x}") for i, sha in enumerate(shas)],
            )
            async with asyncio.timeout(60):
                while True:
                    rows = await pool.fetch("SELECT sha, state FROM auto_commits")
                    states = {r["sha"]: r["state"] for r in rows}
                    judged = all(states[s] != "pending" for s in [*green, red])
                    # ... and the commit left pending read again (conditionally).
                    if judged and any(c.status == 304 for c in checks.calls):
                        break
                    await asyncio.sleep(0.1)
            published = await read_topic(
                settings.kafka_bootstrap,
                f"{settings.topic_prefix}waveline.checks",
                until=lambda ms: len(ms) >= 11,
            )
            metrics = rts["reconciler"].waits.registry
            learned = metrics.get_sample_value(
                "waveline_reconcile_learned_total", {"kind": "check"}
            )
            limited = metrics.get_sample_value(
                "waveline_reconcile_calls_total", {"api": "github", "outcome": "rate_limited"}
            )
    # Every verdict arrived: green commits fast-forwarded, the red one evicted; the commit
    # whose "build" only an untrusted App reported stays pending (nothing counts for it).
    assert [states[s] for s in green] == ["green"] * 4
    assert states[red] == "red" and states[untrusted] == "pending"
    facts = {(m["sha"], m["context"], m["state"], m["app"], m["user"]) for m in published}
    assert (red, "ci/validate", "failure", None, "ci-bot") in facts
    assert (green[0], "build", "success", "ci-app", None) in facts
    assert all(m["app"] != "intruder" for m in published)
    assert not any(m["state"] == "pending" for m in published)
    assert learned is not None and learned >= 11
    # Slowed down, never past its share: the 429s were waited out (Retry-After: 1), no call
    # was refused for the budget, and no budget window carried more than its share.
    assert limited == 2
    statuses = [c.status for c in checks.calls]
    assert statuses[:2] == [429, 429] and 403 not in statuses
    after_refusal = next(c.at for c in checks.calls if c.status != 429)
    assert after_refusal - checks.calls[1].at >= 0.9
    assert max([*checks.windows, checks.used]) <= BUDGET * SHARE
    # The commit left pending is read again with its ETags: answered 304, free of budget.
    assert 304 in statuses
    assert any(f"/{untrusted}/" in r.path and r.headers.get("If-None-Match") for r in gh.requests)

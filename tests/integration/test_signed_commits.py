"""Signed commits through the git-writer's repo process (a real child reading the key from
its environment) against a bare remote: every commit of a journey with an introduction,
promotions, a rollback, an eviction replaying a later commit and a pull-request branch
passes ``git verify-commit``, the replayed commit signed again."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.signing_keys import SigningKey, gpg_key, ssh_key, verify_commit
from tests.support import introduce, make_config
from waveline.services.git_writer.apply import Command, Result
from waveline.services.git_writer.client import RepoProcess
from waveline.services.git_writer.host import HostInit
from waveline.shared.config import WavelineConfig
from waveline.shared.models.git import Evict, FastForward, PromoteWave, RollbackWave

pytestmark = pytest.mark.timeout(60)
KEY_ENV = "WAVELINE_TEST_SIGNING_KEY"
PR_BRANCH = "waveline/app/production"


@pytest.fixture(params=["ssh", "openpgp"])
def key(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SigningKey]:
    if request.param == "ssh":
        yield ssh_key(tmp_path / "ssh")
    else:
        with gpg_key() as made:
            yield made


def signed_config(remote: Path, key: SigningKey) -> WavelineConfig:
    data = make_config(remote.as_uri()).model_dump(mode="json", exclude_none=True)
    repo = data["repos"]["cfg-app"]
    repo["signing"] = {"format": key.format, "key_env": KEY_ENV}
    repo["forge"] = {"kind": "github", "api_url": "http://127.0.0.1:9"}
    data["pipelines"]["app"]["waves"][2]["strategy"] = {"kind": "pull-request"}
    return WavelineConfig.model_validate(data)


def head(**fields: Any) -> dict[str, Any]:
    return {"command_id": uuid.uuid4(), "repo": "cfg-app", "issued_at": datetime.now(UTC), **fields}


async def apply(proc: RepoProcess, cmd: Command) -> Result:
    """One command, pushed as a batch of one; it must change the remote."""
    results, failed, _ = await proc.build([cmd], True, 0.0)
    assert failed == []
    result = results[cmd.command_id]
    assert result.outcome in {"committed", "fast_forwarded", "evicted"}, result
    await proc.flush()
    assert result.sha is not None
    return result


def seed_commit(remote: Path) -> str:
    return subprocess.run(
        ["git", f"--git-dir={remote}", "rev-list", "--max-parents=0", "master"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def waveline_commits(remote: Path, *tips: str) -> list[str]:
    """Every commit reachable from ``tips`` but not from the seed's initial commit."""
    listed = subprocess.run(
        ["git", f"--git-dir={remote}", "log", "--format=%H", *tips, "--not", seed_commit(remote)],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def listing(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


async def test_every_commit_of_a_journey_verifies(
    remote: Path,
    tmp_path: Path,
    key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    # The child process inherits the variable, as the service's repo processes do, and
    # makes its key's copy under this TMPDIR.
    monkeypatch.setenv(KEY_ENV, key.private)
    # Short, as a TMPDIR usually is: the GnuPG agent's sockets live in the copy's directory
    # (a deeper one is moved to /tmp: test_a_deep_tmpdir_still_signs_with_openpgp).
    child_tmp = Path(tempfile.mkdtemp(prefix="wl-tmp-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(child_tmp, ignore_errors=True))
    monkeypatch.setenv("TMPDIR", str(child_tmp))
    config = signed_config(remote, key)
    init = HostInit(
        repo="cfg-app",
        repo_config=config.repos["cfg-app"],
        config=config,
        path=tmp_path / "data" / "cfg-app.git",
        log_level="INFO",
        log_secrets=[],
        gil_switch_interval_ms=0.5,
    )
    proc = RepoProcess(init)
    a, b, c, d = (introduce(n=n) for n in (1, 2, 3, 4))
    try:
        async with asyncio.timeout(40):
            first = await apply(proc, a)
            (copy,) = listing(child_tmp)
            assert copy.name.startswith("waveline-sign-")
            assert oct(copy.stat().st_mode & 0o777) == "0o700"
            await apply(proc, FastForward(**head(sha=first.sha)))
            promoted = await apply(
                proc,
                PromoteWave(
                    **head(
                        pipeline="app",
                        from_wave="staging",
                        to_wave="internal",
                        app_sha=a.app_sha,
                        deployed_sha=first.sha,
                    )
                ),
            )
            await apply(proc, FastForward(**head(sha=promoted.sha)))
            second = await apply(proc, b)
            await apply(proc, FastForward(**head(sha=second.sha)))
            await apply(
                proc,
                RollbackWave(
                    **head(pipeline="app", wave="staging", app_sha=a.app_sha, to_sha=first.sha)
                ),
            )
            red = await apply(proc, c)
            later = await apply(proc, d)
            evicted = await apply(proc, Evict(**head(sha=red.sha)))
            # The pull-request strategy's branch, built on watched.
            pulled = await apply(
                proc,
                PromoteWave(
                    **head(
                        pipeline="app",
                        from_wave="internal",
                        to_wave="production",
                        app_sha=a.app_sha,
                        deployed_sha=promoted.sha,
                        branch=PR_BRANCH,
                    )
                ),
            )
            # The service goes away (its end of the socket closes): the repo process ends at
            # once, like a killed one, and removes its key's copy first. (Not close(), which
            # waits for the first packing, niced: 8-19 s on a loaded machine.)
            replies = proc._replies
            assert replies is not None
            replies.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replies
            assert not proc.running
            assert listing(child_tmp) == []
    finally:
        if proc.running:
            await proc.close()
    assert later.sha is not None
    replayed = evicted.replayed[later.sha]
    assert replayed != later.sha and evicted.sha == replayed
    assert pulled.branch == PR_BRANCH
    commits = waveline_commits(remote, "auto", "master", PR_BRANCH)
    # Two introductions, a promotion, a rollback, the replayed introduction (its original
    # and the evicted one are off the branches now) and the pull request's commit.
    assert replayed in commits and pulled.sha in commits
    assert later.sha not in commits and red.sha not in commits
    assert len(commits) == 6
    for sha in [*commits, later.sha]:  # the commit before its replay was signed too
        verified = verify_commit(remote, sha, key)
        assert verified.returncode == 0, (sha, verified.stderr)
    # The check refuses what is not signed (the seed's commit, made by hand).
    assert verify_commit(remote, seed_commit(remote), key).returncode != 0

"""Two git-writers in one consumer group: the repos spread over both, and when one stops its
repos move to the other with nothing lost or committed twice. Every push carries a lease on
the value it built on, so even a writer still finishing a batch after its partitions moved
cannot overwrite the other's commits: the remotes' reflogs show each update made from the
value the one before left (issue 18, docs/architecture.md)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pygit2
import pytest
from aiokafka.partitioner import murmur2

from tests.support import branch_log, introduce, make_config, produce_commands, running, wait_for
from waveline.devstack.demo import seed_repo
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers
from waveline.shared.topics import PARTITIONS

COMMANDS = "waveline.git.commands"
PER_REPO = 12  # commands per repo in each phase


def _partition(repo: str) -> int:
    return int(murmur2(repo.encode()) & 0x7FFFFFFF) % PARTITIONS[COMMANDS]


def _repos() -> list[str]:
    """Four repo names on partitions 0, 1, 6 and 7 of the commands topic: whether the
    group splits the partitions by ranges (0-3 | 4-7) or round robin (even | odd), each
    writer gets some."""
    wanted = {0: "", 1: "", PARTITIONS[COMMANDS] - 2: "", PARTITIONS[COMMANDS] - 1: ""}
    n = 0
    while not all(wanted.values()):
        name = f"cfg-{n}"
        if wanted.get(_partition(name)) == "":
            wanted[_partition(name)] = name
        n += 1
    return list(wanted.values())


def _config(remotes: dict[str, Path]) -> WavelineConfig:
    base = make_config("file:///unused").model_dump(mode="json")
    template_repo, template_pipeline = base["repos"]["cfg-app"], base["pipelines"]["app"]
    base["repos"] = {
        name: {**template_repo, "url": bare.as_uri()} for name, bare in remotes.items()
    }
    base["pipelines"] = {f"p-{name}": {**template_pipeline, "repo": name} for name in remotes}
    return WavelineConfig.model_validate(base)


def _auto_event_ids(bare: Path) -> list[str]:
    return [trailers.parse(c.message).event_id or "" for c in branch_log(str(bare), "auto")[:-1]]


def _reflog(bare: Path, ref: str) -> list[tuple[str, str]]:
    """(old, new) of every update of ``ref`` on the remote, oldest first."""
    lines = (bare / "logs" / ref).read_text().splitlines()
    return [(line.split()[0], line.split()[1]) for line in lines]


def _handled(data_dir: Path, repo: str) -> bool:
    """Whether a writer pushed to ``repo``: its clone tracks the remote's ``auto``."""
    clone = data_dir / "repos" / f"{repo}.git"
    if not (clone / "HEAD").exists():
        return False
    return pygit2.Repository(str(clone)).references.get("refs/remotes/origin/auto") is not None


@pytest.mark.timeout(120)
async def test_two_writers_share_the_repos_and_one_stopping_hands_them_over(
    settings: Settings, secrets: Secrets, tmp_path: Path
) -> None:
    repos = _repos()
    remotes = {name: tmp_path / "remotes" / f"{name}.git" for name in repos}
    for bare in remotes.values():
        seed_repo(bare)
        # Bare repositories keep no reflog unless told to.
        pygit2.Repository(str(bare)).config["core.logAllRefUpdates"] = "always"
    config = _config(remotes)
    first = settings.model_copy(update={"data_dir": tmp_path / "writer-1"})
    second = settings.model_copy(update={"data_dir": tmp_path / "writer-2"})
    sent: dict[str, list[str]] = {name: [] for name in repos}

    async def send(phase: int) -> None:
        for n in range(PER_REPO):
            batch = [introduce(name, f"p-{name}", 1000 * phase + n) for name in repos]
            for cmd in batch:
                sent[cmd.repo].append(str(cmd.command_id))
            await produce_commands(settings, batch)
            await asyncio.sleep(0.02)

    def landed(count: int) -> bool:
        return all(len(_auto_event_ids(bare)) >= count for bare in remotes.values())

    async with running(["git-writer"], second, config, secrets):
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(running(["git-writer"], first, config, secrets))
            await send(0)
            await wait_for(lambda: landed(PER_REPO), timeout_s=60, what="phase 1 committed")
            by_first = {r for r in repos if _handled(first.data_dir, r)}
            by_second = {r for r in repos if _handled(second.data_dir, r)}
            assert by_first and by_second, (by_first, by_second)
            assert not by_first & by_second  # each repo had one writer
            # The first writer stops while the second phase is being sent.
            sending = asyncio.create_task(send(1))
            await asyncio.sleep(0.1)
        await sending
        await wait_for(lambda: landed(2 * PER_REPO), timeout_s=60, what="phase 2 committed")
        assert all(_handled(second.data_dir, r) for r in repos)  # it took them all over

    for name, bare in remotes.items():
        on_auto = _auto_event_ids(bare)
        # Every command once, in the order it was sent (newest first on the branch).
        assert on_auto == list(reversed(sent[name])), name
        updates = _reflog(bare, "refs/heads/auto")
        assert len(updates) >= 2, updates  # the remote logged its pushes
        # Each update moved auto from where the previous one left it: no writer's push
        # replaced a commit it had not built on.
        assert all(
            old == prev_new for (old, _), (_, prev_new) in zip(updates[1:], updates, strict=False)
        )

"""The git-writer's in-memory state stays bounded: the Event-Id index and the wave → app
map keep a fixed number of commits, and the memory objects are packed by size as well as
by count."""

from __future__ import annotations

import uuid
from pathlib import Path

import pygit2
import pytest

from tests.support import make_config
from waveline.devstack.demo import seed_repo
from waveline.services.git_writer import apply as apply_module
from waveline.services.git_writer.apply import Applier
from waveline.shared.gitengine import trailers
from waveline.shared.gitengine.index import EventIndex
from waveline.shared.gitengine.repo import ConfigRepo
from waveline.shared.gitengine.storage import ObjectStore
from waveline.shared.gitengine.storage.memory import MemoryObjects


def clone(tmp_path: Path, *, hold: bool = False) -> ConfigRepo:
    """A bare repository with the demo's first commit on master (no remote needed), its
    new objects held in memory with ``hold``."""
    bare = tmp_path / "cfg.git"
    seed_repo(bare)
    store = ObjectStore(bare) if hold else None
    return ConfigRepo("cfg", make_config(bare.as_uri()).repos["cfg-app"], bare, store=store)


def automatic_commits(repo: ConfigRepo, count: int) -> list[tuple[pygit2.Oid, str, str]]:
    """``count`` commits on master, each like the git-writer's: (oid, Event-Id, app sha)."""
    tip = repo.repo.references["refs/heads/master"].target
    assert isinstance(tip, pygit2.Oid)
    made = []
    for n in range(count):
        event_id, app_sha = str(uuid.uuid4()), f"{n + 1:040x}"
        info = {
            trailers.PIPELINE: "app",
            trailers.APP_SHA: app_sha,
            trailers.TARGET: "staging",
            trailers.EVENT_ID: event_id,
        }
        message = trailers.format_message(f"update {n}", "", info)
        new = repo.create_commit(tip, {"images/staging/tags.json": f"{n}\n".encode()}, message)
        assert new is not None
        made.append((new, event_id, app_sha))
        tip = new
    return made


def test_the_event_index_keeps_the_newest_commits(tmp_path: Path) -> None:
    repo = clone(tmp_path)
    made = automatic_commits(repo, 12)
    index = EventIndex(max_commits=5)
    assert index.update(repo, [made[-1][0]]) == 5  # the walk stops at the bound
    assert len(index) == 5
    tip = made[-1][0]
    assert index.find(repo, made[-1][1], [tip]) == made[-1][0]
    assert index.find(repo, made[-5][1], [tip]) == made[-5][0]
    assert index.find(repo, made[-6][1], [tip]) is None  # beyond the window
    # New commits push the oldest out, and only what is new is walked.
    more = automatic_commits_on(repo, tip, 3)
    assert index.update(repo, [more[-1][0]]) == 3
    assert len(index) == 5
    assert index.find(repo, more[-1][1], [more[-1][0]]) == more[-1][0]
    assert index.find(repo, made[-2][1], [more[-1][0]]) == made[-2][0]
    assert index.find(repo, made[-3][1], [more[-1][0]]) is None
    assert index.update(repo, [more[-1][0]]) == 0  # all known: nothing walked


def automatic_commits_on(
    repo: ConfigRepo, tip: pygit2.Oid, count: int
) -> list[tuple[pygit2.Oid, str, str]]:
    repo.repo.references.create("refs/heads/master", tip, force=True)
    return automatic_commits(repo, count)


def test_wave_apps_cache_is_an_lru_of_fixed_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply_module, "WAVE_APPS_CACHED", 4)
    repo = clone(tmp_path)
    applier = Applier(repo, make_config(repo.config.url))
    made = automatic_commits(repo, 10)
    oids = [oid for oid, _, _ in made]
    assert applier.wave_apps(oids[-1]) == {"app/staging": made[-1][2]}
    assert list(applier._wave_apps) == oids[6:]  # the newest four of the walk
    # A hit makes an entry the most recently used: the next new commit evicts made[7].
    assert applier.wave_apps(oids[6]) == {"app/staging": made[6][2]}
    child = automatic_commits_on(repo, oids[-1], 1)[0]
    assert applier.wave_apps(child[0]) == {"app/staging": child[2]}
    assert set(applier._wave_apps) == {oids[6], oids[8], oids[9], child[0]}
    # An evicted commit is walked again, with the same answer, and the size holds.
    assert applier.wave_apps(oids[2]) == {"app/staging": made[2][2]}
    assert len(applier._wave_apps) == 4


def test_memory_objects_count_their_bytes(tmp_path: Path) -> None:
    repo = clone(tmp_path, hold=True)
    repo.repo.create_blob(b"x" * 5000)  # through libgit2 into the memory backend
    assert (repo.objects.held_count, repo.objects.held_bytes) == (1, 5000)
    repo.repo.create_blob(b"x" * 5000)  # the same object again: counted once
    assert (repo.objects.held_count, repo.objects.held_bytes) == (1, 5000)
    assert repo.objects.pack() == 1
    assert (repo.objects.held_count, repo.objects.held_bytes) == (0, 0)
    memory = MemoryObjects()
    blob = pygit2.Oid(hex="3" * 40)
    memory.put(blob, 3, b"x" * 5000)
    memory.put(pygit2.Oid(hex="1" * 40), 3, b"y" * 100)
    assert (len(memory), memory.nbytes) == (2, 5100)
    memory.drop([blob, pygit2.Oid(hex="2" * 40)])  # an id it does not hold: ignored
    assert (len(memory), memory.nbytes) == (1, 100)


def test_packing_is_due_by_bytes_as_well_as_by_updates(tmp_path: Path) -> None:
    repo = clone(tmp_path, hold=True)
    applier = Applier(repo, make_config(repo.config.url), compact_at_bytes=64 * 1024)
    assert applier.compaction_due()  # the first ask after start: what earlier runs left
    assert not applier.compaction_due()
    repo.repo.create_blob(b"z" * (32 * 1024))
    assert not applier.compaction_due()  # under the limit, and few updates
    repo.repo.create_blob(b"w" * (40 * 1024))
    assert applier.compaction_due()  # 72 KiB held: due, whatever the count
    repo.objects.pack()
    assert not applier.compaction_due()

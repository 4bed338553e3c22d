"""The git engine and git-writer's command logic against real bare remotes (file://)."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pygit2
import pytest

from tests.support import APP_SHA, branch_log, image_set, make_config
from waveline.devstack.demo import seed_repo
from waveline.services.git_writer.apply import Applier, Command, Result
from waveline.shared.errors import PushRejected
from waveline.shared.gitengine import trailers
from waveline.shared.gitengine.repo import ConfigRepo
from waveline.shared.gitengine.storage import ObjectStore
from waveline.shared.models.git import IntroduceImages
from waveline.shared.models.images import ImageSetAnnounced

OTHER_SHA = "1111111111111111111111111111111111111111"


def introduce(app_sha: str = APP_SHA, command_id: uuid.UUID | None = None) -> IntroduceImages:
    announced = ImageSetAnnounced.model_validate(image_set(app_sha))
    return IntroduceImages(
        command_id=command_id or uuid.uuid4(),
        repo="cfg-app",
        issued_at=datetime.now(UTC),
        pipeline="app",
        wave="staging",
        app_sha=app_sha,
        images=announced.images,
    )


def push(applier: Applier, cmd: Command) -> Result:
    """Apply one command and push it, as a batch of one."""
    result = applier.apply(cmd)
    applier.flush()
    return result


def applier_for(remote: Path, data: Path, *, memory: bool = True) -> Applier:
    """An applier like the git-writer's: new objects in memory until packed (or, with
    ``memory=False``, libgit2's loose files)."""
    config = make_config(remote.as_uri())
    repo = ConfigRepo(
        "cfg-app",
        config.repos["cfg-app"],
        data / "cfg-app.git",
        store=ObjectStore(data / "cfg-app.git") if memory else None,
    )
    applier = Applier(repo, config)
    applier.refresh()
    return applier


def human_commit(bare: Path, branch: str, path: str, content: bytes) -> pygit2.Oid:
    """Someone else's commit straight on the remote (as a person pushing to master would)."""
    cfg = ConfigRepo("x", make_config(bare.as_uri()).repos["cfg-app"], bare)
    parent = cfg.repo.references[f"refs/heads/{branch}"].target
    assert isinstance(parent, pygit2.Oid)
    tree = cfg.write_tree(cfg.commit(parent).tree, {path: content})
    sig = pygit2.Signature("human", "human@example.com")
    return cfg.repo.create_commit(f"refs/heads/{branch}", sig, sig, f"edit {path}", tree, [parent])


def read(bare: Path, ref: str, path: str) -> bytes:
    out = subprocess.run(
        ["git", f"--git-dir={bare}", "show", f"{ref}:{path}"], capture_output=True, check=True
    )
    return out.stdout


def test_introduce_commits_on_auto_with_trailers(remote: Path, tmp_path: Path) -> None:
    applier = applier_for(remote, tmp_path)
    cmd = introduce()
    result = push(applier, cmd)
    assert result.outcome == "committed"
    log = branch_log(str(remote), "auto")
    assert str(log[0].id) == result.sha
    assert len(log) == 2  # on top of master's initial commit
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=log[0].message,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"Autocommit-Event-Id: {cmd.command_id}" in parsed
    assert f"Autocommit-App-SHA: {APP_SHA}" in parsed
    assert "Autocommit-Target: staging" in parsed
    assert "Autocommit-Pipeline: app" in parsed
    tags = json.loads(read(remote, "auto", "images/staging/tags.json"))
    assert tags == {
        "Service1": f"docker.example.com/service1:{APP_SHA}",
        "Service2": f"docker.example.com/service2:{APP_SHA}",
    }
    assert list(tags) == sorted(tags)
    # master is untouched: only a fast-forward may move it.
    assert len(branch_log(str(remote), "master")) == 1


def test_same_event_id_is_a_noop_even_after_restart(remote: Path, tmp_path: Path) -> None:
    cmd = introduce()
    assert push(applier_for(remote, tmp_path), cmd).outcome == "committed"
    # A new process (fresh index, same clone dir) rebuilds the index from trailers.
    again = push(applier_for(remote, tmp_path), cmd)
    assert again.outcome == "noop"
    # And a brand-new clone too.
    assert push(applier_for(remote, tmp_path / "other"), cmd).outcome == "noop"
    assert len(branch_log(str(remote), "auto")) == 2


def test_same_images_again_is_noop_without_commit(remote: Path, tmp_path: Path) -> None:
    applier = applier_for(remote, tmp_path)
    assert push(applier, introduce()).outcome == "committed"
    second = push(applier, introduce())  # new command id, same content
    assert second.outcome == "noop"
    assert len(branch_log(str(remote), "auto")) == 2


def test_commit_only_rewrites_changed_directories(tmp_path: Path) -> None:
    bare = tmp_path / "big.git"
    seed_repo(bare)
    cfg = ConfigRepo("big", make_config(bare.as_uri()).repos["cfg-app"], bare)
    head = pygit2.Repository(str(bare)).references["refs/heads/master"].target
    assert isinstance(head, pygit2.Oid)
    files: dict[str, bytes | None] = {
        f"apps/a{i}/f{j}.yaml": b"x" for i in range(30) for j in range(5)
    }
    big = cfg.create_commit(head, files, "many files")
    assert big is not None
    changed = cfg.create_commit(big, {"images/staging/tags.json": b"{}\n{}"}, "one file")
    assert changed is not None
    before, after = cfg.commit(big).tree, cfg.commit(changed).tree
    # Untouched subtrees are the very same objects: nothing outside the path was rebuilt.
    assert before["apps"].id == after["apps"].id
    assert before["images/internal"].id == after["images/internal"].id
    assert before["images/staging"].id != after["images/staging"].id
    deleted = cfg.create_commit(changed, {"apps/a0/f0.yaml": None}, "delete")
    assert deleted is not None
    assert "apps/a0/f0.yaml" not in cfg.commit(deleted).tree
    assert "apps/a0/f1.yaml" in cfg.commit(deleted).tree


def test_lease_detects_a_concurrent_push(remote: Path, tmp_path: Path) -> None:
    ours = applier_for(remote, tmp_path / "ours")
    theirs = applier_for(remote, tmp_path / "theirs")
    assert push(theirs, introduce(OTHER_SHA)).outcome == "committed"
    # Our clone has not fetched: its view of auto (absent) is stale, so the lease breaks.
    with pytest.raises(PushRejected, match="lease"):
        push(ours, introduce())
    assert len(branch_log(str(remote), "auto")) == 2
    ours.refresh()
    assert push(ours, introduce()).outcome == "committed"
    assert len(branch_log(str(remote), "auto")) == 3


def test_auto_behind_master_is_reset(remote: Path, tmp_path: Path) -> None:
    applier = applier_for(remote, tmp_path)
    first = push(applier, introduce(OTHER_SHA))
    assert first.sha is not None
    # master fast-forwarded to auto's commit, then a person committed on master.
    repo = pygit2.Repository(str(remote))
    repo.references["refs/heads/master"].set_target(pygit2.Oid(hex=first.sha))
    human = human_commit(remote, "master", "README.md", b"edited\n")
    applier.refresh()
    result = push(applier, introduce())
    assert result.outcome == "committed"
    log = branch_log(str(remote), "auto")
    assert log[1].id == human  # new commit sits right on master
    assert result.replayed == {}


def test_diverged_auto_is_replayed_onto_master(remote: Path, tmp_path: Path) -> None:
    applier = applier_for(remote, tmp_path)
    first = push(applier, introduce(OTHER_SHA))
    assert first.sha is not None
    human = human_commit(remote, "master", "README.md", b"someone pushed to master\n")
    applier.refresh()
    result = push(applier, introduce())
    assert result.outcome == "committed"
    assert set(result.replayed) == {first.sha}
    log = branch_log(str(remote), "auto")
    assert [c.id for c in log[2:3]] == [human]
    replayed = log[1]
    assert str(replayed.id) == result.replayed[first.sha]
    assert trailers.parse(replayed.message).get(trailers.APP_SHA) == OTHER_SHA
    assert read(remote, "auto", "README.md") == b"someone pushed to master\n"
    assert json.loads(read(remote, "auto", "images/staging/tags.json"))["Service1"].endswith(
        APP_SHA
    )
    assert json.loads(read(remote, f"{replayed.id}", "images/staging/tags.json"))[
        "Service1"
    ].endswith(OTHER_SHA)


def test_compact_packs_loose_objects_and_keeps_every_commit(remote: Path, tmp_path: Path) -> None:
    applier = applier_for(remote, tmp_path / "data", memory=False)
    shas = [push(applier, introduce(f"{n + 1:040x}")).sha for n in range(12)]
    objects = Path(applier.repo.repo.path) / "objects"

    def loose() -> int:
        return sum(1 for d in objects.glob("[0-9a-f][0-9a-f]") for _ in d.iterdir())

    assert loose() > 12
    packs_before = len(list((objects / "pack").glob("*.pack")))
    assert applier.repo.compact() >= 12
    assert loose() == 0
    assert len(list((objects / "pack").glob("*.pack"))) == packs_before + 1
    # Still a working clone: every commit readable, and the next command commits and pushes.
    for sha in shas:
        assert sha is not None
        assert applier.repo.commit(sha).message
    after = push(applier, introduce("f" * 40))
    assert after.outcome == "committed"
    assert str(branch_log(str(remote), "auto")[0].id) == after.sha
    assert applier.compaction_due(every=10_000)  # the first ask after start: yes
    assert not applier.compaction_due(every=10_000)  # then not before 10,000 updates
    push(applier, introduce("d" * 40))
    assert applier.compaction_due(every=1)  # one update since: due at every=1
    # Too many packs: they are merged, at least the two smallest.
    packs_before = len(list((objects / "pack").glob("*.pack")))
    assert packs_before >= 2
    assert applier.repo.compact(max_packs=1) > 0
    assert len(list((objects / "pack").glob("*.pack"))) < packs_before
    assert loose() == 0
    assert applier.repo.commit(after.sha or "").message


def test_compaction_merges_the_small_packs_and_leaves_the_history_pack(
    remote: Path, tmp_path: Path
) -> None:
    """Past ``max_packs``, only packs out of geometric progression are merged: the cost of
    a merge is what recent packs hold, however long the history."""
    applier = applier_for(remote, tmp_path / "data")
    pack_dir = Path(applier.repo.repo.path) / "objects" / "pack"
    for n in range(60):
        push(applier, introduce(f"{n + 1:040x}"))
    applier.repo.compact(max_packs=100)
    applier.repo.compact(max_packs=1)  # with the fetched one: the two smallest, merged
    history = {p.name for p in pack_dir.glob("*.pack")}
    assert len(history) == 1
    shas = []
    for round_ in range(4):  # four small packs of one image set each
        shas.append(push(applier, introduce(f"{round_ + 100:040x}")).sha)
        applier.repo.compact(max_packs=100)
    small = {p.name for p in pack_dir.glob("*.pack")} - history
    assert len(small) == 4
    merged = applier.repo.compact(max_packs=5)
    after = {p.name for p in pack_dir.glob("*.pack")}
    assert 0 < merged < 60  # the small packs' objects, not the history's
    assert history <= after  # the big pack of the history is still there, untouched
    assert not small & after
    assert len(after) == len(history) + 1
    for sha in shas:
        assert applier.repo.commit(sha or "").message
    assert push(applier, introduce("9" * 40)).outcome == "committed"


def test_compaction_beside_the_writer_loses_no_object(remote: Path, tmp_path: Path) -> None:
    """The git-writer packs its clone on a second thread with its own repository object
    while the repo thread keeps committing: every object stays readable from both."""
    applier = applier_for(remote, tmp_path / "data")
    first = [push(applier, introduce(f"{n + 1:040x}")).sha for n in range(100)]
    beside = ConfigRepo(
        name="cfg-app",
        config=applier.repo.config,
        path=applier.repo.path,
        store=applier.repo.objects,
    )
    packed: list[int] = []
    compactor = threading.Thread(target=lambda: packed.append(beside.compact()))
    compactor.start()
    more = [push(applier, introduce(f"{n + 100:040x}")).sha for n in range(30)]
    compactor.join(timeout=60)
    assert packed and packed[0] >= 100 * 4  # blobs, trees and commits of the first 100
    for sha in [*first, *more]:
        assert sha is not None
        assert applier.repo.commit(sha).message
        assert beside.commit(sha).message
    assert push(applier, introduce("e" * 40)).outcome == "committed"


def loose_files(applier: Applier) -> int:
    objects = Path(applier.repo.repo.path) / "objects"
    return sum(1 for d in objects.glob("[0-9a-f][0-9a-f]") for _ in d.iterdir())


def test_new_objects_stay_in_memory_until_packed(remote: Path, tmp_path: Path) -> None:
    applier = applier_for(remote, tmp_path / "data")
    store = applier.repo.objects
    assert store.holds
    shas = [push(applier, introduce(f"{n + 1:040x}")).sha for n in range(10)]
    assert loose_files(applier) == 0
    assert store.held_count >= 10 * 4  # blobs, trees and a commit per image set
    # The remote got every object: its own repository reads the pushed tip's files.
    tip = branch_log(str(remote), "auto")[0]
    assert str(tip.id) == shas[-1]
    assert applier.repo.compact() >= 40
    assert store.held_count == 0
    assert loose_files(applier) == 0
    for sha in shas:
        assert applier.repo.commit(sha or "").message
    assert push(applier, introduce("c" * 40)).outcome == "committed"


def test_a_restart_fetches_back_what_only_memory_held(remote: Path, tmp_path: Path) -> None:
    """Objects never packed are gone with the process; the ones that were pushed come back
    with the next fetch, and nothing points at the lost ones meanwhile."""
    first = applier_for(remote, tmp_path / "data")
    commands = [introduce(f"{n + 1:040x}") for n in range(5)]
    shas = [push(first, c).sha for c in commands]
    # A second process on the same clone, with empty memory (the first one died).
    again = applier_for(remote, tmp_path / "data")
    assert again.repo.remote_ref("auto") == pygit2.Oid(hex=shas[-1] or "")
    for sha in shas:
        assert again.repo.commit(sha or "").message
    # Event-Ids are known again from the fetched history: a redelivery is a no-op.
    assert push(again, commands[2]).outcome == "noop"
    result = push(again, introduce("b" * 40))
    assert result.outcome == "committed"
    assert branch_log(str(remote), "auto")[1].id == pygit2.Oid(hex=shas[-1] or "")

"""The dev stack's stand-in for a git server's housekeeping keeps the demo remote packed."""

from __future__ import annotations

from pathlib import Path

import pygit2

from waveline.devstack.demo import seed_repo
from waveline.devstack.remote_gc import MAX_PACKS, packs, repack


def test_repack_merges_the_packs_that_file_pushes_leave(tmp_path: Path) -> None:
    remote = tmp_path / "cfg-app.git"
    seed_repo(remote)
    client = pygit2.clone_repository(remote.as_uri(), str(tmp_path / "client.git"), bare=True)
    sig = pygit2.Signature("t", "t@example.com")
    tip = client.references["refs/heads/master"].target
    for i in range(60):  # libgit2's file:// transport: one new pack per push
        parent = client.get(tip)
        assert isinstance(parent, pygit2.Commit)
        builder = client.TreeBuilder(parent.tree)
        builder.insert("n", client.create_blob(f"{i}\n".encode()), pygit2.enums.FileMode.BLOB)
        tip = client.create_commit(
            "refs/heads/master", sig, sig, f"push {i}", builder.write(), [tip]
        )
        client.remotes["origin"].push(["refs/heads/master:refs/heads/master"])
    assert packs(remote) >= 60
    assert repack(remote) >= 60
    assert packs(remote) <= MAX_PACKS
    assert repack(remote) == 0  # nothing left to do
    repo = pygit2.Repository(str(remote))
    assert repo.references["refs/heads/master"].target == tip
    # Every pushed commit is still there, and the ref file was not packed away.
    assert (remote / "refs" / "heads" / "master").exists()
    assert len(list(repo.walk(tip))) == 61
    head = repo.get(tip)
    assert isinstance(head, pygit2.Commit)
    assert head.message == "push 59"

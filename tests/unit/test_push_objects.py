"""pushobjects.py against git itself: for each shape of history the git-writer makes, the
objects chosen hold every object ``git rev-list --objects <new> --not <old>`` lists (the
push is complete) and only objects of the new commits (nothing else), at most the few a
moved file adds; the pack ObjectStore.pack_to writes from them completes the remote
(``git fsck --full``)."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode

from waveline.shared.gitengine import pushobjects
from waveline.shared.gitengine.repo import write_tree
from waveline.shared.gitengine.storage import ObjectStore

SIG = pygit2.Signature("t", "t@example.com", 1_700_000_000, 0)
Files = Mapping[str, bytes | None]


def commit(
    repo: pygit2.Repository, parent: pygit2.Oid | None, files: Files, msg: str
) -> pygit2.Oid:
    base = repo.get(parent) if parent is not None else None
    tree = write_tree(repo, base.tree if isinstance(base, pygit2.Commit) else None, files)
    return repo.create_commit(None, SIG, SIG, msg, tree, [parent] if parent else [])


def tree_of(repo: pygit2.Repository, oid: pygit2.Oid) -> pygit2.Oid:
    made = repo.get(oid)
    assert isinstance(made, pygit2.Commit)
    return made.tree_id


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / "r.git"), bare=True)


@pytest.fixture
def base(repo: pygit2.Repository) -> pygit2.Oid:
    """A repository of a few folders, a couple of levels deep."""
    files: dict[str, bytes | None] = {
        f"apps/d{d}/cm-{i}.yaml": f"cm {d} {i}\n".encode() for d in range(4) for i in range(5)
    }
    files |= {f"images/{w}/tags.json": b"{}\n" for w in ("staging", "production")}
    files["README"] = b"hello\n"
    return commit(repo, None, files, "base")


def rev_list(repo: pygit2.Repository, new: pygit2.Oid, old: list[pygit2.Oid]) -> set[str]:
    out = subprocess.run(
        ["git", f"--git-dir={repo.path}", "rev-list", "--objects", str(new), "--not"]
        + [str(o) for o in old],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split()[0] for line in out.splitlines() if line}


def check(
    repo: pygit2.Repository,
    new: pygit2.Oid,
    old: pygit2.Oid,
    walk_from: list[pygit2.Oid] | None = None,
    extra: int = 0,
) -> set[str]:
    """The objects chosen to bring the remote from ``old`` to ``new``: all those git lists
    and, beyond them, at most ``extra`` objects of ``new`` the remote had elsewhere."""
    walk = walk_from if walk_from is not None else [old]
    remote_has = [] if walk_from is not None else [old]
    chosen = pushobjects.select(repo, [new], remote_has, walk)
    assert chosen is not None
    picked = {str(oid) for oid in chosen}
    assert len(picked) == len(chosen), "an object chosen twice"
    needed = rev_list(repo, new, [old])
    assert needed <= picked, "the push would miss objects"
    assert picked <= rev_list(repo, new, []), "an object the new commit does not reach"
    assert len(picked - needed) <= extra
    return picked


def test_a_nested_change_sends_its_path_only(repo: pygit2.Repository, base: pygit2.Oid) -> None:
    new = commit(repo, base, {"apps/d2/cm-3.yaml": b"changed\n", "apps/d9/x/y.yaml": b"new\n"}, "c")
    picked = check(repo, new, base)
    # commit, root, apps, apps/d2, its blob, apps/d9, apps/d9/x, the new blob
    assert len(picked) == 8


def test_a_deleted_file_and_a_deleted_folder(repo: pygit2.Repository, base: pygit2.Oid) -> None:
    one = commit(repo, base, {"apps/d1/cm-0.yaml": None}, "rm file")
    assert len(check(repo, one, base)) == 4  # commit, root, apps, apps/d1
    gone = {f"apps/d3/cm-{i}.yaml": None for i in range(5)}
    two = commit(repo, one, gone, "rm folder")
    assert len(check(repo, two, one)) == 3  # commit, root, apps


def test_a_moved_file_is_sent_again_at_its_new_path(
    repo: pygit2.Repository, base: pygit2.Oid
) -> None:
    moved = commit(repo, base, {"apps/d0/cm-0.yaml": None, "apps/d7/cm-0.yaml": b"cm 0 0\n"}, "mv")
    # The blob is on the remote at its old path: sent anyway, the one object beyond git's.
    check(repo, moved, base, extra=1)


def test_several_commits_on_an_unchanged_tree_and_a_revert(
    repo: pygit2.Repository, base: pygit2.Oid
) -> None:
    tip = base
    for n in range(5):
        tip = commit(repo, tip, {"images/staging/tags.json": f"{n}\n".encode()}, f"c{n}")
    same = repo.create_commit(None, SIG, SIG, "empty", tree_of(repo, tip), [tip])
    chosen = pushobjects.select(repo, [same], [tip], [tip])
    assert chosen == [same]  # a commit that changes no file: only itself
    back = commit(repo, same, {"images/staging/tags.json": b"{}\n"}, "revert")
    # git: 5 commits x (commit, root, images, staging, blob), the empty one, the revert
    # (whose tree is base's). We send the revert's root, images, staging and blob again:
    # they differ from its parent's, and only the commit graph says the remote has them.
    check(repo, back, base, extra=4)
    assert len(rev_list(repo, back, [base])) == 5 * 5 + 1 + 1


def test_an_eviction_replays_onto_an_older_base(repo: pygit2.Repository, base: pygit2.Oid) -> None:
    """auto = base-a-RED-b-c; evicting RED replays b and c onto a: the new commits meet
    the remote's history below its tip (walked from the lease's expected value)."""
    a = commit(repo, base, {"images/staging/tags.json": b"a\n"}, "a")
    red = commit(repo, a, {"apps/d0/cm-1.yaml": b"red\n"}, "red")
    b = commit(repo, red, {"apps/d1/cm-1.yaml": b"b\n"}, "b")
    c = commit(repo, b, {"apps/d2/cm-1.yaml": b"c\n"}, "c")
    b2 = commit(repo, a, {"apps/d1/cm-1.yaml": b"b\n"}, "b")
    c2 = commit(repo, b2, {"apps/d2/cm-1.yaml": b"c\n"}, "c")
    commits = pushobjects.new_commits(repo, [c2], [c], [c])
    assert commits is not None and [x.id for x in commits] == [b2, c2]
    # b2's apps/d1 and its blob are b's: the remote has them, we send them again (git's
    # rev-list lists them too: it marks only the trees of the commits it is told about).
    picked = check(repo, c2, c, walk_from=[c], extra=2)
    assert len(picked) == 2 * 5  # per commit: itself, root, apps, the folder, the file
    assert str(red) not in picked and str(c) not in picked


def test_two_refs_share_the_commits_they_both_reach(
    repo: pygit2.Repository, base: pygit2.Oid
) -> None:
    master = commit(repo, base, {"README": b"m\n"}, "m")
    auto = commit(repo, master, {"images/staging/tags.json": b"x\n"}, "x")
    chosen = pushobjects.select(repo, [master, auto], [base], [base])
    assert chosen is not None
    assert {str(o) for o in chosen} == rev_list(repo, auto, [base])
    assert len(chosen) == len(set(chosen))


def test_no_shortcut_for_merges_roots_or_a_distant_base(
    repo: pygit2.Repository, base: pygit2.Oid
) -> None:
    side = commit(repo, base, {"README": b"side\n"}, "side")
    main = commit(repo, base, {"README": b"main\n"}, "main")
    merge = repo.create_commit(None, SIG, SIG, "merge", tree_of(repo, main), [main, side])
    assert pushobjects.select(repo, [merge], [base], [base]) is None
    root = commit(repo, None, {"x": b"1\n"}, "root")
    assert pushobjects.select(repo, [root], [base], [base]) is None
    tip = base
    for n in range(6):
        tip = commit(repo, tip, {"README": f"{n}\n".encode()}, f"c{n}")
    assert pushobjects.select(repo, [tip], [base], [base], bound=5) is None
    assert pushobjects.select(repo, [tip], [base], [base], bound=6) is not None
    assert pushobjects.select(repo, [base], [base], [base]) == []


def test_the_pack_of_the_chosen_objects_completes_the_remote(
    repo: pygit2.Repository, base: pygit2.Oid, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo.references.create("refs/heads/master", base)
    subprocess.run(
        ["git", f"--git-dir={repo.path}", "push", "-q", str(remote), "master"], check=True
    )
    tip = base
    for n in range(3):
        tip = commit(repo, tip, {f"apps/d{n}/new-{n}.yaml": b"n\n", "README": None}, f"c{n}")
    chosen = pushobjects.select(repo, [tip], [base], [base])
    assert chosen is not None
    out = io.BytesIO()
    assert ObjectStore(Path(repo.path), hold=False).pack_to(repo, chosen, out) == len(chosen)
    subprocess.run(
        ["git", f"--git-dir={remote}", "index-pack", "--stdin", "--strict"],
        input=out.getvalue(),
        capture_output=True,
        check=True,
    )
    subprocess.run(
        ["git", f"--git-dir={remote}", "update-ref", "refs/heads/master", str(tip)], check=True
    )
    fsck = subprocess.run(
        ["git", f"--git-dir={remote}", "fsck", "--full", "--strict"],
        capture_output=True,
        check=False,
    )
    assert fsck.returncode == 0, fsck.stderr


def _replace(
    repo: pygit2.Repository, parent: pygit2.Oid, edit: dict[str, tuple[pygit2.Oid, int] | None]
) -> pygit2.Oid:
    """A commit on ``parent`` whose root tree has ``edit``'s top-level entries set to
    (id, mode) or removed: the shapes ``commit`` cannot write (modes, gitlinks, trees)."""
    made = repo.get(parent)
    assert isinstance(made, pygit2.Commit)
    builder = repo.TreeBuilder(made.tree)
    for name, entry in edit.items():
        if builder.get(name) is not None:
            builder.remove(name)
        if entry is not None:
            builder.insert(name, entry[0], entry[1])
    return repo.create_commit(None, SIG, SIG, "shape", builder.write(), [parent])


def _entry(repo: pygit2.Repository, commit_id: pygit2.Oid, name: str) -> pygit2.Oid:
    made = repo.get(commit_id)
    assert isinstance(made, pygit2.Commit)
    return made.tree[name].id


def test_a_mode_only_change_sends_the_trees_not_the_blob(
    repo: pygit2.Repository, base: pygit2.Oid
) -> None:
    readme = _entry(repo, base, "README")
    new = _replace(repo, base, {"README": (readme, FileMode.BLOB_EXECUTABLE)})
    assert check(repo, new, base) == {str(new), str(tree_of(repo, new))}


def test_a_file_becomes_a_folder_and_a_folder_a_file(
    repo: pygit2.Repository, base: pygit2.Oid
) -> None:
    to_tree = commit(repo, base, {"README": None, "README/inner.txt": b"now a folder\n"}, "b2t")
    check(repo, to_tree, base)
    blob = repo.create_blob(b"images is a file now\n")
    to_blob = _replace(repo, to_tree, {"images": (blob, FileMode.BLOB)})
    picked = check(repo, to_blob, to_tree)
    assert str(blob) in picked


def test_a_subtree_copied_to_a_new_path_is_sent_at_most_once(
    repo: pygit2.Repository, base: pygit2.Oid
) -> None:
    apps = _entry(repo, base, "apps")
    copied = _replace(repo, base, {"apps-copy": (apps, FileMode.TREE)})
    # On the remote under apps/ already, but compared by path, so sent again whole (like a
    # moved file): its tree, 4 folders and 20 blobs beyond what git would send.
    picked = check(repo, copied, base, extra=25)
    assert {str(copied), str(tree_of(repo, copied))} <= picked


def test_a_submodule_entry_is_not_an_object_to_send(
    repo: pygit2.Repository, base: pygit2.Oid
) -> None:
    # A gitlink names a commit of another repository: not in this one, never sent.
    elsewhere = pygit2.Oid(hex="5" * 40)
    new = _replace(repo, base, {"vendor": (elsewhere, FileMode.COMMIT)})
    picked = check(repo, new, base)
    assert str(elsewhere) not in picked


def test_a_signed_commit_is_sent_like_any_other(repo: pygit2.Repository, base: pygit2.Oid) -> None:
    made = repo.get(base)
    assert isinstance(made, pygit2.Commit)
    blob = repo.create_blob(b"signed change\n")
    builder = repo.TreeBuilder(made.tree)
    builder.insert("SIGNED", blob, FileMode.BLOB)
    content = repo.create_commit_string(SIG, SIG, "signed", builder.write(), [base])
    signature = "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----"
    new = repo.create_commit_with_signature(str(content), signature, "gpgsig")
    signed = repo.get(new)
    assert isinstance(signed, pygit2.Commit) and signed.gpg_signature[0] is not None
    picked = check(repo, new, base)
    assert {str(new), str(blob)} <= picked

"""Waveline's push to a ``file://`` remote, in process: what libgit2's local transport does
(the new objects written into the remote as one pack, the refs moved; no receive-pack, so no
hooks and no connectivity check), but with only the objects that changed (pushobjects.py)
instead of a pack builder that walks the remote tip's whole tree.

The refs are locked first (libgit2's reference transaction: the ``.lock`` files git itself
takes, so a concurrent ``git push`` or another writer waits or fails), their values compared
with the leases under the lock, and only then the pack is written and the refs moved, all
of them or none.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pygit2

from waveline.shared.errors import GitFailure, GitUnreachable, PushRejected
from waveline.shared.gitengine import pushobjects, sendpack
from waveline.shared.gitengine.storage import ObjectStore


def push(
    repo: pygit2.Repository,
    store: ObjectStore,
    remote_path: Path,
    updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]],
) -> None:
    """Move ``{ref: (expected value or None if absent, new value)}`` in the bare repository
    at ``remote_path`` from ``repo``'s objects. ``PushRejected`` when a ref is not at its
    expected value or is locked by another writer (nothing written); ``Unsupported`` when
    the objects cannot be chosen cheaply (nothing written: push another way)."""
    try:
        remote = pygit2.Repository(str(remote_path))
    except pygit2.GitError as exc:
        raise GitUnreachable(f"no repository at {remote_path}: {exc}") from exc
    if not remote.is_bare:
        raise sendpack.Unsupported("the remote is not a bare repository")
    try:
        with remote.transaction() as txn:
            for ref in updates:
                try:
                    txn.lock_ref(ref)
                except pygit2.GitError as exc:
                    raise PushRejected(f"remote rejected {ref}: {exc}") from exc
            broken = [
                f"{ref} is {_value(remote, ref) or 'absent'} on the remote, "
                f"expected {old or 'absent'}"
                for ref, (old, _) in updates.items()
                if _value(remote, ref) != old
            ]
            if broken:
                raise PushRejected(f"lease broken: {'; '.join(broken)}")
            leases = [old for old, _ in updates.values() if old is not None]
            # As a server advertises its branches: a branch created on top of one (the
            # first push of ``auto``) sends only what changed, not the whole tree. Read
            # only then: with a lease on every ref, the leases say what the remote has.
            created = len(leases) < len(updates)
            has = {*leases, *(_heads(remote) if created else ())}
            chosen = pushobjects.select(repo, [new for _, new in updates.values()], has, leases)
            if chosen is None:
                raise sendpack.Unsupported("no commit of the remote found close to the new ones")
            if chosen:
                try:
                    store.pack_into(repo, chosen, remote_path / "objects" / "pack")
                except OSError as exc:
                    raise GitFailure(f"could not write into {remote_path}: {exc}") from exc
            for ref, (_, new) in updates.items():
                txn.set_target(ref, new, message="push")
    except pygit2.GitError as exc:
        # The refs could not be moved (a lock taken meanwhile, a disk error): nothing moved.
        raise GitFailure(f"push into {remote_path} failed: {exc}") from exc


def _value(remote: pygit2.Repository, ref: str) -> pygit2.Oid | None:
    found = remote.references.get(ref)
    target = found.target if found is not None else None
    return target if isinstance(target, pygit2.Oid) else None


def _heads(remote: pygit2.Repository) -> list[pygit2.Oid]:
    found = (_value(remote, name) for name in remote.references if name.startswith("refs/heads/"))
    return [oid for oid in found if oid is not None]

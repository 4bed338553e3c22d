"""A persistent bare clone of one config repository, driven through pygit2.

Not thread-safe: every method must run on one thread (the git-writer's is its repo
process's main thread, see ``services/git_writer/host.py``).
The remote-tracking refs (``refs/remotes/origin/*``) are this clone's view of the remote;
commits are built as objects with TreeBuilder on the changed paths only, then pushed with a
lease on the remote value we built on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import cast

import pygit2
from pygit2.enums import FileMode, ObjectType

from waveline.shared.config import RepoConfig
from waveline.shared.errors import GitFailure, GitUnreachable, PushRejected, UnusableFile
from waveline.shared.gitengine import localpush, pushwire, sendpack, trailers
from waveline.shared.gitengine.remote import (
    Callbacks,
    Credentials,
    credentials_from_env,
    use_known_hosts,
)
from waveline.shared.gitengine.signing import Signer
from waveline.shared.gitengine.storage import MAX_PACKS, ObjectStore, Runner

# Credentials and credentials_from_env live in remote.py; callers import them from here too.
__all__ = ["REMOTE", "ZERO", "ConfigRepo", "Credentials", "credentials_from_env"]

logger = logging.getLogger(__name__)

ZERO = pygit2.Oid(hex="0" * 40)
REMOTE = "origin"
# Network timeouts of Waveline's own push when libgit2's are unset (HostInit's defaults).
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_IO_TIMEOUT_S = 30.0


@functools.lru_cache(maxsize=1024)
def ref_name(name: str) -> str:
    """The one str object for ``name``: pass this to ``references.get``/``lookup_reference``.

    pygit2 1.21.0 (libgit2 1.9) takes a reference to the name given to
    ``Repository.lookup_reference`` (which ``references.get`` calls) and never drops it, so
    a name built for each call is never freed: ~80 bytes per lookup, three lookups per
    commit, the git-writer's memory growing without bound in the soak (docs/benchmarks.md).
    Not reported upstream as far as we found; tests/unit/test_pygit2_leaks.py fails when
    pygit2 stops leaking, and then this goes. Each name passed from here leaks at most once
    (when it leaves the cache)."""
    return name


@dataclass
class ConfigRepo:
    """One config repository's bare clone."""

    name: str
    config: RepoConfig
    path: Path
    creds: Credentials = field(default_factory=Credentials)
    # Where new objects go (storage.ObjectStore); by default libgit2's loose files.
    store: InitVar[ObjectStore | None] = None
    # When set, every commit is signed with it (signing.py); None costs nothing.
    signer: Signer | None = None
    # file:// remotes: push through ``git receive-pack`` (the remote's hooks and checks
    # run, as on a server) rather than in process (localpush.py). Off by default: measured
    # in bench/push.py, receive-pack's connectivity check (which reads the remote tip's
    # whole tree) and its four processes cost 15 ms more per push at 2,000 files and 120 ms
    # at 200,000 (docs/benchmarks.md).
    receive_pack_for_files: bool = False
    _repo: pygit2.Repository | None = None
    objects: ObjectStore = field(init=False, repr=False)

    def __post_init__(self, store: ObjectStore | None) -> None:
        self.objects = store if store is not None else ObjectStore(self.path, hold=False)

    # -- opening and fetching ------------------------------------------------------------

    @property
    def repo(self) -> pygit2.Repository:
        if self._repo is None:
            self._repo = self._open()
        return self._repo

    def _open(self) -> pygit2.Repository:
        if not (self.path / "HEAD").exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            pygit2.init_repository(str(self.path), bare=True)
        repo = self.objects.open()
        if self.objects.holds:
            self._drop_dangling(repo)
        if REMOTE not in repo.remotes.names():
            repo.remotes.create(REMOTE, self.config.url, f"+refs/heads/*:refs/remotes/{REMOTE}/*")
        elif repo.remotes[REMOTE].url != self.config.url:
            repo.remotes.set_url(REMOTE, self.config.url)
        return repo

    def _drop_dangling(self, repo: pygit2.Repository) -> None:
        """Remote-tracking refs whose commit was only in a previous process's memory go;
        the next fetch brings them back from the remote."""
        for name in list(repo.references):
            if not name.startswith(f"refs/remotes/{REMOTE}/"):
                continue
            target = repo.references[name].target
            if isinstance(target, pygit2.Oid) and repo.get(target) is None:
                logger.info(
                    "repo %s: %s pointed at an unpacked object; refetching", self.name, name
                )
                repo.references.delete(name)

    def fetch(self) -> None:
        remote = self.repo.remotes[REMOTE]
        use_known_hosts(self.path, self.config, self.creds)
        try:
            remote.fetch(
                callbacks=Callbacks(self.config, self.creds), prune=pygit2.enums.FetchPrune.PRUNE
            )
        except pygit2.GitError as exc:
            # The remote did not answer as a remote should (refused, reset, timed out by
            # the libgit2 timeouts, a name that does not resolve): an outage to wait out.
            raise GitUnreachable(
                f"fetch of {self.name} failed: {_scrub(str(exc), self.creds)}"
            ) from exc

    def remote_ref(self, branch: str) -> pygit2.Oid | None:
        ref = self.repo.references.get(ref_name(f"refs/remotes/{REMOTE}/{branch}"))
        return ref.target if ref is not None else None  # type: ignore[return-value]

    # -- reading -------------------------------------------------------------------------

    def commit(self, oid: pygit2.Oid | str) -> pygit2.Commit:
        obj = self.repo.get(oid)
        if obj is None or obj.type != ObjectType.COMMIT:
            raise GitFailure(f"{oid} is not a commit in {self.name}", retriable=True)
        assert isinstance(obj, pygit2.Commit)
        return obj

    def read_file(
        self, commit: pygit2.Commit, path: str, max_bytes: int | None = None
    ) -> bytes | None:
        """The content of the file at ``path`` in ``commit`` (None when there is none).
        ``UnusableFile`` when it is larger than ``max_bytes``: told by the object's header
        (its size, read without inflating the object), so an oversized blob costs nothing."""
        try:
            entry = commit.tree[path]
        except KeyError:
            return None
        if entry.type != ObjectType.BLOB:
            return None
        if max_bytes is not None:
            _, size = self.repo.odb.read_header(entry.id)
            if size > max_bytes:
                raise UnusableFile(
                    path, "", f"{size:,} bytes, over the limit of {max_bytes:,} bytes"
                )
        blob = self.repo.get(entry.id)
        return blob.data if isinstance(blob, pygit2.Blob) else None

    def is_ancestor(self, ancestor: pygit2.Oid, descendant: pygit2.Oid) -> bool:
        """True when ``ancestor`` is ``descendant`` or one of its ancestors."""
        return ancestor == descendant or self.repo.descendant_of(descendant, ancestor)

    def walk(self, tip: pygit2.Oid, stop: pygit2.Oid | None = None) -> Iterator[pygit2.Commit]:
        """Commits from ``tip`` back (first parents), excluding ``stop`` and its ancestors."""
        walker = self.repo.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL)
        walker.simplify_first_parent()
        if stop is not None:
            walker.hide(stop)
        yield from walker

    # -- writing -------------------------------------------------------------------------

    def write_tree(self, base: pygit2.Tree | None, files: Mapping[str, bytes | None]) -> pygit2.Oid:
        return write_tree(self.repo, base, files)

    def create_commit(
        self,
        parent: pygit2.Oid,
        files: Mapping[str, bytes | None],
        message: str,
    ) -> pygit2.Oid | None:
        """A commit on ``parent`` writing ``files``; None when the tree would not change.
        Signed when the repo has a ``signer`` (``SigningFailed`` when it does not sign)."""
        parent_commit = self.commit(parent)
        tree = self.write_tree(parent_commit.tree, files)
        if tree == parent_commit.tree_id:
            return None
        author = pygit2.Signature(self.config.author.name, self.config.author.email)
        if self.signer is None:
            return self.repo.create_commit(None, author, author, message, tree, [parent])
        # The object's bytes are what git verify-commit checks the signature against.
        # (pygit2 1.21's stub types the result as an Oid; it is the object's text.)
        content = cast(str, self.repo.create_commit_string(author, author, message, tree, [parent]))
        signature = self.signer.sign(content.encode())
        return self.repo.create_commit_with_signature(content, signature, "gpgsig")

    def push(self, updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]]) -> None:
        """Push ``{branch: (expected remote value or None if absent, new value)}`` with a
        lease on each expected value (``--force-with-lease``): a ref moves only from the
        value we built on, fast-forward or not (an eviction rewrites ``auto``). Raises
        ``PushRejected`` on any refusal.

        ``http(s)://`` remotes (and ``file://`` ones with ``receive_pack_for_files``) get
        Waveline's own push (pushwire.py), all refs in one atomic update, sending only the
        objects that changed since a commit the remote has (pushobjects.py): libgit2's pack
        builder walks the remote tip's whole tree, a cost growing with the repository
        (docs/benchmarks.md). Other ``file://`` remotes get the same objects written into
        them in process (localpush.py). SSH remotes, and a push whose objects cannot be
        chosen that way (``sendpack.Unsupported``, raised before anything is sent), go
        through libgit2."""
        url = self.config.url
        if pushwire.supports(url):
            local = pushwire.is_local(url) and not self.receive_pack_for_files
            try:
                if local:
                    # Interned: the remote's refs are looked up by these names (ref_name).
                    refs = {ref_name(f"refs/heads/{b}"): update for b, update in updates.items()}
                    path = Path(pushwire.local_path(url))
                    localpush.push(self.repo, self.objects, path, refs)
                else:
                    self._push_own(updates)
            except sendpack.Unsupported as why:
                logger.info("repo %s: pushing through libgit2: %s", self.name, why)
            else:
                self._track(updates)
                return
        self._push_libgit2(updates)

    def _push_own(self, updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]]) -> None:
        settings = pygit2.settings
        timeouts = sendpack.Timeouts(
            # libgit2's settings (the git-writer sets them at start); 0 means none was set.
            connect_s=settings.server_connect_timeout / 1000 or DEFAULT_CONNECT_TIMEOUT_S,
            io_s=settings.server_timeout / 1000 or DEFAULT_IO_TIMEOUT_S,
        )
        wire = pushwire.open_wire(self.config, self.creds, timeouts)
        refs = {f"refs/heads/{branch}": update for branch, update in updates.items()}
        try:
            pushwire.push_commits(wire, self.repo, self.objects, refs)
        except (PushRejected, sendpack.Unsupported):
            raise
        except GitFailure as exc:
            raise type(exc)(_scrub(str(exc), self.creds), retriable=exc.retriable) from exc

    def _track(self, updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]]) -> None:
        for branch, (_, new) in updates.items():
            if self.remote_ref(branch) != new:
                self.repo.references.create(f"refs/remotes/{REMOTE}/{branch}", new, force=True)

    def _push_libgit2(self, updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]]) -> None:
        specs: list[str] = []
        leases: dict[str, pygit2.Oid] = {}
        for branch, (expected, new) in updates.items():
            # The commit itself as the source: no local ref to write per push. Always
            # forced: the lease already pins the old value, and the wire protocol carries
            # no force flag (the remote's own rules still apply). Unforced, libgit2 checks
            # that the old value is an ancestor (a merge-base walk), and the walk goes down
            # every commit of the same second (ties in commit time): at 100 commits a second
            # that was ~100 object reads per push, through the Python memory backend.
            specs.append(f"+{new}:refs/heads/{branch}")
            leases[f"refs/heads/{branch}"] = expected if expected is not None else ZERO
        callbacks = Callbacks(self.config, self.creds, leases)
        remote = self.repo.remotes[REMOTE]
        use_known_hosts(self.path, self.config, self.creds)
        try:
            remote.push(specs, callbacks=callbacks)
        except PushRejected:
            raise
        except pygit2.GitError as exc:
            if callbacks.lease_broken:
                raise PushRejected(f"lease broken: {callbacks.lease_broken}") from exc
            # Refusals come through the callbacks (above, and ``rejected`` below); an error
            # of the transport itself is the remote not answering.
            raise GitUnreachable(
                f"push to {self.name} failed: {_scrub(str(exc), self.creds)}"
            ) from exc
        if callbacks.rejected:
            raise PushRejected(f"remote rejected {callbacks.rejected}")
        # libgit2's push moves the remote-tracking refs itself; written only where not.
        self._track(updates)

    def compact(self, max_packs: int = MAX_PACKS, run: Runner | None = None) -> int:
        """``ObjectStore.compact`` of this clone's objects (the held ones packed, loose
        ones packed, small packs merged), then the open repository dropped so the new pack
        is seen and deleted ones are not. Returns how many objects were packed."""
        written = self.objects.compact(max_packs, run)
        if written:
            self._repo = None
        return written

    def forget(self) -> None:
        """Drop the open repository (it is reopened on next use): libgit2 adds packs it
        finds but keeps deleted ones open, with their disk space, until then."""
        self._repo = None

    def trailers_of(self, oid: pygit2.Oid) -> trailers.Trailers:
        return trailers.parse(self.commit(oid).message)


def _scrub(text: str, creds: Credentials) -> str:
    """libgit2 messages may echo a URL with userinfo; never let a token through."""
    for secret in (creds.token, creds.ssh_private_key):
        if secret:
            text = text.replace(secret, "***")
    return text


def write_tree(
    repo: pygit2.Repository, base: pygit2.Tree | None, files: Mapping[str, bytes | None]
) -> pygit2.Oid:
    """A tree equal to ``base`` with ``files`` replaced (None deletes), touching only their
    directories: cost grows with the changed paths, not with the repository."""
    builder = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
    nested: dict[str, dict[str, bytes | None]] = {}
    for path, data in files.items():
        head, _, rest = path.partition("/")
        if rest:
            nested.setdefault(head, {})[rest] = data
        elif data is None:
            if builder.get(head) is not None:
                builder.remove(head)
        else:
            builder.insert(head, repo.create_blob(data), FileMode.BLOB)
    for head, sub in nested.items():
        entry = base[head] if base is not None and head in base else None
        subtree = repo.get(entry.id) if entry is not None else None
        oid = write_tree(repo, subtree if isinstance(subtree, pygit2.Tree) else None, sub)
        tree = repo.get(oid)
        assert isinstance(tree, pygit2.Tree)
        if len(tree) == 0:
            if builder.get(head) is not None:
                builder.remove(head)
        else:
            builder.insert(head, oid, FileMode.TREE)
    return builder.write()

"""The git-writer's repo process: one child process per config repo holds the bare clone, the
objects kept in memory and the batch being built, and does all libgit2 work.

Why a process: a build and a push call back into Python for every object the clone holds in
memory, and each callback waited for the GIL the service's event loop held (Kafka, Postgres,
publishing the previous round's events). On two busy cores a one-command build took 0.6 ms
alone and ~2 ms inside the service, a one-commit push 3-4 ms alone and 6-7 ms inside it.

``RepoHost`` is the child's side: it implements ``protocol.RepoCalls`` (``build``, ``flush``,
``discard``, ``settle``, ``use_token``, ``close``), each call run on the child's main thread
one at a time, so the libgit2 objects never cross threads. Its objects are held in memory by
an ``ObjectStore`` and packed beside the builds by ``BackgroundPacking`` (the storage
package, shared/gitengine/storage/).

``main`` is the child's request loop (``python -m waveline.services.git_writer.host FD``, see
``client.RepoProcess`` and ``protocol``): it ends on ``Close``, or when the service's end of
the socket closes (the service died) without packing, like a killed process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pygit2

from waveline.services.git_writer.admit import Refused
from waveline.services.git_writer.apply import Applier, Command, Result
from waveline.services.git_writer.protocol import (
    Built,
    Close,
    Known,
    RepoCalls,
    answer,
    frame,
    read_frame,
)
from waveline.shared import cpu
from waveline.shared.config import RepoConfig, WavelineConfig
from waveline.shared.errors import GitFailure, PreconditionFailed
from waveline.shared.gitengine.repo import ConfigRepo, credentials_from_env
from waveline.shared.gitengine.signing import Signer
from waveline.shared.gitengine.storage import BackgroundPacking, ObjectStore
from waveline.shared.logs import setup_logging
from waveline.shared.models.git import AlignAuto

# The child runs this module as __main__; its records carry the module's own name.
logger = logging.getLogger("waveline.services.git_writer.host")


@dataclass(frozen=True)
class HostInit:
    """What the child needs to open its repo; the first message on the socket."""

    repo: str
    repo_config: RepoConfig
    config: WavelineConfig
    path: Path
    log_level: str
    log_secrets: list[str]
    gil_switch_interval_ms: float
    # libgit2's network timeouts (process-wide settings, set once at start).
    connect_timeout_s: float = 10.0
    io_timeout_s: float = 30.0
    # Files of the config repo larger than this are refused unread; the memory objects are
    # packed once they hold this much (as well as every so many updates).
    max_file_bytes: int = 1024 * 1024
    memory_pack_bytes: int = 64 * 1024 * 1024
    object_cache_bytes: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        """Made by the service at start (``GitWriter.on_started``): a signing key that
        cannot sign is a ``ConfigError`` there, before any command, not a repo process
        failing every build. The child receives this object pickled (no second check)."""
        signer = self.signer()
        if signer is not None:
            signer.close()

    def signer(self) -> Signer | None:
        """The repo's signer, its key read from the environment (``ConfigError`` when it
        cannot sign); None when the repo's commits are not signed."""
        signing = self.repo_config.signing
        return Signer(signing, f"repos.{self.repo}") if signing is not None else None


class RepoHost(RepoCalls):
    """One repo's clone and applier, with packing on a thread beside them."""

    def __init__(self, init: HostInit) -> None:
        self.store = ObjectStore(init.path)
        self.signer = init.signer()
        repo = ConfigRepo(
            name=init.repo,
            config=init.repo_config,
            path=init.path,
            creds=credentials_from_env(init.repo_config),
            store=self.store,
            signer=self.signer,
        )
        self.applier = Applier(
            repo,
            init.config,
            max_file_bytes=init.max_file_bytes,
            compact_at_bytes=init.memory_pack_bytes,
        )
        # Where an unexpected exception was raised, so its traceback is logged once.
        self._unexpected: set[tuple[str, str, int]] = set()
        # On a thread beside the builds (ObjectStore says why that is safe).
        self.packing = BackgroundPacking(self.store, init.repo)

    def build(self, todo: Sequence[Command], last_try: bool, max_age_s: float) -> Built:
        """Apply ``todo`` as successive commits on fresh state (fetched when older than
        ``max_age_s``, or now on the last try or for an AlignAuto). A failure of one
        command fails the build, except on the last try, where it is returned beside the
        others' results."""
        self._collect_packing()
        started = time.perf_counter()
        applier = self.applier
        # An AlignAuto asks to look at the remote now (watched moved outside Waveline).
        if last_try or any(isinstance(cmd, AlignAuto) for cmd in todo):
            applier.refresh()
        else:
            applier.refresh_if_stale(max_age_s)
        fetched = time.perf_counter()
        results: dict[uuid.UUID, Result] = {}
        failed: list[tuple[int, GitFailure]] = []
        for position, cmd in enumerate(todo):
            if cmd.command_id in results:
                continue  # the same command twice in one batch: its first result stands
            mark = applier.mark()
            try:
                results[cmd.command_id] = applier.apply(cmd)
            except Refused as exc:
                results[cmd.command_id] = Result("rejected", reason=str(exc), rule=exc.rule)
            except PreconditionFailed as exc:
                results[cmd.command_id] = Result("rejected", reason=str(exc))
            except GitFailure as exc:
                if not last_try:
                    raise
                failed.append((position, GitFailure(f"failed twice: {exc}", retriable=False)))
            except pygit2.GitError:
                raise
            except Exception as exc:  # a bug meeting odd input: see _reject_unexpected
                applier.rewind(mark)
                results[cmd.command_id] = Result(
                    "rejected", reason=self._reject_unexpected(cmd, exc)
                )
        done = time.perf_counter()
        timings = {
            "fetch_ms": round((fetched - started) * 1000, 3),
            "apply_ms": round((done - fetched) * 1000, 3),
            "batch_size": float(len(todo)),
        }
        return results, failed, timings

    def _reject_unexpected(self, cmd: Command, exc: Exception) -> str:
        """The reason a command that raised what no rule expects is rejected with. Retrying
        would meet the same content and fail the same way, for ever, holding every command
        behind it; so the command alone is rejected, what it built is dropped, and the
        traceback is logged the first time that place raises it (every command meeting the
        same bug would otherwise log it again)."""
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        site = (type(exc).__name__, frame.filename, frame.lineno or 0)
        if site in self._unexpected:
            logger.warning(
                "repo %s: rejecting command %s: %s: %s (traceback logged before)",
                self.applier.repo.name,
                cmd.command_id,
                type(exc).__name__,
                exc,
            )
        else:
            self._unexpected.add(site)
            logger.error(
                "repo %s: rejecting command %s: unexpected error",
                self.applier.repo.name,
                cmd.command_id,
                exc_info=exc,
            )
        return f"unexpected error applying the command: {type(exc).__name__}: {exc}"[:500]

    def flush(self) -> None:
        """Push what the last build made (once, with leases), then start packing if due.

        The objects held in memory are bounded: when the next packing is due while the last
        one still runs (its niced process starved of CPU, or a slow disk), this waits for it
        before starting the next, so at most two rounds of objects are held and the writer
        slows down instead of growing without end (a probe on a busy machine piled up
        126,600 objects otherwise)."""
        self._collect_packing()
        self.applier.flush()
        if not self.applier.compaction_due():
            return
        if self.packing.running:
            self._wait_for_packing()
        self.packing.start()

    def _wait_for_packing(self) -> None:
        held = self.store.held_count
        waited = time.perf_counter()
        if self.packing.wait():
            self.applier.repo.forget()
        logger.warning(
            "repo %s: packing fell behind (%d objects in memory): builds waited %.0f ms",
            self.applier.repo.name,
            held,
            (time.perf_counter() - waited) * 1000,
        )

    def discard(self) -> None:
        self.applier.discard()

    def use_token(self, token: str) -> None:
        """The git token from now on: a GitHub App's installation token, renewed by the
        service (client.RepoProcess) before it expires and handed over here."""
        self.applier.repo.creds.token = token

    def refresh(self) -> None:
        """Fetch the remote now: at start, so the first command does not wait for the
        clone's first fetch (the whole repository, seconds for a big one)."""
        self._collect_packing()
        self.applier.refresh()

    def settle(self, known: Known) -> Known:
        """After a crash between 'pushing' and 'done': keep the results whose effect reached
        the remote (their recorded events are the truth), drop the others so they are
        redone."""
        self._collect_packing()
        applier = self.applier
        applier.refresh()
        settled: Known = {}
        for cid, (state, event) in known.items():
            if state == "done" or event.outcome in {"noop", "rejected"}:
                settled[cid] = (state, event)
                continue
            tip = applier.repo.remote_ref(event.branch or "")
            landed = (
                tip is not None
                and event.sha is not None
                and applier.repo.repo.get(event.sha) is not None
                and applier.repo.is_ancestor(applier.repo.commit(event.sha).id, tip)
            )
            if landed:
                settled[cid] = ("done", event)
        return settled

    def close(self) -> int:
        """Pack what only memory holds (a restart would otherwise fetch back what is on the
        remote and lose what no branch points at any more, such as evicted commits).
        Returns how many objects were packed."""
        if self.packing.close():
            self.applier.repo.forget()
        packed = 0
        if self.store.held_count:
            try:
                packed = self.applier.repo.compact()
            except (pygit2.GitError, OSError):
                logger.exception("repo %s: packing on shutdown failed", self.applier.repo.name)
        self.drop_signing_key()
        return packed

    def drop_signing_key(self) -> None:
        """Remove the signing key's copy (and stop its GnuPG agent). Called by ``main``,
        not over the wire."""
        if self.signer is not None:
            self.signer.close()

    def _collect_packing(self) -> None:
        """Once packing finished: drop the build's repository object, which still holds the
        packs that were merged and deleted (it is reopened on next use)."""
        if self.packing.collect():
            self.applier.repo.forget()


def _reply(call_id: int, host: RepoCalls, request: object) -> bytes:
    try:
        return frame((call_id, True, answer(host, request)))
    except Exception as exc:  # every failure goes back to the caller
        # The service logs it at its boundary; the child's stack travels along as a note.
        exc.add_note("in the repo process:\n" + "".join(traceback.format_tb(exc.__traceback__)))
        try:
            return frame((call_id, False, exc))
        except Exception:  # an exception pickle cannot carry
            text = "".join(traceback.format_exception(exc))
            return frame((call_id, False, RuntimeError(f"repo process: {text}")))


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[1]))
    rfile = sock.makefile("rb")
    wfile = sock.makefile("wb")
    # Ctrl-C and a stop signal reach the whole process group; the service decides when this
    # process ends (close, or its end of the socket closing).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Started in a session of its own (client.RepoProcess): the git work is the service's,
    # so it keeps the service's CPU weight (shared/cpu.py).
    cpu.own_session()
    try:
        init: HostInit = read_frame(rfile)
    except EOFError:
        return 0
    setup_logging("git-writer", init.log_level, init.log_secrets)
    sys.setswitchinterval(init.gil_switch_interval_ms / 1000)
    # Without them libgit2 waits forever on a remote that accepts and never answers.
    pygit2.settings.server_connect_timeout = int(init.connect_timeout_s * 1000)
    pygit2.settings.server_timeout = int(init.io_timeout_s * 1000)
    pygit2.settings.cache_max_size(init.object_cache_bytes)
    host = RepoHost(init)
    while True:
        try:
            call_id, request = read_frame(rfile)
        except EOFError:
            # The service is gone: end like a killed process, memory objects and all (what
            # was pushed comes back with the next fetch; nothing refers to the rest). The
            # signing key's copy goes first: os._exit runs no exit handlers.
            host.drop_signing_key()
            os._exit(0)
        wfile.write(_reply(call_id, host, request))
        wfile.flush()
        if isinstance(request, Close):
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

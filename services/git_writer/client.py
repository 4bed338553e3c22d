"""The service's side of a repo process (``host.py``): start it, call it, restart it.

Protocol (``protocol.py``), over a Unix socket pair: the service sends ``HostInit`` once,
then ``(call_id, request)``, a request being one of ``protocol.REQUESTS``; the child answers
each call, in order, with ``(call_id, ok, value)``, where ``value`` is the result or the
exception raised (``GitFailure`` and ``PreconditionFailed`` keep their class and
``retriable``). ``RepoProcess`` offers the calls of ``protocol.RepoCalls`` as coroutines.

A child that dies fails the calls in flight with a retriable ``GitFailure``: the batch is
built again from fresh state (in a new child), exactly as after a failed push. Every call has
a deadline (``deadline_s``): a child that has not answered by then is killed, which fails the
call the same way, so a stuck libgit2 call (or anything else) never holds the writer. The clone on
disk is a cache the new child reopens (dropping remote-tracking refs to objects that lived
only in the dead child's memory).

A repo whose git authenticates with a GitHub App (``RepoConfig.git_uses_app``) gets its token
from the service: the token source (shared/forge/github_app.py) lives here, and before each
call that may fetch or push the current token is handed to the child when it changed (a
renewal) or the child is new, so the child never holds an expired one for long.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from pydantic import SecretStr

from waveline.services.git_writer.apply import Command
from waveline.services.git_writer.host import HostInit
from waveline.services.git_writer.protocol import (
    HEADER,
    Build,
    Built,
    Close,
    Discard,
    Flush,
    Known,
    Refresh,
    Request,
    Settle,
    UseToken,
    frame,
    unpack,
)
from waveline.shared.errors import GitFailure, GitUnreachable
from waveline.shared.forge.base import ForgeError
from waveline.shared.forge.github_app import TokenSource
from waveline.shared.gitengine.remote import CredentialsRefused

logger = logging.getLogger(__name__)

HOST_MODULE = "waveline.services.git_writer.host"

R = TypeVar("R")


class RepoProcess:
    """One repo's child process, started on first use and again after it died."""

    def __init__(
        self, init: HostInit, deadline_s: float = 120.0, tokens: TokenSource | None = None
    ) -> None:
        self._init = init
        self.deadline_s = deadline_s
        self._tokens = tokens
        # The newest token, and (child pid, token) last handed over.
        self._token: str | None = None
        self._handed: tuple[int | None, str] | None = None
        # Start times of the calls in flight (monotonic), for liveness.
        self._started: dict[int, float] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies: asyncio.Task[None] | None = None
        self._calls: dict[int, asyncio.Future[tuple[bool, Any]]] = {}
        self._ids = itertools.count()
        self._starting = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and self._writer is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start the child unless it runs (idempotent; calls start it too)."""
        async with self._starting:
            if self.running:
                return
            ours, theirs = socket.socketpair()
            try:
                fd = theirs.fileno()
                # A session of its own: Ctrl-C or a stop signal sent to the service's group
                # must not end it before the service told it to pack and exit.
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    HOST_MODULE,
                    str(fd),
                    pass_fds=(fd,),
                    start_new_session=True,
                )
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            reader, writer = await asyncio.open_unix_connection(sock=ours)
            writer.write(frame(self._init))
            if self._token is not None:
                # A new child hears the token first, before any call that could need it
                # (its answer, to a call id nobody waits for, is dropped).
                writer.write(frame((next(self._ids), UseToken(self._token))))
                self._handed = (proc.pid, self._token)
            self._proc, self._writer = proc, writer
            self._replies = asyncio.create_task(
                self._read_replies(proc, reader), name=f"git-{self._init.repo}-replies"
            )
            logger.info("repo %s: repo process %d started", self._init.repo, proc.pid)

    async def _read_replies(
        self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader
    ) -> None:
        try:
            while True:
                header = await reader.readexactly(HEADER)
                data = await reader.readexactly(int.from_bytes(header, "big"))
                call_id, ok, value = unpack(data)
                call = self._calls.pop(call_id, None)
                if call is not None and not call.done():
                    call.set_result((ok, value))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the child closed its end: it exited (see below)
        finally:
            if self._proc is proc:
                # Also when this task is cancelled: with the socket closed, the child exits.
                self._proc = None
                if self._writer is not None:
                    self._writer.close()
                self._writer = None
            code: int | None = None
            try:
                code = await proc.wait()
            finally:
                calls, self._calls = self._calls, {}
                for call in calls.values():
                    if not call.done():
                        call.set_exception(self._exited(code))
                if code != 0 or calls:
                    logger.warning(
                        "repo %s: repo process exited with code %s (%d calls in flight)",
                        self._init.repo,
                        code,
                        len(calls),
                    )

    def _exited(self, code: int | None) -> GitFailure:
        return GitFailure(
            f"repo {self._init.repo}: its repo process exited (code {code})", retriable=True
        )

    async def call(self, request: Request[R]) -> R:
        """Have the child's ``RepoHost`` answer ``request``; raises what it raised, or a
        retriable ``GitFailure`` when the child died or missed the deadline."""
        await self.start()
        writer, proc = self._writer, self._proc
        assert writer is not None and proc is not None
        call_id = next(self._ids)
        reply: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = reply
        self._started[call_id] = time.monotonic()
        try:
            try:
                writer.write(frame((call_id, request)))
                await writer.drain()
            except ConnectionError as exc:
                self._calls.pop(call_id, None)
                raise self._exited(None) from exc
            try:
                async with asyncio.timeout(self.deadline_s):
                    ok, value = await asyncio.shield(reply)
            except TimeoutError:
                what = type(request).__name__
                self._kill(proc, f"{what} did not answer within {self.deadline_s:g} s")
                # The reply task fails the call once the killed child is reaped.
                ok, value = await reply
        finally:
            self._started.pop(call_id, None)
        if not ok:
            raise cast(BaseException, value)
        return cast(R, value)

    def _kill(self, proc: asyncio.subprocess.Process, why: str) -> None:
        if proc.returncode is not None:
            return
        logger.error(
            "repo %s: %s; killing repo process %d (the batch is retried in a new one)",
            self._init.repo,
            why,
            proc.pid,
        )
        proc.kill()

    def stuck_for(self) -> float:
        """Seconds the oldest call in flight has waited (0 when none): a repo process is
        stuck when this is past the deadline, i.e. even killing it did not end the call."""
        if not self._started:
            return 0.0
        return time.monotonic() - min(self._started.values())

    async def hand_token(self) -> None:
        """Give the child the current git token when it changed or the child is new; no-op
        without a token source. A token that cannot be had is a ``GitUnreachable`` when
        GitHub may answer later (waited out like an outage), else a permanent
        ``GitFailure`` saying why."""
        if self._tokens is None:
            return
        try:
            token = (await self._tokens.token()).get_secret_value()
        except ForgeError as exc:
            what = f"repo {self._init.repo}: no GitHub App token for git: {exc}"
            raise (
                GitUnreachable(what) if exc.retriable else GitFailure(what, retriable=False)
            ) from None
        self._token = token
        await self.start()
        if self._handed != (self.pid, token):
            await self.use_token(token)
            self._handed = (self.pid, token)

    async def _with_token(self, request: Request[R]) -> R:
        """``call`` after handing the current token over. A GitHub App token the remote
        refused (expired during a slow call, or revoked) is handed back to its source and
        the failure made retriable: the caller's retry gets a newly minted one."""
        await self.hand_token()
        try:
            return await self.call(request)
        except CredentialsRefused as exc:
            if self._tokens is None or self._token is None:
                raise
            self._tokens.refused(SecretStr(self._token))
            raise GitFailure(
                f"{exc} (a GitHub App token: a new one is minted for the retry)", retriable=True
            ) from exc

    # -- protocol.RepoCalls, as coroutines ---------------------------------------------

    async def build(self, todo: Sequence[Command], last_try: bool, max_age_s: float) -> Built:
        return await self._with_token(Build(todo, last_try, max_age_s))

    async def flush(self) -> None:
        await self._with_token(Flush())

    async def discard(self) -> None:
        await self.call(Discard())

    async def settle(self, known: Known) -> Known:
        return await self._with_token(Settle(known))

    async def refresh(self) -> None:
        await self._with_token(Refresh())

    async def use_token(self, token: str) -> None:
        """Hand ``token`` to the child now (``hand_token`` does it when it changed)."""
        await self.call(UseToken(token))

    async def close(self) -> int:
        """Let the child pack what only its memory holds and exit; returns how many objects
        it packed. A no-op (0) when it is not running (a dead child's memory is gone
        anyway). The token source's connections are closed either way."""
        try:
            return await self._close_child()
        finally:
            if self._tokens is not None:
                await self._tokens.close()

    async def _close_child(self) -> int:
        if not self.running:
            return 0
        try:
            packed = await self.call(Close())
        except GitFailure:
            return 0  # it died meanwhile
        if packed:
            logger.info("repo %s: packed %d objects on shutdown", self._init.repo, packed)
        if self._replies is not None:
            await self._replies
        return packed

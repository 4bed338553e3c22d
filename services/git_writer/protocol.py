"""The calls the git-writer makes to a repo process, as one typed interface.

``RepoCalls`` is what a repo process answers. ``host.RepoHost`` implements it in the child;
``client.RepoProcess`` offers the same calls, as coroutines, in the service. On the wire each
call is a ``Request``: a frozen dataclass naming the call and carrying its arguments, which
knows the reply's type (``Request[R]``) and how to run itself on a ``RepoCalls``. The set of
requests is closed (``REQUESTS``): the child refuses anything else with a ``TypeError``
instead of looking a method up by name. tests/unit/test_repo_protocol.py fails when the
protocol, the requests and the two sides drift apart.

Framing: every message is a 4-byte big-endian length and a pickle; both ends are this code
base, one process and its own child, started from the same interpreter.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Generic, Protocol, TypeVar

from waveline.services.git_writer.apply import Command, Result
from waveline.shared.errors import GitFailure
from waveline.shared.models.git import GitEvent

# A built batch: results by command id, (position in the batch, failure) of the commands
# that failed alone on the last try, timings.
Built = tuple[dict[uuid.UUID, Result], list[tuple[int, GitFailure]], dict[str, float]]
# Recorded results by command id: (state, event).
Known = dict[uuid.UUID, tuple[str, GitEvent]]
HEADER = 4

R = TypeVar("R")


class RepoCalls(Protocol):
    """What a repo process answers, each call run on its main thread one at a time."""

    def build(self, todo: Sequence[Command], last_try: bool, max_age_s: float) -> Built: ...

    def flush(self) -> None: ...

    def discard(self) -> None: ...

    def settle(self, known: Known) -> Known: ...

    def refresh(self) -> None: ...

    def use_token(self, token: str) -> None: ...

    def close(self) -> int: ...


class Request(Generic[R]):
    """One call on the wire; ``run`` makes it on ``host`` and returns its reply."""

    def run(self, host: RepoCalls) -> R:
        raise NotImplementedError


@dataclass(frozen=True)
class Build(Request[Built]):
    todo: Sequence[Command]
    last_try: bool
    max_age_s: float

    def run(self, host: RepoCalls) -> Built:
        return host.build(self.todo, self.last_try, self.max_age_s)


@dataclass(frozen=True)
class Flush(Request[None]):
    def run(self, host: RepoCalls) -> None:
        host.flush()


@dataclass(frozen=True)
class Discard(Request[None]):
    def run(self, host: RepoCalls) -> None:
        host.discard()


@dataclass(frozen=True)
class Settle(Request[Known]):
    known: Known

    def run(self, host: RepoCalls) -> Known:
        return host.settle(self.known)


@dataclass(frozen=True)
class Refresh(Request[None]):
    def run(self, host: RepoCalls) -> None:
        host.refresh()


@dataclass(frozen=True)
class UseToken(Request[None]):
    token: str

    def __repr__(self) -> str:
        return "UseToken(token='***')"  # a secret: never in a log line or a traceback

    def run(self, host: RepoCalls) -> None:
        host.use_token(self.token)


@dataclass(frozen=True)
class Close(Request[int]):
    def run(self, host: RepoCalls) -> int:
        return host.close()


# Every request a repo process answers: one per method of RepoCalls.
REQUESTS: tuple[type[Request[Any]], ...] = (
    Build,
    Flush,
    Discard,
    Settle,
    Refresh,
    UseToken,
    Close,
)


def answer(host: RepoCalls, request: object) -> object:
    """Run ``request`` on ``host``; ``TypeError`` for anything but one of ``REQUESTS``."""
    if type(request) not in REQUESTS:
        raise TypeError(f"unknown repo process call {type(request).__name__}")
    assert isinstance(request, Request)
    return request.run(host)


def read_frame(stream: BinaryIO) -> Any:
    """One length-prefixed pickle; EOFError when the peer closed its end."""
    header = stream.read(HEADER)
    if len(header) < HEADER:
        raise EOFError
    size = int.from_bytes(header, "big")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return unpack(data)


def unpack(data: bytes) -> Any:
    # Only the two ends of a socket pair made by client.RepoProcess, one process and its own
    # child, write these: nothing untrusted is unpickled.
    return pickle.loads(data)  # noqa: S301


def frame(value: Any) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(HEADER, "big") + data

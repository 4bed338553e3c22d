"""Waveline's own push over git's protocol (sendpack.py): ``push`` drives one exchange over
a ``Wire``, ``git receive-pack`` run locally for ``file://`` remotes (``FileWire``) or smart
HTTP for ``http(s)://`` ones (pushhttp.py). SSH and scp-like remotes are not handled here
(``supports``): libgit2 pushes to them. A refusal is ``PushRejected``.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Protocol

import pygit2

from waveline.shared.config import RepoConfig
from waveline.shared.errors import GitFailure, GitUnreachable, PushRejected
from waveline.shared.gitengine import pushobjects, sendpack
from waveline.shared.gitengine.pushhttp import HttpWire
from waveline.shared.gitengine.remote import Credentials
from waveline.shared.gitengine.storage import ObjectStore
from waveline.shared.gitengine.transport import origin_of

# Variables that would point a local receive-pack at another repository than its argument,
# at another object directory (a quarantine), or change its configuration from outside.
_GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PROTOCOL",
    "GIT_QUARANTINE_PATH",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
)
_GIT_CONFIG_PREFIXES = ("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")
# How long a receive-pack past its deadline gets to end on SIGTERM before SIGKILL.
KILL_GRACE_S = 1.0


class Wire(Protocol):
    def advertise(self) -> list[bytes]:
        """The advertisement's pkt-line payloads."""

    def send(self, request: bytes) -> bytes:
        """Send the commands and pack; the report's bytes."""

    def close(self) -> None: ...


def supports(url: str) -> bool:
    """True for the remotes this module pushes to: file paths and ``file://``, and
    ``http(s)://`` without credentials in the URL (libgit2 handles those)."""
    scheme = origin_of(url).scheme
    if scheme == "file":
        return "://" not in url or urllib.parse.urlsplit(url).netloc in ("", "localhost")
    if scheme in ("http", "https"):
        return "@" not in urllib.parse.urlsplit(url).netloc
    return False


def is_local(url: str) -> bool:
    """True for a file path or ``file://`` URL."""
    return origin_of(url).scheme == "file"


def push(
    wire: Wire,
    updates: Mapping[str, tuple[str, str]],
    pack_for: Callable[[sendpack.Advertisement], bytes],
) -> None:
    """Push ``{ref: (expected old hex or zero, new hex)}`` in one atomic update over
    ``wire``: the leases checked against the advertisement first (``PushRejected``, nothing
    sent), then the commands and ``pack_for``'s pack (``Unsupported`` from it, or from the
    capabilities, sends nothing). ``PushRejected`` when the remote refuses a ref."""
    try:
        ad = sendpack.parse_advertisement(wire.advertise())
        broken = sendpack.lease_breaks(ad.refs, {ref: old for ref, (old, _) in updates.items()})
        if broken:
            raise PushRejected(f"lease broken: {'; '.join(broken)}")
        caps = sendpack.capabilities_for(ad, len(updates))
        pack = pack_for(ad)
        answer = wire.send(sendpack.commands(updates, caps) + pack)
    finally:
        wire.close()
    report = sendpack.parse_report(answer)
    if report.unpack != "ok":
        raise GitFailure(f"the remote could not unpack the push: {report.unpack}")
    refused = report.refused(list(updates))
    if refused:
        raise PushRejected(f"remote rejected {refused}")


def push_commits(
    wire: Wire,
    repo: pygit2.Repository,
    store: ObjectStore,
    updates: Mapping[str, tuple[pygit2.Oid | None, pygit2.Oid]],
) -> None:
    """``push`` of ``{ref: (expected value or None if absent, new commit)}`` from ``repo``:
    the objects chosen by pushobjects.py against what the remote advertises and the leases,
    packed by ``store``; ``Unsupported`` when they cannot be chosen cheaply."""
    refs = {
        ref: (str(old) if old is not None else sendpack.ZERO_HEX, str(new))
        for ref, (old, new) in updates.items()
    }

    def pack_for(ad: sendpack.Advertisement) -> bytes:
        remote_has = {pygit2.Oid(hex=oid) for oid in (*ad.refs.values(), *ad.haves)}
        leases = [old for old, _ in updates.values() if old is not None]
        chosen = pushobjects.select(repo, [new for _, new in updates.values()], remote_has, leases)
        if chosen is None:
            raise sendpack.Unsupported("no commit of the remote found close to the new ones")
        out = io.BytesIO()
        store.pack_to(repo, chosen, out)
        return out.getvalue()

    push(wire, refs, pack_for)


# -- file:// -------------------------------------------------------------------------------


def local_path(url: str) -> str:
    if "://" not in url:
        return url
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path)


def receive_pack_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without what would make receive-pack act on something other than its
    argument, as configured there."""
    return {
        k: v
        for k, v in environ.items()
        if k not in _GIT_LOCATION_VARS and not k.startswith(_GIT_CONFIG_PREFIXES)
    }


class FileWire:
    """``git receive-pack -- <path>`` over its stdin and stdout, in a session (and process
    group) of its own. The advertisement, and the request with its report, each have one
    deadline, the io timeout: past it the group gets SIGTERM, then SIGKILL after
    ``KILL_GRACE_S`` (``GitUnreachable``). Once the report is read the process is left to
    finish on its own (its ``gc --auto`` and hooks run after the report) and reaped by a
    later push."""

    def __init__(self, url: str, timeouts: sendpack.Timeouts) -> None:
        _reap()
        self._path = local_path(url)
        self._io_s = timeouts.io_s
        self._deadline = time.monotonic() + self._io_s
        try:
            self._proc = subprocess.Popen(
                ["git", "receive-pack", "--", self._path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # Hook messages go to stderr; the report carries each ref's reason.
                stderr=subprocess.DEVNULL,
                env=receive_pack_env(os.environ),
                # Its own process group: a timeout ends its hooks and index-pack too.
                start_new_session=True,
            )
        except OSError as exc:
            raise GitUnreachable(f"could not run git receive-pack: {exc}") from exc
        self._sent = False

    def _left(self) -> float:
        """The time left before the deadline; past it the process group is ended and
        ``GitUnreachable`` raised."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            self._timed_out()
        return left

    def _timed_out(self) -> None:
        _end_group(self._proc)
        raise GitUnreachable(f"git receive-pack {self._path} timed out")

    def _read(self, size: int) -> bytes:
        out = self._proc.stdout
        assert out is not None
        fd = out.fileno()
        got = bytearray()
        while len(got) < size:
            if not select.select([fd], [], [], self._left())[0]:
                self._timed_out()
            chunk = os.read(fd, size - len(got))
            if not chunk:
                try:
                    code = self._proc.wait(max(self._deadline - time.monotonic(), 0.01))
                except subprocess.TimeoutExpired:
                    self._timed_out()
                raise GitUnreachable(
                    f"git receive-pack {self._path} ended early (exit code {code}; "
                    "not a git repository?)"
                )
            got += chunk
        return bytes(got)

    def _lines(self) -> list[bytes]:
        """pkt-line payloads up to a flush."""
        lines: list[bytes] = []
        while True:
            size = sendpack.pkt_length(self._read(4))
            if size == 0:
                return lines
            lines.append(self._read(size - 4))

    def advertise(self) -> list[bytes]:
        self._deadline = time.monotonic() + self._io_s
        return self._lines()

    def send(self, request: bytes) -> bytes:
        stdin = self._proc.stdin
        assert stdin is not None
        self._sent = True
        self._deadline = time.monotonic() + self._io_s
        fd = stdin.fileno()
        # Written without blocking: a receive-pack that stops reading cannot hold the push
        # past the deadline.
        os.set_blocking(fd, False)
        view = memoryview(request)
        try:
            while view:
                if not select.select([], [fd], [], self._left())[1]:
                    self._timed_out()
                with contextlib.suppress(BlockingIOError):
                    view = view[os.write(fd, view[: 1 << 16]) :]
            stdin.close()
        except OSError as exc:
            raise GitUnreachable(f"git receive-pack {self._path} stopped reading: {exc}") from exc
        return b"".join(sendpack.pkt(line) for line in self._lines()) + sendpack.FLUSH

    def close(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        if not self._sent:
            # Nothing sent: a flush ends receive-pack without any update.
            with contextlib.suppress(OSError):
                stdin.write(sendpack.FLUSH)
        with contextlib.suppress(OSError):
            stdin.close()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._proc.poll() is None:
            _finishing.append(self._proc)


# receive-pack processes past their report, still running their hooks and gc --auto.
_finishing: list[subprocess.Popen[bytes]] = []


def _reap() -> None:
    _finishing[:] = [proc for proc in _finishing if proc.poll() is None]


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to ``proc``'s process group, SIGKILL to it after ``KILL_GRACE_S``, then the
    leader reaped (waiting at most that long again; else left to ``_reap``). The leader is
    reaped only after the SIGKILL: unreaped, its pid (the group's id) cannot be reused."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    until = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < until and not _exited(proc):
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.wait(KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        _finishing.append(proc)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the process has ended, without reaping it."""
    if proc.returncode is not None:
        return True
    try:
        found = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return found is not None


def open_wire(config: RepoConfig, creds: Credentials, timeouts: sendpack.Timeouts) -> Wire:
    """The wire to ``config.url`` (which ``supports``)."""
    if is_local(config.url):
        return FileWire(config.url, timeouts)
    return HttpWire(config, creds, timeouts)

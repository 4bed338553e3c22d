"""The transports of Waveline's own push (sendpack.py's protocol): ``git receive-pack`` run
locally for ``file://`` remotes, smart HTTP for ``http(s)://`` ones. SSH and scp-like remotes
are not handled here (``supports``): libgit2 pushes to them.

HTTP follows the rules libgit2's callbacks apply (remote.py, transport.py): a token only
where ``transport.credential_refusal`` allows it (never over http:// without the repo's
opt-in, never to another origin; a redirect elsewhere is refused), certificates verified
(the default SSL context), the connect and read timeouts libgit2 is given. Outcomes map to
the same errors: refused credentials ``CredentialsRefused``, no answer ``GitUnreachable``,
an answer that is not git's protocol a permanent ``GitFailure``, a refusal ``PushRejected``.
No message carries the token (it only ever goes into the Authorization header).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import select
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from waveline.shared.config import RepoConfig
from waveline.shared.errors import GitFailure, GitUnreachable, PushRejected
from waveline.shared.gitengine import sendpack
from waveline.shared.gitengine.remote import Credentials, CredentialsRefused
from waveline.shared.gitengine.transport import credential_refusal, host_key_refusal, origin_of

# The most an answer may hold (an advertisement of many refs stays far below).
MAX_ANSWER = 64 * 1024 * 1024
_ADVERTISEMENT = "application/x-git-receive-pack-advertisement"
# Variables that would point a local receive-pack at another repository than its argument.
_GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PROTOCOL",
)


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    io_s: float


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


# -- file:// -------------------------------------------------------------------------------


def local_path(url: str) -> str:
    if "://" not in url:
        return url
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path)


class FileWire:
    """``git receive-pack <path>`` over its stdin and stdout. Each read waits at most the io
    timeout (then the process is killed: ``GitUnreachable``). Once the report is read the
    process is left to finish on its own (its ``gc --auto`` and hooks run after the report)
    and reaped by a later push."""

    def __init__(self, url: str, timeouts: Timeouts) -> None:
        _reap()
        env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
        self._path = local_path(url)
        self._io_s = timeouts.io_s
        try:
            self._proc = subprocess.Popen(
                ["git", "receive-pack", self._path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # Hook messages go to stderr; the report carries each ref's reason.
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            raise GitUnreachable(f"could not run git receive-pack: {exc}") from exc
        self._sent = False

    def _read(self, size: int) -> bytes:
        out = self._proc.stdout
        assert out is not None
        fd = out.fileno()
        got = bytearray()
        deadline = time.monotonic() + self._io_s
        while len(got) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._proc.kill()
                raise GitUnreachable(f"git receive-pack {self._path} timed out")
            chunk = os.read(fd, size - len(got))
            if not chunk:
                code = self._proc.wait()
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
            size = _length(self._read(4))
            if size == 0:
                return lines
            lines.append(self._read(size - 4))

    def advertise(self) -> list[bytes]:
        return self._lines()

    def send(self, request: bytes) -> bytes:
        stdin = self._proc.stdin
        assert stdin is not None
        self._sent = True
        try:
            stdin.write(request)
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


def _length(head: bytes) -> int:
    try:
        size = int(head, 16)
    except ValueError:
        raise sendpack.malformed(f"bad pkt-line length {head!r}") from None
    if 0 < size < 4:
        raise sendpack.malformed(f"bad pkt-line length {head!r}")
    return size


# -- http(s):// ----------------------------------------------------------------------------


class HttpWire:
    """Smart HTTP: ``GET <url>/info/refs?service=git-receive-pack``, then ``POST
    <url>/git-receive-pack``, on one connection when the server keeps it open."""

    def __init__(self, config: RepoConfig, creds: Credentials, timeouts: Timeouts) -> None:
        self._config = config
        self._creds = creds
        self._timeouts = timeouts
        self._base = config.url.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None
        self._sent_token = False

    def advertise(self) -> list[bytes]:
        ctype, body = self._request("GET", "/info/refs?service=git-receive-pack", None)
        if ctype != _ADVERTISEMENT:
            raise sendpack.malformed(f"info/refs answered {ctype or 'no type'}, not smart HTTP")
        return sendpack.http_advertisement(body)

    def send(self, request: bytes) -> bytes:
        _, body = self._request("POST", "/git-receive-pack", request)
        return body

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, parts: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = parts.hostname or "", parts.port
            conn: http.client.HTTPConnection
            if parts.scheme == "https":
                context = ssl.create_default_context()
                conn = http.client.HTTPSConnection(
                    host, port, timeout=self._timeouts.connect_s, context=context
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self._timeouts.connect_s)
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(self._timeouts.io_s)
            self._conn = conn
        return self._conn

    def _request(self, method: str, suffix: str, body: bytes | None) -> tuple[str, bytes]:
        """One request to ``<base><suffix>``: the content type and body of a 200
        answer, after at most one redirect within the origin (GET only)."""
        url = self._base + suffix
        for _ in range(2):
            status, headers, answer = self._exchange(method, url, body)
            if status == 200:
                return headers.get("content-type", "").split(";")[0].strip(), answer
            if status in (301, 302, 303, 307, 308) and method == "GET":
                target = urllib.parse.urljoin(url, headers.get("location", ""))
                if origin_of(target) != origin_of(self._config.url):
                    raise GitFailure(
                        f"refused: the remote redirected to {origin_of(target)}, but Waveline "
                        f"pushes only to {origin_of(self._config.url)}, the repo's url",
                        retriable=False,
                    )
                if not target.endswith(suffix):
                    raise sendpack.malformed("a redirect that drops the request path")
                self._base = target[: -len(suffix)]
                url = target
                self.close()
                continue
            self._refuse(status, method)
        raise GitFailure("the remote redirected more than once", retriable=False)

    def _exchange(
        self, method: str, url: str, body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urllib.parse.urlsplit(url)
        headers = {"User-Agent": f"git/2 ({sendpack.AGENT})", "Accept": "*/*"}
        if body is not None:
            headers["Content-Type"] = "application/x-git-receive-pack-request"
            headers["Accept"] = "application/x-git-receive-pack-result"
        self._sent_token = False
        token = self._creds.token
        if (
            token
            and credential_refusal(self._config.url, url, self._config.allow_insecure_http) is None
        ):
            # Sent with the first request (no 401 round trip per push): the same rule as
            # libgit2's callbacks decides where it may go.
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
            self._sent_token = True
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn = self._connection(parts)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read(MAX_ANSWER + 1)
            found = {k.lower(): v for k, v in response.getheaders()}
            if response.will_close:
                self.close()
        except ssl.SSLCertVerificationError as exc:
            self.close()
            refusal = host_key_refusal(self._config.url, parts.hostname or "", False, False)
            raise GitFailure(f"refused: {refusal}", retriable=False) from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise GitUnreachable(
                f"push to {origin_of(url)}{parts.path} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if len(answer) > MAX_ANSWER:
            raise sendpack.malformed("an answer over the size limit")
        return response.status, found, answer

    def _refuse(self, status: int, method: str) -> None:
        if status in (401, 403):
            if self._sent_token:
                raise CredentialsRefused(
                    "the remote refused Waveline's credentials", retriable=False
                )
            refusal = credential_refusal(
                self._config.url, self._base, self._config.allow_insecure_http
            )
            if self._creds.token and refusal is not None:
                raise GitFailure(f"refused to send credentials: {refusal}", retriable=False)
            raise GitFailure(
                "the remote asked for credentials Waveline does not have", retriable=False
            )
        # Anything else (404 included, as libgit2's push reported it) is the remote not
        # serving the push now: retried like an outage.
        raise GitUnreachable(f"the remote answered {method} with HTTP {status}")


def open_wire(config: RepoConfig, creds: Credentials, timeouts: Timeouts) -> Wire:
    """The wire to ``config.url`` (which ``supports``)."""
    if is_local(config.url):
        return FileWire(config.url, timeouts)
    return HttpWire(config, creds, timeouts)

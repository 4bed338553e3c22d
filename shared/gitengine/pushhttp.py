"""The smart-HTTP transport of Waveline's own push (gitprotocol-http(5)): the ref
advertisement from ``GET <url>/info/refs?service=git-receive-pack``, the commands and pack
``POST``ed to ``<url>/git-receive-pack``, the report in its answer.

It follows the rules libgit2's callbacks apply (remote.py, transport.py): a token only
where ``transport.credential_refusal`` allows it (never over http:// without the repo's
opt-in, never to another origin; a redirect elsewhere is refused, one within the origin
followed for the advertisement), certificates verified (the default SSL context). Each
exchange (a request and its whole answer) has one deadline, the io timeout (plus the connect
timeout when it connects): every socket operation waits at most the time left, so a server
that drip-feeds bytes or headers cannot hold a push. Outcomes: 401 ``CredentialsRefused``
when the token was sent (the GitHub App path retries with a new one); 403 (a token without
write permission, a forbidden push) and a redirect of the POST a permanent ``GitFailure``;
no answer in time or a server error ``GitUnreachable``; an answer that is not git's protocol
a permanent ``GitFailure``. No message carries the token (it only goes into the
Authorization header).
"""

from __future__ import annotations

import base64
import http.client
import ssl
import time
import urllib.parse

from waveline.shared.config import RepoConfig
from waveline.shared.errors import GitFailure, GitUnreachable
from waveline.shared.gitengine import sendpack
from waveline.shared.gitengine.pushsock import DeadlineSocket, open_socket
from waveline.shared.gitengine.remote import Credentials, CredentialsRefused
from waveline.shared.gitengine.transport import (
    DEFAULT_PORTS,
    credential_refusal,
    host_key_refusal,
    origin_of,
)

# The most an answer may hold (an advertisement of many refs stays far below).
MAX_ANSWER = 64 * 1024 * 1024
_ADVERTISEMENT = "application/x-git-receive-pack-advertisement"
_REDIRECTS = (301, 302, 303, 307, 308)


def address(parts: urllib.parse.SplitResult) -> tuple[str, int]:
    """Host and port to connect to: the port given explicitly (http.client would read the
    last group of an IPv6 literal without a port as one), else the scheme's default."""
    return parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme]


class HttpWire:
    """Smart HTTP: ``GET <url>/info/refs?service=git-receive-pack``, then ``POST
    <url>/git-receive-pack``, on one connection when the server keeps it open."""

    def __init__(self, config: RepoConfig, creds: Credentials, timeouts: sendpack.Timeouts) -> None:
        self._config = config
        self._creds = creds
        self._timeouts = timeouts
        self._base = config.url.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None
        self._sock: DeadlineSocket | None = None
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
        if self._sock is not None:
            self._sock.close_now()
            self._sock = None

    def _connection(
        self, parts: urllib.parse.SplitResult
    ) -> tuple[http.client.HTTPConnection, DeadlineSocket]:
        """The open connection, or a new one; the exchange's deadline starts here."""
        started = time.monotonic()
        if self._conn is None or self._sock is None:
            host, port = address(parts)
            https = parts.scheme == "https"
            conn = (http.client.HTTPSConnection if https else http.client.HTTPConnection)(
                host, port
            )
            # Never reconnected by http.client itself (it would skip the deadline, and for
            # https the certificate check of _open).
            conn.auto_open = 0
            self._sock = DeadlineSocket(open_socket(host, port, https, self._timeouts.connect_s))
            # http.client calls only sendall, makefile and close on it.
            conn.sock = self._sock
            self._conn = conn
            started += self._timeouts.connect_s
        self._sock.until = started + self._timeouts.io_s
        return self._conn, self._sock

    def _request(self, method: str, suffix: str, body: bytes | None) -> tuple[str, bytes]:
        """One request to ``<base><suffix>``: the content type and body of a 200
        answer, after at most one redirect within the origin (GET only)."""
        url = self._base + suffix
        for _ in range(2):
            status, headers, answer = self._exchange(method, url, body)
            if status == 200:
                return headers.get("content-type", "").split(";")[0].strip(), answer
            if status in _REDIRECTS and method == "GET":
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
            self._refuse(status, method, answer)
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
            conn, sock = self._connection(parts)
            conn.request(method, path, body=body, headers=headers)
            sock.arm()  # the deadline holds even where http.client reads nothing more
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

    def _refuse(self, status: int, method: str, answer: bytes) -> None:
        if status == 403:
            # The token was accepted but may not do this (no write permission, a
            # protected or forbidden push): a new token would not help, nor would waiting.
            raise GitFailure(
                f"the remote answered {method} with HTTP 403 forbidden: {_reason(answer)}",
                retriable=False,
            )
        if status in _REDIRECTS:
            raise GitFailure(
                f"the remote redirected the {method} (HTTP {status}); Waveline follows a "
                "redirect only for the advertisement",
                retriable=False,
            )
        if status == 401:
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


def _reason(answer: bytes) -> str:
    """The first line of an error answer, printable and short (a forge's explanation)."""
    line = answer[:400].decode("utf-8", "replace").strip().splitlines()[:1]
    text = "".join(c for c in (line[0] if line else "") if c.isprintable())[:160]
    return text or "no reason given"

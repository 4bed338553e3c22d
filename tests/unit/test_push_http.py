"""The smart-HTTP wire of Waveline's own push (pushhttp.py) against tiny servers on loopback:
one deadline per exchange however the server paces its bytes, and which HTTP answers are
refused credentials, which are permanent refusals."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.tlscert import self_signed
from waveline.shared.config import RepoConfig
from waveline.shared.errors import GitFailure, GitUnreachable
from waveline.shared.gitengine import sendpack
from waveline.shared.gitengine.pushhttp import HttpWire, address
from waveline.shared.gitengine.remote import Credentials, CredentialsRefused

TOKEN = "ghp_push_http_token_97531"
# A server that stalls is given this long before the test ends it (so a missing deadline
# fails the test instead of hanging it).
STALL_S = 8.0

Serve = Callable[[socket.socket, threading.Event], None]


@contextmanager
def server(serve: Serve) -> Iterator[str]:
    """A one-connection-at-a-time server on loopback running ``serve`` per connection;
    yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def loop() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                serve(conn, stop)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/cfg.git"
    finally:
        stop.set()
        thread.join(STALL_S + 1)
        listener.close()


def _read_request(conn: socket.socket) -> bytes:
    conn.settimeout(2)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def drip(prefix: bytes, unit: bytes, every_s: float, http: bool = True) -> Serve:
    """Answers ``prefix``, then ``unit`` every ``every_s`` until the client leaves (or
    ``STALL_S``): each read gets bytes well within any per-read timeout. ``http``: read
    the request first (not for a TLS client's hello)."""

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        if http:
            _read_request(conn)
        until = time.monotonic() + STALL_S
        try:
            conn.sendall(prefix)
            while not stop.is_set() and time.monotonic() < until:
                conn.sendall(unit)
                time.sleep(every_s)
        except OSError:
            return

    return serve


def answer(status: str, body: bytes = b"", headers: str = "") -> Serve:
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        del stop
        _read_request(conn)
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
            f"{headers}\r\n".encode()
            + body
        )
        # Closed only once the client has read it all: closing with the request's body
        # unread would reset the connection and drop the answer.
        conn.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    return serve


def wire(url: str, io_s: float = 0.5, token: str | None = TOKEN) -> HttpWire:
    config = RepoConfig.model_validate({"url": url, "allow_insecure_http": True})
    return HttpWire(config, Credentials(token=token), sendpack.Timeouts(connect_s=0.5, io_s=io_s))


@pytest.mark.parametrize(
    "serve",
    [
        # A body trickling in a byte at a time.
        drip(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b"0", 0.05),
        # Headers that never end.
        drip(b"HTTP/1.1 200 OK\r\n", b"X-Slow: 1\r\n", 0.05),
        # Endless interim answers.
        drip(b"", b"HTTP/1.1 100 Continue\r\n\r\n", 0.05),
    ],
    ids=["body", "headers", "continue"],
)
def test_a_server_that_drip_feeds_meets_the_exchange_deadline(serve: Serve) -> None:
    with server(serve) as url:
        started = time.monotonic()
        with pytest.raises(GitUnreachable) as info:
            wire(url).send(b"0000")
        took = time.monotonic() - started
    assert info.value.retriable
    # connect (0.5) + io (0.5) is the deadline; the server would go on for STALL_S.
    assert took < 3.0


def test_401_is_refused_credentials() -> None:
    with server(answer("401 Unauthorized")) as url, pytest.raises(CredentialsRefused) as info:
        wire(url).send(b"0000")
    assert not info.value.retriable


def test_403_is_a_permanent_refusal_not_refused_credentials() -> None:
    body = b"Permission to acme/cfg.git denied to waveline-bot.\n\x1b[31mmore\n"
    with server(answer("403 Forbidden", body)) as url, pytest.raises(GitFailure) as info:
        wire(url).send(b"0000")
    assert not isinstance(info.value, (CredentialsRefused, GitUnreachable))
    assert not info.value.retriable
    assert "403" in str(info.value)
    assert "Permission to acme/cfg.git denied to waveline-bot." in str(info.value)
    assert "\x1b" not in str(info.value)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("status", ["301 Moved Permanently", "307 Temporary Redirect"])
def test_a_redirected_post_is_a_permanent_refusal(status: str) -> None:
    location = "Location: http://127.0.0.1:1/elsewhere/git-receive-pack\r\n"
    redirect = server(answer(status, headers=location))
    with redirect as url, pytest.raises(GitFailure, match="redirected") as info:
        wire(url).send(b"0000")
    assert not isinstance(info.value, GitUnreachable)
    assert not info.value.retriable


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://[::1]/cfg.git", ("::1", 80)),
        ("https://[2001:db8::7]/cfg.git", ("2001:db8::7", 443)),
        ("https://[2001:db8::7]:8443/cfg.git", ("2001:db8::7", 8443)),
        ("https://git.example.com/cfg.git", ("git.example.com", 443)),
    ],
)
def test_an_ipv6_literal_without_a_port_gets_the_scheme_default(
    url: str, expected: tuple[str, int]
) -> None:
    assert address(urllib.parse.urlsplit(url)) == expected


def test_an_ipv6_literal_url_reaches_its_host() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    port = listener.getsockname()[1]
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            got.append(_read_request(conn))
            conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(GitUnreachable, match="HTTP 500"):
            wire(f"http://[::1]:{port}/cfg.git").send(b"0000")
    finally:
        thread.join(2)
        listener.close()
    assert got and got[0].startswith(b"POST /cfg.git/git-receive-pack ")
    assert f"Host: [::1]:{port}".encode() in got[0]


def test_a_large_answer_on_a_closing_connection_is_read_whole() -> None:
    # http.client hands a closing connection's socket to the response and "closes" it
    # before the body is read: the deadline's socket must stay open until then.
    body = bytes(range(256)) * 2048
    ctype = "Content-Type: application/x-git-receive-pack-result\r\n"
    with server(answer("200 OK", body, ctype)) as url:
        assert wire(url, io_s=5).send(b"0000") == body


def test_a_dripped_tls_handshake_meets_the_connect_deadline() -> None:
    # A TLS record header announcing 16 KiB of handshake, then a byte at a time.
    with server(drip(b"\x16\x03\x03\x40\x00", b"\x00", 0.05, http=False)) as url:
        https = url.replace("http://", "https://")
        started = time.monotonic()
        with pytest.raises(GitUnreachable, match="TLS handshake") as info:
            wire(https).send(b"0000")
        took = time.monotonic() - started
    assert info.value.retriable
    assert took < 2.0


def test_a_tls_server_that_reads_slowly_meets_the_exchange_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted: the handshake succeeds
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        until = time.monotonic() + STALL_S
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(2)
                # A kilobyte at a time: every send of the client progresses.
                while not stop.is_set() and time.monotonic() < until and tls.recv(1024):
                    time.sleep(0.01)
        except OSError:
            return

    with server(serve) as url:
        https = url.replace("http://", "https://")
        started = time.monotonic()
        with pytest.raises(GitUnreachable):
            wire(https).send(b"0000" + b"P" * (8 << 20))
        took = time.monotonic() - started
    assert took < 3.0

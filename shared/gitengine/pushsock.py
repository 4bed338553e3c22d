"""The sockets of Waveline's own HTTP push (pushhttp.py): opened (and for https past a
verified TLS handshake) within the connect timeout, then held to one deadline per exchange
whatever the server's pace: every read and write waits at most the time left."""

from __future__ import annotations

import io
import select
import socket
import ssl
import time
from typing import Any


class DeadlineSocket:
    """The socket of one connection behind the calls http.client makes on it (``sendall``,
    ``makefile``, ``close``), each given the time left before ``until`` as its timeout;
    ``TimeoutError`` once it has passed. Like a socket's own ``makefile``, ``close`` leaves
    the socket open while a reader is (http.client "closes" a closing connection before its
    response's body is read); ``close_now`` closes it regardless."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.until = time.monotonic()
        self._readers = 0
        self._closed = False

    def arm(self) -> None:
        left = self.until - time.monotonic()
        if left <= 0:
            raise TimeoutError("the exchange's deadline passed")
        self._sock.settimeout(left)

    def sendall(self, data: bytes) -> None:
        # One call bounded as a whole: a plain socket's sendall and an SSL socket's write
        # each keep one deadline of the timeout for all of the data.
        self.arm()
        self._sock.sendall(data)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        del args, kwargs
        assert mode == "rb"
        self._readers += 1
        return io.BufferedReader(_Reader(self, self._sock))

    def close(self) -> None:
        self._closed = True
        if self._readers == 0:
            self._sock.close()

    def reader_closed(self) -> None:
        self._readers -= 1
        if self._closed and self._readers == 0:
            self._sock.close()

    def close_now(self) -> None:
        self._closed = True
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Reader(io.RawIOBase):
    def __init__(self, owner: DeadlineSocket, sock: socket.socket) -> None:
        self._owner = owner
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._owner.arm()
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._owner.reader_closed()
        super().close()


def open_socket(host: str, port: int, https: bool, connect_s: float) -> socket.socket:
    """A connected socket, for https past a verified TLS handshake, all within
    ``connect_s`` (the handshake runs without blocking, so a server that drips it
    cannot stretch it)."""
    deadline = time.monotonic() + connect_s
    raw = socket.create_connection((host, port), timeout=connect_s)
    if not https:
        return raw
    try:
        tls = ssl.create_default_context().wrap_socket(
            raw, server_hostname=host, do_handshake_on_connect=False
        )
        tls.setblocking(False)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                reading = True
            except ssl.SSLWantWriteError:
                reading = False
            left = deadline - time.monotonic()
            if left <= 0 or not any(
                select.select([tls] if reading else [], [] if reading else [tls], [], left)[:2]
            ):
                raise TimeoutError("the TLS handshake did not finish in time")
        tls.setblocking(True)  # each operation's timeout is set by DeadlineSocket
        return tls
    except BaseException:
        raw.close()
        raise

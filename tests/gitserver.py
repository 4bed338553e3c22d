"""A real smart-HTTP git server on loopback: ``git http-backend`` (CGI) behind basic auth.

Stands in for GitHub's HTTPS remote so the push path — credentials, leases, refusals from
server-side hooks — is exercised over the same protocol, not through file://.
"""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Checks a Basic credential (user, password): a GitHub App's installation token goes as
# user ``x-access-token``, and the fake GitHub knows whether it is still valid.
Check = Callable[[str, str], bool]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        user_pass = base64.b64decode(header[6:]).decode()
        user, _, password = user_pass.partition(":")
        token = self.server.token
        if not isinstance(token, str):
            return token(user, password)
        return hmac.compare_digest(password.encode(), token.encode())

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # libgit2 streams pushes in chunks; http.server does not decode them.
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        if self.headers.get("Authorization"):
            self.server.credentials_seen += 1
        if not self._authorized():
            self.server.refused += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self._body()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "waveline",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
        }
        proc = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


class _Server(ThreadingHTTPServer):
    root: Path
    token: str | Check
    refused: int
    credentials_seen: int


class GitHttpServer:
    """``with GitHttpServer(root, token) as srv: srv.url("cfg-app.git")``; ``host`` another
    loopback address (127.0.0.2) stands for another machine. ``token`` is the password
    every request must carry, or a ``Check`` of the user and password."""

    def __init__(self, root: Path, token: str | Check, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), _Handler)
        self._server.root = root
        self._server.token = token
        self._server.refused = 0
        self._server.credentials_seen = 0
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, repo: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{repo}"

    @property
    def refused(self) -> int:
        return self._server.refused

    @property
    def credentials_seen(self) -> int:
        """Requests that carried an Authorization header, right or wrong."""
        return self._server.credentials_seen

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

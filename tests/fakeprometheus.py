"""A small Prometheus HTTP API on aiohttp's test server, for wave verifications.

It answers ``GET`` and ``POST /api/v1/query`` the way Prometheus does: the query in the URL
or a form body, a JSON envelope (``status``, ``data`` with ``resultType`` and ``result``;
samples as ``[<unix time>, "<value>"]``), a 400 ``bad_data`` error for a missing or
unparsable query (unbalanced brackets here), and an empty vector for a series it has no
samples of. With ``token`` set it wants ``Authorization: Bearer <token>`` (401 otherwise,
as a Prometheus behind an authenticating proxy answers).

A test scripts a query's answers: ``values[query]`` is a list of answers consumed one per
evaluation (the last one repeats): a list of sample values makes a vector, a string a
scalar, ``"503"`` a query timeout (Prometheus's 503 ``timeout`` error).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

Answer = list[str] | str


@dataclass
class FakePrometheus:
    token: str | None = None
    values: dict[str, list[Answer]] = field(default_factory=dict)
    # Every query asked, in order (the form or URL parameter as received).
    asked: list[str] = field(default_factory=list)
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/api/v1/query", self._query)
        app.router.add_route("POST", "/api/v1/query", self._query)
        return app

    async def _query(self, request: web.Request) -> web.Response:
        if self.token is not None and request.headers.get("Authorization") != (
            f"Bearer {self.token}"
        ):
            return web.Response(status=401, text="Unauthorized\n")
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST":
            if request.content_type != "application/x-www-form-urlencoded":
                return _error(400, "bad_data", 'invalid parameter "query": missing')
            params |= dict(await request.post())
        query = params.get("query")
        if not isinstance(query, str) or not query.strip():
            return _error(400, "bad_data", 'invalid parameter "query": no query given')
        timeout = params.get("timeout")
        if timeout is not None and not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", str(timeout)):
            return _error(400, "bad_data", f'invalid parameter "timeout": cannot parse "{timeout}"')
        self.asked.append(query)
        if not _balanced(query):
            return _error(
                400, "bad_data", f'invalid parameter "query": 1:{len(query)}: parse error'
            )
        script = self.values.get(query)
        if not script:
            return _success("vector", [])
        answer = script.pop(0) if len(script) > 1 else script[0]
        now = round(time.time(), 3)
        if answer == "503":
            return _error(503, "timeout", "query timed out in expression evaluation")
        if isinstance(answer, str):
            return _success("scalar", [now, answer])
        samples = [
            {"metric": {"job": "api", "instance": f"api-{i}:8080"}, "value": [now, v]}
            for i, v in enumerate(answer)
        ]
        return _success("vector", samples)


def _balanced(query: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in query:
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def _success(kind: str, result: Any) -> web.Response:
    return web.json_response({"status": "success", "data": {"resultType": kind, "result": result}})


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response(
        {"status": "error", "errorType": kind, "error": message}, status=status
    )


@asynccontextmanager
async def running_prometheus(token: str | None = None) -> AsyncIterator[FakePrometheus]:
    fake = FakePrometheus(token=token)
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()

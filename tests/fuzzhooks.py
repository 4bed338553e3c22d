"""Schemathesis hooks for ``test_openapi_fuzz.py`` (loaded by the ``st`` process it runs).

GitHub deliveries are authenticated by an HMAC of the exact body, which the fuzzer cannot
compute: each generated delivery that carries ``X-Hub-Signature-256`` is signed here, over
the bytes ``requests`` is about to send, with the secret the test passes in the environment.
A delivery the fuzzer sends without the header stays without it (the missing-header checks).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import requests
import schemathesis

SIGNATURE = "X-Hub-Signature-256"


class _SignBody(requests.auth.AuthBase):
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if SIGNATURE in request.headers:
            body = request.body or b""
            raw = body.encode() if isinstance(body, str) else body
            assert isinstance(raw, bytes), "ingest bodies are JSON, never streamed"
            digest = hmac.new(self.secret, raw, hashlib.sha256).hexdigest()
            request.headers[SIGNATURE] = f"sha256={digest}"
        return request


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: Any
) -> None:
    del context
    if case.operation.path == "/v1/webhooks/github":
        kwargs["auth"] = _SignBody(os.environ["WAVELINE_FUZZ_GITHUB_SECRET"].encode())

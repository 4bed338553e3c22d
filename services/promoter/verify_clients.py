"""The outside systems wave verifications ask: any HTTP endpoint (an HTTP check) and
Prometheus's HTTP API (``POST /api/v1/query``, an instant query). Each call gives one
``Measurement`` (rules in ``verify_rules.py``); what went wrong on the way is an error class
with ``retriable``, turned into an ``error`` measurement (unreachable) or a ``failed`` one
(misconfigured) by class.

Secrets (header values, the Prometheus token) come from ``Secrets`` by the variable the
config names and go only into request headers: never into a detail, reason or log line.
Redirects are not followed, so a secret header never reaches another address.
"""

from __future__ import annotations

import json
import math
from typing import Any

import aiohttp

from waveline.services.promoter.verify_rules import Measurement, judge_http, judge_prometheus
from waveline.shared.config import Secrets
from waveline.shared.errors import ConfigError, WavelineError
from waveline.shared.verify_config import HttpCheck, PrometheusQuery, PrometheusServer

# A check's answer is small; a bigger body is not read whole.
MAX_BODY = 1 << 20


class VerificationUnreachable(WavelineError):
    """The endpoint did not answer in time (refused, reset, timed out, no such host): the
    next measurement may succeed."""

    code = "verification_unreachable"
    retriable = True


class VerificationMisconfigured(ConfigError):
    """A secret the verification names is not set: no measurement can pass until the
    process restarts with it."""

    code = "verification_misconfigured"


def _secret(secrets: Secrets, env: str, what: str) -> str:
    value = secrets.get(env)
    if value is None:
        raise VerificationMisconfigured(f"{what}: environment variable {env} is not set")
    found = value.get_secret_value()
    if "\n" in found or "\r" in found:
        raise VerificationMisconfigured(f"{what}: environment variable {env} holds a line break")
    return found


async def _read(response: aiohttp.ClientResponse) -> bytes | None:
    body = await response.content.read(MAX_BODY + 1)
    return None if len(body) > MAX_BODY else body


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    timeout_s: float,
    data: Any = None,
) -> tuple[int, bytes | None]:
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            data=data,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            return response.status, await _read(response)
    except TimeoutError as exc:
        raise VerificationUnreachable(f"no answer within {timeout_s:g}s") from exc
    except aiohttp.ClientError as exc:
        # The class name only: aiohttp's message may quote the URL, which may hold a token.
        raise VerificationUnreachable(f"unreachable ({type(exc).__name__})") from exc


async def http_attempt(
    session: aiohttp.ClientSession, name: str, check: HttpCheck, secrets: Secrets
) -> Measurement:
    """One attempt of an HTTP check."""
    try:
        headers = dict(check.headers)
        for header, env in check.secret_headers.items():
            headers[header] = _secret(secrets, env, f"verification {name}, header {header}")
        status, body = await _send(
            session,
            check.method,
            check.url,
            headers=headers,
            timeout_s=check.timeout.total_seconds(),
            data=check.body.encode() if check.body is not None else None,
        )
    except VerificationUnreachable as exc:
        return Measurement("error", str(exc))
    except VerificationMisconfigured as exc:
        return Measurement("failed", str(exc))
    return judge_http(check, status, body)


async def prometheus_measurement(
    session: aiohttp.ClientSession,
    name: str,
    query: PrometheusQuery,
    server: PrometheusServer,
    secrets: Secrets,
) -> Measurement:
    """One evaluation of an instant query (POST, form-encoded: a long query fits)."""
    try:
        headers = {"Accept": "application/json"}
        if server.token_env:
            token = _secret(secrets, server.token_env, f"verification {name}, Prometheus token")
            headers["Authorization"] = f"Bearer {token}"
        timeout_s = query.timeout.total_seconds()
        status, body = await _send(
            session,
            "POST",
            f"{server.url}/api/v1/query",
            headers=headers,
            timeout_s=timeout_s,
            # Prometheus's durations are whole numbers of a unit.
            data={"query": query.query, "timeout": f"{math.ceil(timeout_s)}s"},
        )
    except VerificationUnreachable as exc:
        return Measurement("error", str(exc))
    except VerificationMisconfigured as exc:
        return Measurement("failed", str(exc))
    try:
        answer = json.loads(body) if body is not None else None
    except (ValueError, UnicodeDecodeError):
        answer = None
    return judge_prometheus(query, status, answer)

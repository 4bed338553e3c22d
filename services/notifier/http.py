"""One delivery attempt of a webhook: ``deliver_once`` and the ``Attempt`` it returns.

The caller owns the schedule: it persists each ``Attempt``, asks ``RetryPolicy`` (retry.py)
when to try again, and sends the very same body bytes then. This module never sleeps, never
loops and never raises for a delivery failure: every outcome is an ``Attempt``.

Outcomes:

- ``delivered``: any 2xx.
- ``retry``: 5xx, 408, 429, a timeout, or a connection error. ``retry_after_s`` carries the
  ``Retry-After`` of a 429 or 503 (seconds form; an HTTP-date is ignored).
- ``give_up``: any other status (other 4xx; 3xx, because redirects are not followed: a
  redirect would carry the token and signature to an address nobody configured), and errors
  that cannot heal by themselves (a rejected TLS certificate, a malformed URL).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal
from urllib.parse import urlsplit

import aiohttp

from waveline.services.notifier.signing import SIGNATURE_HEADER, sign
from waveline.services.notifier.target import WebhookTarget

logger = logging.getLogger(__name__)

Outcome = Literal["delivered", "retry", "give_up"]

USER_AGENT = "waveline-notifier/1"
# Status codes that say "try later" although they are 4xx.
_RETRY_4XX = frozenset({408, 429})
# Status codes whose Retry-After is honoured.
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# Enough of the response to keep the connection reusable; the body itself is not kept (a
# receiver may echo request headers into it).
_MAX_DRAIN = 64 * 1024


@dataclass(frozen=True)
class Attempt:
    """The result of one POST.

    ``status`` is the HTTP status, or ``None`` when no response arrived. ``error`` is a short
    description for humans (never a token, header value or the address's path), ``None`` when
    delivered. ``retry_after_s`` is the receiver's ``Retry-After`` on a 429/503, in seconds.
    """

    outcome: Outcome
    status: int | None
    latency_ms: float
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"

    @property
    def retriable(self) -> bool:
        return self.outcome == "retry"


def classify(status: int) -> Outcome:
    """The outcome of a response with ``status``."""
    if 200 <= status < 300:
        return "delivered"
    if status >= 500 or status in _RETRY_4XX:
        return "retry"
    return "give_up"


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in its delay-seconds form as a float; ``None`` when absent or not
    a non-negative integer (the HTTP-date form included)."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    return float(int(value))


def request_headers(target: WebhookTarget, body: bytes, content_type: str) -> dict[str, str]:
    """The headers of a delivery of ``body``: the target's own headers, then ``Content-Type``,
    ``Authorization: Bearer <token>`` (unless the target's headers set ``Authorization``) when
    a token is set, and ``X-Signature`` (HMAC-SHA256 of ``body`` keyed by the target's
    ``signing_key``, else its token) when either is set."""
    headers = dict(target.headers)
    lowered = {name.lower() for name in headers}
    if "user-agent" not in lowered:
        headers["User-Agent"] = USER_AGENT
    headers["Content-Type"] = content_type
    if target.token is not None:
        token = target.token.get_secret_value()
        # An explicit Authorization header wins: Flux's generic-hmac secrets use the token only
        # as the HMAC key and put the receiver's credential in headers.
        if "authorization" not in lowered:
            headers["Authorization"] = f"Bearer {token}"
    key = target.signature_key
    if key is not None:
        headers[SIGNATURE_HEADER] = sign(body, key)
    return headers


async def deliver_once(
    session: aiohttp.ClientSession,
    target: WebhookTarget,
    body: bytes,
    content_type: str,
) -> Attempt:
    """POST ``body`` to ``target`` once and report what happened; never raises for a failed
    delivery (cancellation still propagates).

    Honours the target's proxy (and its credentials) and ``timeout_s`` for the whole exchange.
    Redirects are not followed. When the target has no proxy, the session's own settings
    apply (a session with ``trust_env=True`` uses ``HTTP(S)_PROXY``).
    """
    headers = request_headers(target, body, content_type)
    proxy_headers = None
    if target.proxy_authorization is not None:
        # Plain http goes to the proxy as an absolute-form request, which carries the proxy's
        # credential itself (the proxy drops it); https tunnels through CONNECT, which carries
        # it, so that the origin server never sees it.
        if urlsplit(target.address).scheme == "http":
            headers["Proxy-Authorization"] = target.proxy_authorization
        else:
            proxy_headers = {"Proxy-Authorization": target.proxy_authorization}
    timeout = aiohttp.ClientTimeout(total=target.timeout_s)
    started = time.perf_counter()

    def elapsed_ms() -> float:
        return (time.perf_counter() - started) * 1000.0

    try:
        async with session.post(
            target.address,
            data=body,
            headers=headers,
            proxy=target.proxy_url,
            proxy_headers=proxy_headers,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            await response.content.read(_MAX_DRAIN)
            status = response.status
            retry_after = None
            if status in _RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
    except TimeoutError:
        # Before ClientError: aiohttp's timeout errors are both.
        attempt = Attempt("retry", None, elapsed_ms(), f"timed out after {target.timeout_s:g}s")
    except aiohttp.ClientResponseError as exc:
        # Only from a session created with raise_for_status=True: still an answer, not a fault.
        retry_after = None
        if exc.status in _RETRY_AFTER_STATUSES and exc.headers is not None:
            retry_after = parse_retry_after(exc.headers.get("Retry-After"))
        outcome = classify(exc.status)
        error = None if outcome == "delivered" else _status_text(exc.status)
        attempt = Attempt(outcome, exc.status, elapsed_ms(), error, retry_after)
    except (aiohttp.ClientConnectorCertificateError, aiohttp.InvalidURL) as exc:
        attempt = Attempt("give_up", None, elapsed_ms(), _describe(target, exc))
    except (aiohttp.ClientError, OSError) as exc:
        attempt = Attempt("retry", None, elapsed_ms(), _describe(target, exc))
    else:
        outcome = classify(status)
        error = None if outcome == "delivered" else _status_text(status)
        attempt = Attempt(outcome, status, elapsed_ms(), error, retry_after)
    logger.info(
        "webhook %s: %s (%s) in %.0f ms%s",
        target.origin,
        attempt.outcome,
        attempt.status if attempt.status is not None else attempt.error,
        attempt.latency_ms,
        "" if attempt.retry_after_s is None else f", retry after {attempt.retry_after_s:g}s",
    )
    return attempt


def _status_text(status: int) -> str:
    # The standard phrase, not the receiver's: a reason phrase is free text from the peer.
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _describe(target: WebhookTarget, exc: BaseException) -> str:
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return target.redact(text)

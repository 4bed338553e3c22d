"""When to try a webhook again: ``RetryPolicy``, and a simple blocking loop on top of it.

The notifier persists every attempt and schedules the next one itself (a restart must not
lose or repeat a schedule), so the policy is pure arithmetic: ``delay`` for the wait before
the next attempt, ``exhausted`` for the cap, ``next_delay`` combining both with an
``Attempt``'s outcome. ``deliver_with_retries`` is the in-process loop for callers that need
no persistence (CLI, tests); its ``sleep`` is injectable so nothing real waits in tests.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, model_validator

from waveline.services.notifier.http import Attempt, deliver_once
from waveline.services.notifier.target import WebhookTarget

logger = logging.getLogger(__name__)

# Jitter only spreads load; it need not be unpredictable, so a plain PRNG is right.
_RNG = random.Random()


class RetryPolicy(BaseModel):
    """Capped exponential backoff with proportional jitter.

    The nominal wait after failed attempt ``n`` (1-based) is ``base_s * factor**(n-1)``,
    capped at ``cap_s``. ``jitter`` (0..1) takes a uniformly random share of up to that
    fraction off it: the wait lies in ``[nominal * (1 - jitter), nominal]``. ``jitter=1`` is
    "full jitter" (anywhere in ``[0, nominal]``), ``0`` is none; the default ``0.5`` still
    backs off at least half the nominal time from a receiver that is down.

    A receiver's ``Retry-After`` raises the wait to at least that many seconds, but never
    beyond ``retry_after_cap_s``: a receiver cannot park a delivery for a day.
    ``max_attempts`` counts every attempt, the first included.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=6, ge=1)
    base_s: float = Field(default=0.5, gt=0)
    factor: float = Field(default=2.0, ge=1)
    cap_s: float = Field(default=30.0, gt=0)
    jitter: float = Field(default=0.5, ge=0, le=1)
    retry_after_cap_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.cap_s < self.base_s:
            raise ValueError("cap_s must be at least base_s")
        if self.retry_after_cap_s < self.cap_s:
            raise ValueError("retry_after_cap_s must be at least cap_s")
        return self

    def nominal(self, attempt_number: int) -> float:
        """The un-jittered wait after failed attempt ``attempt_number`` (1-based)."""
        if attempt_number < 1:
            raise ValueError("attempt_number counts from 1")
        try:
            raw = self.base_s * self.factor ** (attempt_number - 1)
        except OverflowError:
            return self.cap_s
        return min(raw, self.cap_s)

    def delay(
        self,
        attempt_number: int,
        rng: random.Random | None = None,
        retry_after_s: float | None = None,
    ) -> float:
        """Seconds to wait after failed attempt ``attempt_number`` (1-based) before the next.

        Bounds: ``nominal * (1 - jitter) <= delay <= nominal <= cap_s``; with
        ``retry_after_s``, ``delay >= min(retry_after_s, retry_after_cap_s)`` and
        ``delay <= retry_after_cap_s``. Pass a seeded ``rng`` for reproducible jitter.
        """
        nominal = self.nominal(attempt_number)
        wait = nominal * (1.0 - self.jitter * (rng or _RNG).random())
        if retry_after_s is not None and retry_after_s > 0:
            wait = max(wait, min(retry_after_s, self.retry_after_cap_s))
        return wait

    def exhausted(self, attempts: int) -> bool:
        """Whether ``attempts`` attempts (all made so far) use up the budget."""
        return attempts >= self.max_attempts

    def next_delay(
        self, attempt: Attempt, attempts: int, rng: random.Random | None = None
    ) -> float | None:
        """The wait before the next attempt, given the latest ``attempt`` and the number of
        attempts made so far (it included); ``None`` when there is no next attempt (delivered,
        given up, or the budget is spent)."""
        if not attempt.retriable or self.exhausted(attempts):
            return None
        return self.delay(attempts, rng, attempt.retry_after_s)


async def deliver_with_retries(
    session: aiohttp.ClientSession,
    target: WebhookTarget,
    body: bytes,
    content_type: str,
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_attempt: Callable[[Attempt], Awaitable[None] | None] | None = None,
    rng: random.Random | None = None,
) -> list[Attempt]:
    """Deliver ``body`` until it is delivered, given up, or ``policy.max_attempts`` is reached;
    return every attempt in order (the last one says how it ended).

    The same bytes (and so the same signature) go out every time. ``on_attempt`` (sync or
    async) sees each attempt as it completes, before any wait; ``sleep`` does the waiting.
    """
    attempts: list[Attempt] = []
    while True:
        attempt = await deliver_once(session, target, body, content_type)
        attempts.append(attempt)
        if on_attempt is not None:
            result = on_attempt(attempt)
            if inspect.isawaitable(result):
                await result
        wait = policy.next_delay(attempt, len(attempts), rng)
        if wait is None:
            if attempt.retriable:
                logger.warning(
                    "webhook %s: giving up after %d attempts (%s)",
                    target.origin,
                    len(attempts),
                    attempt.error,
                )
            return attempts
        await sleep(wait)

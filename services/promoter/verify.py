"""Wave verifications, run (docs/gates.md, Verification): the entry points the promoter's
gate uses, and the loop that takes the measurements.

- ``start_verifications(db, config, pipeline, wave, app_sha)`` once the wave runs a set.
- ``verification_state(db, config, pipeline, wave, app_sha)`` -> ``VerificationState``
  (passed, running "verifying ready 1/3", failed "failed: ..."), and ``as_gate`` of it.
- ``VerificationLoop``: every tick, leases the runs that are due (``verify_store.claim``),
  takes one measurement of each and writes it back. The runs are rows, so a restarted
  promoter resumes them, and a lease keeps two replicas from measuring one run at once.
  Then it hands each ended run to ``on_finished`` until that has acted on it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp
import asyncpg

from waveline.services.promoter import verify_store as store
from waveline.services.promoter.rules import OPEN, GateVerdict, closed
from waveline.services.promoter.verify_clients import http_attempt, prometheus_measurement
from waveline.services.promoter.verify_rules import (
    Measurement,
    VerificationState,
    advance,
    verdict,
)
from waveline.shared.config import Secrets, WavelineConfig
from waveline.shared.models.base import utcnow
from waveline.shared.verify_config import Verification

logger = logging.getLogger(__name__)

# How often due runs are looked for; a run's own interval decides when it is due.
TICK_S = 0.5
BATCH = 20
# A lease outlives the slowest measurement (timeouts are at most 5 minutes) by this.
LEASE_MARGIN = timedelta(seconds=30)
# An ended run whose action failed is handed over again this much later.
HANDLE_RETRY = timedelta(seconds=5)


def _wave(config: WavelineConfig, pipeline: str, wave: str) -> tuple[Verification, ...]:
    found = config.pipelines.get(pipeline)
    w = found.wave(wave) if found is not None else None
    return w.verifications if w is not None else ()


async def start_verifications(
    db: store.Db,
    config: WavelineConfig,
    pipeline: str,
    wave: str,
    app_sha: str,
    *,
    now: datetime | None = None,
    fresh: bool = False,
) -> int:
    """Start the runs of the wave's verifications for the set it now runs (idempotent:
    a redelivered wave status starts nothing twice; ``fresh`` starts finished runs over).
    Returns how many runs were created."""
    return await store.start(
        db,
        pipeline,
        wave,
        app_sha,
        verifications=_wave(config, pipeline, wave),
        now=now or utcnow(),
        fresh=fresh,
    )


async def verification_state(
    db: store.Db, config: WavelineConfig, pipeline: str, wave: str, app_sha: str
) -> VerificationState:
    """The verdict on the set in the wave (passed when the wave has no verifications)."""
    verifications = _wave(config, pipeline, wave)
    if not verifications:
        return verdict((), {})
    return verdict(verifications, await store.runs_of(db, pipeline, wave, app_sha))


def as_gate(state: VerificationState) -> GateVerdict:
    """The gate verdict of a verification state: open once passed, else closed on
    ``verification`` with the reason (``verifying ...`` or ``failed: ...``)."""
    return OPEN if state.passed else closed("verification", state.reason)


@dataclass
class VerificationLoop:
    """Takes the measurements of due runs, ``tick_s`` apart, until closed."""

    pool: asyncpg.Pool
    config: WavelineConfig
    secrets: Secrets
    tick_s: float = TICK_S
    batch: int = BATCH
    clock: Callable[[], datetime] = utcnow
    # Called with (pipeline, wave, app_sha) once a run ended, to act on it (hold or roll
    # back the wave, look at the gates again). An awaitable result is awaited: until it
    # completes without an error, the run is handed over again (at least once, across
    # restarts and replicas; ``HANDLE_RETRY`` after an error).
    on_finished: Callable[[str, str, str], Awaitable[None] | None] | None = None
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _session: aiohttp.ClientSession | None = field(default=None, init=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="promoter-verifications")

    def close(self) -> None:
        """Stop at once: measurements in flight are dropped and their leases given up, so
        the runs are measured again at the next pass (of this replica after a restart, or
        of another)."""
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        """Stop after the pass in flight (its measurements recorded), then close the HTTP
        session."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_session()

    async def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    await self.run_due()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    # The database away: waited out; the runs of the pass were given up.
                    logger.warning(
                        "verifications: pass failed (%s); again next tick", type(exc).__name__
                    )
                except Exception:
                    # A bug: loud, but the loop goes on (as the gate ticker does).
                    logger.exception("verifications: pass failed; trying again next tick")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.tick_s)
        finally:
            await self._close_session()

    async def run_due(self) -> int:
        """One pass: lease the due runs, measure each once, write them back. Returns how
        many measurements were recorded."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        token, now = uuid.uuid4(), self.clock()
        lease = now + LEASE_MARGIN + timedelta(minutes=5)
        claimed = await store.claim(self.pool, token, now, lease, self.batch)
        try:
            done = await asyncio.gather(*(self._one(token, c) for c in claimed))
            if self.on_finished is not None:
                await self._hand_over(token, self.on_finished, lease)
        except BaseException:
            # Cancelled or failed midway: the runs not written back are due again at once,
            # not when the lease ends.
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await store.release(self.pool, token)
            raise
        return sum(done)

    async def _one(self, token: uuid.UUID, run: store.Claimed) -> bool:
        key = run.key
        found = next(
            (v for v in _wave(self.config, key.pipeline, key.wave) if v.name == key.name), None
        )
        if found is None:
            await store.cancel(self.pool, key, token, self.clock())
            return False
        try:
            measurement = await self._measure(found)
        except Exception as exc:
            # A bug, not the endpoint's answer: counted as an error (bounded by attempts or
            # error_limit) rather than stopping the pass of every other run.
            logger.exception("verification %s: measuring failed", key.name)
            measurement = Measurement("error", f"internal error ({type(exc).__name__})")
        state = advance(found, run.state, measurement)
        now = self.clock()
        written = await store.record(
            self.pool,
            key,
            token,
            state=state,
            detail=measurement.detail,
            next_at=now + found.interval,
            now=now,
            handled=self.on_finished is None,
        )
        if written and state.status != "running":
            logger.info(
                "pipeline %s wave %s: verification %s of %s %s%s",
                key.pipeline,
                key.wave,
                key.name,
                key.app_sha[:10],
                state.status,
                f": {state.reason}" if state.reason else "",
            )
        return written

    async def _hand_over(
        self,
        token: uuid.UUID,
        act: Callable[[str, str, str], Awaitable[None] | None],
        lease: datetime,
    ) -> None:
        """Call ``act`` for each ended run not yet acted on, one after the other (an action
        may hold or roll back a wave: never two at once for one wave)."""
        ended = await store.claim_ended(self.pool, token, self.clock(), lease, self.batch)
        for key in ended:
            retry_at = None
            try:
                acting = act(key.pipeline, key.wave, key.app_sha)
                if inspect.isawaitable(acting):
                    await acting
            except Exception:
                logger.exception(
                    "pipeline %s wave %s: acting on verification %s failed; again in %s",
                    key.pipeline,
                    key.wave,
                    key.name,
                    HANDLE_RETRY,
                )
                retry_at = self.clock() + HANDLE_RETRY
            await store.handled(self.pool, key, token, retry_at=retry_at)

    async def _measure(self, v: Verification) -> Measurement:
        assert self._session is not None
        if v.http is not None:
            return await http_attempt(self._session, v.name, v.http, self.secrets)
        assert v.prometheus is not None
        server = v.prometheus.server or self.config.prometheus
        assert server is not None  # the config refuses a query without a server
        return await prometheus_measurement(
            self._session, v.name, v.prometheus, server, self.secrets
        )

"""Sending what the store holds: due deliveries are attempted, each attempt recorded, and
the follow-ups published from the outbox.

One attempt per claim; the wait before the next comes from the ``RetryPolicy`` (growing,
jittered, capped) and lives in Postgres as ``next_attempt_at``, so a restarted notifier
resumes exactly where the dead one stopped. A delivery is marked delivered before anything
else happens, so it is never sent again; the follow-up event (``delivered``/``failed``
promotion status, dead letter) is published afterwards and marked announced, so a crash in
between republishes it rather than losing it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta

import aiohttp

from waveline.services.notifier import dispatch as repository_dispatch
from waveline.services.notifier.http import Attempt, deliver_once
from waveline.services.notifier.retry import RetryPolicy
from waveline.services.notifier.store import DeliveryStore, Due
from waveline.services.notifier.targets import Targets
from waveline.shared.faults import failpoint
from waveline.shared.models.base import utcnow
from waveline.shared.models.dlq import DeadLetter
from waveline.shared.models.promotions import PromotionEvent, PromotionStatus
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

IDLE_S = 0.2  # how often an idle worker looks for due deliveries
BATCH = 16  # attempts in flight at once
# A claimed attempt that never got recorded (the process died) is due again after the
# attempt's timeout plus this margin.
LEASE_MARGIN_S = 5.0


@dataclass
class DeliveryWorker:
    runtime: Runtime
    store: DeliveryStore
    targets: Targets
    policy: RetryPolicy
    # Waves promoted by repository_dispatch, by the same key as ``targets``.
    dispatches: Mapping[str, repository_dispatch.DispatchTarget] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _inflight: dict[uuid.UUID, asyncio.Task[None]] = field(default_factory=dict)

    def wake(self) -> None:
        """A delivery was queued: look now instead of at the next idle tick."""
        self._wake.set()

    async def run(self) -> None:
        # trust_env=False: a target's proxy is its own setting, not the process's.
        self._session = aiohttp.ClientSession(trust_env=False)
        try:
            while True:
                try:
                    busy = await self.step()
                except Exception:
                    logger.exception("notifier: delivery step failed; trying again shortly")
                    busy = False
                if not busy:
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(IDLE_S):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
        finally:
            for task in self._inflight.values():
                task.cancel()
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)
            await self._session.close()

    async def step(self) -> bool:
        """Announce what is recorded but unannounced, then start attempts on what is due
        (at most ``BATCH`` in flight; a slow receiver holds only its own slot); True when
        there was work."""
        pending = [d for d in await self.store.unannounced() if d.delivery_id not in self._inflight]
        for due in pending:
            await self._announce(due)
        room = BATCH - len(self._inflight)
        lease = timedelta(seconds=self._longest_timeout() + LEASE_MARGIN_S)
        due_now = await self.store.claim_due(room, lease) if room > 0 else []
        for due in due_now:
            task = asyncio.create_task(self._attempt(due), name=f"delivery-{due.delivery_id}")
            self._inflight[due.delivery_id] = task
            task.add_done_callback(functools.partial(self._finished, due.delivery_id))
        return bool(pending or due_now)

    def _finished(self, delivery_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        self._inflight.pop(delivery_id, None)
        if not task.cancelled() and task.exception() is not None:
            # Not recorded: the lease lapses and the delivery is attempted again.
            logger.error(
                "notifier: attempt of %s failed before it was recorded: %r",
                delivery_id,
                task.exception(),
            )
        self._wake.set()

    def _longest_timeout(self) -> float:
        timeouts = [t.timeout_s for t in self.targets.by_key.values()]
        timeouts += [t.timeout_s for t in self.dispatches.values()]
        return max(timeouts, default=10.0)

    async def _attempt(self, due: Due) -> None:
        # By what the stored body is (the wave's format may have changed since).
        is_dispatch = due.event_type == repository_dispatch.EVENT_TYPE
        target = None if is_dispatch else self.targets.get(due.target)
        dispatch = self.dispatches.get(due.target) if is_dispatch else None
        if dispatch is not None:
            attempt = await repository_dispatch.send_dispatch(dispatch, due.body)
        elif target is None:
            attempt = Attempt("give_up", None, 0.0, f"no target {due.target!r} is configured")
        else:
            assert self._session is not None
            attempt = await deliver_once(self._session, target, due.body, due.content_type)
        failpoint("notifier_after_send")
        attempts = due.attempts + 1
        wait = self.policy.next_delay(attempt, attempts)
        if attempt.delivered:
            state = "delivered"
        elif wait is not None:
            state = "pending"
        else:
            state = "failed"
        recorded = await self.store.record(
            due,
            status_code=attempt.status,
            latency_ms=round(attempt.latency_ms, 3),
            outcome=attempt.outcome,
            error=attempt.error,
            state=state,
            next_attempt_at=utcnow() + timedelta(seconds=wait) if wait is not None else None,
        )
        if not recorded:
            logger.warning(
                "delivery %s: attempt %d finished after the delivery moved on; not recorded",
                due.delivery_id,
                due.attempts + 1,
            )
            return
        log = logger.info if state != "failed" else logger.warning
        log(
            "delivery %s (%s to %s): attempt %d %s%s",
            due.delivery_id,
            due.event_type,
            due.target,
            attempts,
            attempt.outcome,
            f" ({attempt.error})" if attempt.error else "",
        )
        failpoint("notifier_after_record")
        if state != "pending":
            await self._announce(
                replace(due, state=state, attempts=attempts, last_error=attempt.error)
            )

    async def _announce(self, due: Due) -> None:
        """Publish the follow-up of a delivery that ended, then mark it announced."""
        if due.state == "failed":
            await self.runtime.publish(
                DeadLetter.about(
                    due.body,
                    event_id=uuid.uuid5(due.delivery_id, "dead-letter"),
                    service=self.runtime.service,
                    source_topic=due.source_topic,
                    key=due.pipeline,
                    error_code=(
                        "promotion_delivery_failed"
                        if due.kind == "promotion"
                        else "notification_delivery_failed"
                    ),
                    reason=(
                        f"{due.event_type} to {due.target}: gave up after {due.attempts}"
                        f" attempt(s); last error: {due.last_error}"
                    ),
                    retriable=False,
                ),
                self.runtime.topics.dlq,
                key=due.pipeline or due.target,
            )
        if due.kind == "promotion" and due.promotion_id is not None:
            await self._promotion_status(due)
        await self.store.mark_announced(due.delivery_id)

    async def _promotion_status(self, due: Due) -> None:
        assert due.promotion_id is not None
        data = repository_dispatch.payload_data(due.body)
        status: PromotionStatus = "delivered" if due.state == "delivered" else "failed"
        await self.runtime.publish(
            PromotionEvent(
                event_id=uuid.uuid5(due.promotion_id, status),
                promotion_id=due.promotion_id,
                pipeline=data["pipeline"],
                from_wave=data["from_wave"],
                to_wave=data["to_wave"],
                app_sha=data["app_sha"],
                images=data["images"],
                cfg_sha=data["config_commit"],
                strategy="webhook",
                status=status,
                detail=None if status == "delivered" else due.last_error,
                at=utcnow(),
            ),
            self.runtime.topics.promotions,
            key=data["pipeline"],
        )

"""notifier's Kafka side: the webhook promotion strategy, the pull-request strategy's forge
calls, and notifications to generic webhooks (CloudEvents or Slack ``text``).

Handlers only record: a delivery is queued in Postgres (once, by id) and the offset is
committed; the ``DeliveryWorker`` sends, retries with backoff and gives up to the
dead-letter topic. Nothing is lost when the notifier dies: queued deliveries resume on
start, and a delivered one is never sent again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from waveline.services.notifier.dispatch import (
    DispatchTarget,
    dispatch_delivery,
    dispatch_targets,
)
from waveline.services.notifier.events import (
    Occurrence,
    dead_letter_occurrence,
    notification_deliveries,
    promotion_data,
    promotion_delivery,
)
from waveline.services.notifier.pulls import PullRequests, forges_from_config
from waveline.services.notifier.retry import RetryPolicy
from waveline.services.notifier.store import DeliveryStore, NewDelivery
from waveline.services.notifier.targets import Targets, strategy_key
from waveline.services.notifier.worker import DeliveryWorker
from waveline.shared.models.checks import CheckReported
from waveline.shared.models.dlq import DeadLetter
from waveline.shared.models.git import GitEvent
from waveline.shared.models.promotions import PromotionEvent
from waveline.shared.models.pulls import PullRequestReported
from waveline.shared.models.waves import WaveStatus
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

# Dead letters about notifications that could not be delivered are not notified again
# (that could loop); failed promotion deliveries are.
NOTIFICATION_FAILED = "notification_delivery_failed"


def policy_of(runtime: Runtime) -> RetryPolicy:
    d = runtime.config.delivery
    base, cap = d.backoff.total_seconds(), d.cap.total_seconds()
    return RetryPolicy(
        max_attempts=d.max_attempts,
        base_s=base,
        cap_s=max(cap, base),
        retry_after_cap_s=max(cap, base, 300.0),
    )


@dataclass
class Notifier:
    runtime: Runtime
    _worker: DeliveryWorker | None = None
    _task: asyncio.Task[None] | None = None
    _pulls: PullRequests | None = None
    _targets: Targets = field(default_factory=Targets)
    _dispatches: dict[str, DispatchTarget] = field(default_factory=dict)

    def register(self) -> None:
        rt = self.runtime
        # Resolved now so a missing secret stops the notifier at start, naming it.
        self._targets = Targets.resolve(rt.config, rt.secrets)
        self._dispatches = dispatch_targets(rt.config, rt.secrets)
        self._pulls = PullRequests(rt, forges_from_config(rt.config, rt.secrets))
        group = "waveline-notifier"
        rt.consume(
            rt.topics.promotions,
            group,
            PromotionEvent.model_validate_json,
            self.on_promotion,
            title="notifier promotions",
            batched=True,
        )
        rt.consume(
            rt.topics.git_events,
            group,
            GitEvent.model_validate_json,
            self.on_git_event,
            title="notifier git events",
            batched=True,
        )
        rt.consume(
            rt.topics.waves,
            group,
            WaveStatus.model_validate_json,
            self.on_wave_status,
            title="notifier wave states",
            batched=True,
        )
        rt.consume(
            rt.topics.pulls,
            group,
            PullRequestReported.model_validate_json,
            self._pulls.on_pull_request,
            title="notifier pull requests",
            batched=True,
        )
        rt.consume(
            rt.topics.checks,
            group,
            CheckReported.model_validate_json,
            self._pulls.on_check,
            title="notifier checks on pull requests",
            batched=True,
        )
        rt.consume(
            rt.topics.dlq,
            group,
            DeadLetter.model_validate_json,
            self.on_dead_letter,
            title="notifier dead letters",
            batched=True,
        )

    async def on_started(self) -> None:
        self._worker = DeliveryWorker(
            self.runtime,
            DeliveryStore(self.runtime.pool),
            self._targets,
            policy_of(self.runtime),
            dispatches=self._dispatches,
        )
        self._task = asyncio.create_task(self._worker.run(), name="notifier-deliveries")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pulls is not None:
            await self._pulls.close()
        for dispatch in self._dispatches.values():
            await dispatch.forge.close()  # safe to call more than once (shared clients)

    async def _queue(self, deliveries: list[NewDelivery]) -> None:
        store = DeliveryStore(self.runtime.pool)
        new = [d for d in deliveries if await store.enqueue(d)]
        if new and self._worker is not None:
            self._worker.wake()

    def _notify(self, o: Occurrence) -> list[NewDelivery]:
        return notification_deliveries(self.runtime.config, o)

    # -- handlers ------------------------------------------------------------------------

    async def on_promotion(self, event: PromotionEvent) -> None:
        topic = self.runtime.topics.promotions
        if event.status == "requested" and event.strategy == "webhook":
            dispatch = self._dispatches.get(strategy_key(event.pipeline, event.to_wave))
            if dispatch is not None:
                data = promotion_data(event)
                await self._queue([dispatch_delivery(event, data, dispatch.event_type, topic)])
            else:
                await self._queue([promotion_delivery(event, topic)])
        elif event.status == "done":
            text = (
                f"{event.pipeline}: {event.app_sha[:10]} promoted to {event.to_wave}"
                f" ({event.strategy}{', ' + event.url if event.url else ''})"
            )
            await self._queue(
                self._notify(
                    Occurrence(
                        event_id=event.event_id,
                        kind="promotion_done",
                        pipelines=(event.pipeline,),
                        subject=event.to_wave,
                        text=text,
                        data=event.model_dump(mode="json"),
                        at=event.at,
                        source_topic=topic,
                    )
                )
            )

    async def on_git_event(self, event: GitEvent) -> None:
        assert self._pulls is not None
        await self._pulls.on_git_event(event)
        if event.outcome not in {"evicted", "failed", "rejected"}:
            return
        pipelines = tuple(
            sorted(n for n, p in self.runtime.config.pipelines.items() if p.repo == event.repo)
        )
        if event.pipeline:
            pipelines = (event.pipeline,)
        evicted = event.outcome == "evicted"
        text = (
            f"{event.repo}: evicted {event.old_sha} from auto (a required check failed)"
            if evicted
            else f"{event.repo}: {event.command_kind} {event.outcome}: {event.reason}"
        )
        await self._queue(
            self._notify(
                Occurrence(
                    event_id=event.event_id,
                    kind="evicted" if evicted else "failed",
                    pipelines=pipelines,
                    subject=event.repo,
                    text=text,
                    data=event.model_dump(mode="json", exclude={"timings_ms", "wave_apps"}),
                    at=event.at,
                    source_topic=self.runtime.topics.git_events,
                )
            )
        )

    async def on_wave_status(self, status: WaveStatus) -> None:
        if status.state != "failing":
            return
        degraded = "Degraded" in (status.reason or "")
        await self._queue(
            self._notify(
                Occurrence(
                    event_id=status.event_id,
                    kind="degraded" if degraded else "failed",
                    pipelines=(status.pipeline,),
                    subject=status.wave,
                    text=f"{status.pipeline}/{status.wave} is failing: {status.reason}",
                    data=status.model_dump(mode="json"),
                    at=status.at,
                    source_topic=self.runtime.topics.waves,
                )
            )
        )

    async def on_dead_letter(self, letter: DeadLetter) -> None:
        if letter.error_code == NOTIFICATION_FAILED:
            return
        await self._queue(self._notify(dead_letter_occurrence(letter, self.runtime.topics.dlq)))

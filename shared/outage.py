"""Which failures are outages, and waiting them out.

Two kinds of failure meet a consumer (see docs/reliability.md):

- a message that cannot be valid (it fails parsing or the rules, however often it is
  retried) is dead-lettered at once, by the boundary (shared/boundary.py);
- everything else — PostgreSQL away or restarting, Kafka away, a git remote or forge not
  answering — is an *outage*: the consumer pauses the partitions involved, leaves their
  offsets uncommitted, and tries again after a capped exponential backoff, indefinitely
  (``PartitionPause``). ``Waits`` is the service's record of what it waits for: readiness
  reads it, a metric counts the time, and it logs once when a wait begins and once when it
  ends, never once per attempt.

The classification is by exception class only (``is_retriable``, ``dependency_of``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from waveline.shared.errors import BrokerUnavailable, GitFailure, WavelineError

logger = logging.getLogger(__name__)

# PostgreSQL away, restarting (57P01 admin shutdown, 57P03 cannot connect now, 57P02 crash),
# out of connections (53300), read-only after a failover, or the connection lost.
POSTGRES_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.InterfaceError,
)
# Conflicts between concurrent transactions: gone on the next try.
POSTGRES_CONFLICTS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)


def is_retriable(exc: BaseException) -> bool:
    """True when trying again later may succeed (an outage or a conflict), False when the
    message itself is at fault."""
    if isinstance(exc, WavelineError | KafkaError):
        return bool(exc.retriable)
    # A certificate that stops verifying while a service runs (a server's certificate or
    # CA rotated) is not the message's fault: it waits like an outage, and readiness says
    # so. At start the same failure is a ConfigError (shared/db.py, shared/kafka_clients.py),
    # so a wrong CA still stops a process at once.
    # OSError covers refused and reset connections and names that do not resolve (gaierror).
    return isinstance(exc, POSTGRES_OUTAGES + POSTGRES_CONFLICTS + (OSError, TimeoutError))


def dependency_of(exc: BaseException) -> str:
    """What an outage waits for, as readiness and metrics name it."""
    if isinstance(exc, POSTGRES_OUTAGES + POSTGRES_CONFLICTS):
        return "postgres"
    if isinstance(exc, BrokerUnavailable | KafkaError):
        return "kafka"
    if isinstance(exc, GitFailure):
        return "git"
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        return dependency_of(cause)
    # A bare OSError (refused, reset, a name that does not resolve) names no system;
    # the library it came out of does.
    return _raised_in(exc) or "network" if isinstance(exc, OSError | TimeoutError) else "other"


_LIBRARIES = {"asyncpg": "postgres", "aiokafka": "kafka", "aiohttp": "http", "pygit2": "git"}


def _raised_in(exc: BaseException) -> str | None:
    """The dependency whose client library the traceback of ``exc`` passes through last."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        found = _LIBRARIES.get(module.split(".", 1)[0], found)
        tb = tb.tb_next
    return found


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with ±20% jitter (so consumers that failed together do
    not all come back in the same instant)."""

    first_s: float = 0.2
    cap_s: float = 10.0

    def delay(self, attempt: int) -> float:
        base = min(self.cap_s, self.first_s * 2.0 ** max(0, attempt - 1))
        jitter: float = random.uniform(0.8, 1.2)
        return base * jitter


@dataclass
class _Wait:
    dependency: str
    reason: str
    since: float
    charged: float
    attempts: int = 0


class Waits:
    """One service's outages: who waits for what since when, as metrics and readiness."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry()
        self._waits: dict[str, _Wait] = {}
        # Seconds waited so far, by dependency (what the counter holds, summed over consumers).
        self.waited_s: dict[str, float] = {}
        self._seconds = Counter(
            "waveline_dependency_wait_seconds",
            "Time consumers spent waiting for a dependency to come back",
            ["service", "consumer", "dependency"],
            registry=self.registry,
        )
        self._waiting = Gauge(
            "waveline_dependency_waiting",
            "1 while a consumer waits for a dependency",
            ["service", "consumer", "dependency"],
            registry=self.registry,
        )

    def failed(self, consumer: str, exc: BaseException) -> int:
        """Count a failed attempt of ``consumer``; returns the attempt number. The first
        failure of a wait logs what it waits for; later ones log nothing."""
        now = time.monotonic()
        dependency = dependency_of(exc)
        wait = self._waits.get(consumer)
        if wait is not None and wait.dependency != dependency:
            self._end(consumer, wait, now, f"now waiting for {dependency} instead")
            wait = None
        if wait is None:
            wait = _Wait(dependency, _reason(exc), since=now, charged=now)
            self._waits[consumer] = wait
            self._waiting.labels(self.service, consumer, dependency).set(1)
            logger.warning(
                "%s %s: waiting for %s (%s); retrying with backoff, nothing is acked meanwhile",
                self.service,
                consumer,
                dependency,
                wait.reason,
            )
        self._charge(consumer, wait, now)
        wait.attempts += 1
        return wait.attempts

    def succeeded(self, consumer: str) -> None:
        wait = self._waits.pop(consumer, None)
        if wait is not None:
            self._end(consumer, wait, time.monotonic(), "resuming")

    def _end(self, consumer: str, wait: _Wait, now: float, what: str) -> None:
        self._waits.pop(consumer, None)
        self._charge(consumer, wait, now)
        self._waiting.labels(self.service, consumer, wait.dependency).set(0)
        logger.warning(
            "%s %s: %s is back after %.1f s and %d attempt(s); %s",
            self.service,
            consumer,
            wait.dependency,
            now - wait.since,
            wait.attempts,
            what,
        )

    def _charge(self, consumer: str, wait: _Wait, now: float) -> None:
        self._seconds.labels(self.service, consumer, wait.dependency).inc(now - wait.charged)
        self.waited_s[wait.dependency] = self.waited_s.get(wait.dependency, 0.0) + (
            now - wait.charged
        )
        wait.charged = now

    def current(self) -> dict[str, dict[str, Any]]:
        """What each waiting consumer waits for (readiness shows this)."""
        now = time.monotonic()
        for consumer, wait in self._waits.items():
            self._charge(consumer, wait, now)
        return {
            consumer: {
                "dependency": wait.dependency,
                "reason": wait.reason,
                "waiting_s": round(now - wait.since, 1),
                "attempts": wait.attempts,
            }
            for consumer, wait in self._waits.items()
        }


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


class Unfinished(Exception):
    """A poll handled only in part: ``cause`` (retriable) stopped it, and each partition of
    ``resume_at`` must start again at that offset (every record before it was handled)."""

    def __init__(self, cause: BaseException, resume_at: Mapping[TopicPartition, int]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.resume_at = dict(resume_at)


def first_offsets(records: Iterable[Any]) -> dict[TopicPartition, int]:
    """Each partition's first offset among ``records``."""
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        first[tp] = min(first.get(tp, r.offset), r.offset)
    return first


@dataclass
class PartitionPause:
    """One consumer's way through an outage: seek the unfinished partitions back, pause
    them, resume them after the backoff. Paused partitions are not fetched, so the
    consumer keeps polling (no rebalance however long the outage) and its other partitions
    go on. The wait ends (and is logged as ended) once every partition that failed has
    been handled again, or left this consumer in a rebalance."""

    name: str
    waits: Waits
    backoff: Backoff
    _waiting: set[TopicPartition] = field(default_factory=set)
    _timers: set[asyncio.TimerHandle] = field(default_factory=set)

    @property
    def waiting(self) -> bool:
        return bool(self._waiting)

    def pause(
        self, consumer: Any, resume_at: Mapping[TopicPartition, int], exc: BaseException
    ) -> float:
        """Seek and pause ``resume_at``'s partitions; returns the delay before they resume."""
        attempt = self.waits.failed(self.name, exc)
        delay = self.backoff.delay(attempt)
        assigned = consumer.assignment()
        tps = [tp for tp in resume_at if tp in assigned]
        for tp in tps:
            consumer.seek(tp, resume_at[tp])
        consumer.pause(*tps)
        self._waiting.update(tps)
        loop = asyncio.get_running_loop()
        handle = loop.call_later(delay, self._resume, consumer, tps)
        self._timers = {t for t in self._timers if t.when() > loop.time()}
        self._timers.add(handle)
        return delay

    def _resume(self, consumer: Any, tps: list[TopicPartition]) -> None:
        try:
            assigned = consumer.assignment()
        except Exception:  # a consumer that stopped meanwhile has nothing to resume
            return
        consumer.resume(*[tp for tp in tps if tp in assigned])
        # Partitions a rebalance took away are someone else's to wait for now.
        self._waiting &= set(assigned)
        if not self._waiting:
            self.waits.succeeded(self.name)

    def succeeded(self, records: Iterable[Any]) -> None:
        """``records`` were handled: their partitions no longer wait."""
        if not self._waiting:
            return
        self._waiting -= {TopicPartition(r.topic, r.partition) for r in records}
        if not self._waiting:
            self.waits.succeeded(self.name)

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

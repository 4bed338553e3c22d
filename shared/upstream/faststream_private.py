"""faststream's private names (faststream 0.7).

``faststream._internal.context.Context``: the class behind the public ``faststream.Context()``
(only the function is public). A handler's message is resolved through it; the stock class
is a synchronous dependency, which fast_depends runs in a worker thread: a thread hop (and
two GIL hand-offs) for every batch every consumer handles, measured at ~5% of a service's
CPU. ``MessageNow`` subclasses it to resolve on the event loop instead. Not reported upstream
as far as we found; tests/unit/test_upstream_private.py fails when the class moves or its
``use`` stops being the synchronous method this overrides.

``BatchSubscriber.get_msg`` (faststream.kafka): when a poll (aiokafka's ``getmany``, which
returns as soon as any record is there) comes back empty after ``batch_timeout_ms``,
faststream sleeps ``batch_timeout_ms`` more before polling again, and a record arriving
meanwhile waits out the sleep. At 100 image sets a second, arrivals 10 ms apart, that was
up to 10 ms at the promoter and 20 at the git-writer per set (docs/benchmarks.md, Whole
path). ``poll_without_idle_sleep`` gives one subscriber a ``get_msg`` that only polls; the
empty poll's own wait keeps the loop from spinning. Not reported upstream as far as we
found; tests/unit/test_upstream_private.py fails when the method or its attributes change,
or the sleep goes (then this can go too).
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from faststream._internal.context import Context
from faststream.kafka.subscriber.usecase import BatchSubscriber


class MessageNow(Context):
    """faststream's ``Context`` resolved on the event loop (see the module's docstring)."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        resolved: dict[str, Any] = super().use(**kwargs)
        return resolved


def poll_without_idle_sleep(subscriber: object) -> bool:
    """Have a batch ``subscriber`` poll again at once after an empty poll (see the
    module's docstring); False, and nothing changed, for any other subscriber."""
    if not isinstance(subscriber, BatchSubscriber):
        return False
    batch: BatchSubscriber = subscriber

    async def get_msg(consumer: Any) -> tuple[Any, ...]:
        polled = await consumer.getmany(
            timeout_ms=batch.batch_timeout_ms, max_records=batch.max_records
        )
        return tuple(chain.from_iterable(polled.values()))

    # An instance attribute: faststream's consume loop calls self.get_msg.
    object.__setattr__(batch, "get_msg", get_msg)
    return True

"""aiokafka's private attributes (aiokafka 0.14).

``AIOKafkaConsumer._fetcher`` (the ``Fetcher`` its ``start`` makes) and that fetcher's
``_prefetch_backoff``: how long the fetcher leaves a node alone while records it prefetched
from one of the node's partitions wait to be consumed (0.1 s by default). ``Fetcher`` takes
it as ``prefetch_backoff``, but ``AIOKafkaConsumer`` neither accepts nor passes it, so the
only way to change it is to set it on the started consumer's fetcher (shared/kafka.py,
``hold_prefetch``, says why we do). Not reported upstream as far as we found; a public
consumer option would retire this module. tests/unit/test_upstream_private.py fails when
either attribute moves.
"""

from __future__ import annotations

from typing import Any, Literal


def _fetcher(consumer: Any) -> Any:
    return getattr(consumer, "_fetcher", None)


def prefetch_backoff(consumer: Any) -> float | None:
    """The started ``consumer``'s prefetch backoff in seconds; None when it has no fetcher
    (not started) or the fetcher has no such attribute (aiokafka changed)."""
    value = getattr(_fetcher(consumer), "_prefetch_backoff", None)
    return float(value) if isinstance(value, int | float) else None


def set_prefetch_backoff(
    consumer: Any, seconds: float
) -> Literal["set", "not started", "unsupported"]:
    """Set the started ``consumer``'s prefetch backoff: "set"; "not started" when it has no
    fetcher yet, "unsupported" when its fetcher has no such attribute (aiokafka changed);
    nothing changes in those two cases."""
    fetcher = _fetcher(consumer)
    if fetcher is None:
        return "not started"
    if not hasattr(fetcher, "_prefetch_backoff"):
        return "unsupported"
    fetcher._prefetch_backoff = seconds
    return "set"

"""The libraries' private attributes shared/upstream/ touches are still there, as used.

Each test fails when an upgrade moves, renames or changes one, or makes it public (then
the wrapper can go): the message says which module to revisit.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import anyio
import faststream
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import Fetcher
from fast_depends.library import CustomField
from faststream._internal.context import Context, ContextRepo
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber

from waveline.shared.upstream import aiokafka_private
from waveline.shared.upstream.faststream_private import MessageNow, poll_without_idle_sleep

pytestmark = pytest.mark.timeout(30)

AIOKAFKA = "aiokafka changed: revisit shared/upstream/aiokafka_private.py"
FASTSTREAM = "faststream changed: revisit shared/upstream/faststream_private.py"


def test_aiokafka_fetcher_keeps_its_prefetch_backoff() -> None:
    init = inspect.signature(Fetcher.__init__).parameters
    assert init["prefetch_backoff"].default == 0.1, AIOKAFKA
    assert "self._prefetch_backoff = prefetch_backoff" in inspect.getsource(Fetcher), AIOKAFKA
    # Read where it matters: the backoff of partitions whose prefetched records wait.
    assert "backoff=self._prefetch_backoff" in inspect.getsource(Fetcher), AIOKAFKA


def test_aiokafka_consumer_keeps_its_fetcher_and_does_not_pass_the_backoff() -> None:
    assert "self._fetcher = Fetcher(" in inspect.getsource(AIOKafkaConsumer.start), AIOKAFKA
    # Public at last: pass it to the consumer instead and retire the wrapper.
    params = inspect.signature(AIOKafkaConsumer.__init__).parameters
    assert "prefetch_backoff" not in params, AIOKAFKA


async def test_an_unstarted_consumer_has_no_fetcher_to_tune() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    try:
        assert consumer._fetcher is None, AIOKAFKA
        assert aiokafka_private.prefetch_backoff(consumer) is None
        assert aiokafka_private.set_prefetch_backoff(consumer, 5.0) == "not started"
    finally:
        await consumer.stop()


def test_the_wrapper_sets_and_reads_the_backoff() -> None:
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_prefetch_backoff=0.1))
    assert aiokafka_private.prefetch_backoff(consumer) == 0.1
    assert aiokafka_private.set_prefetch_backoff(consumer, 3600.0) == "set"
    assert aiokafka_private.prefetch_backoff(consumer) == 3600.0
    renamed = SimpleNamespace(_fetcher=SimpleNamespace(_backoff=0.1))
    assert aiokafka_private.set_prefetch_backoff(renamed, 1.0) == "unsupported"
    assert aiokafka_private.prefetch_backoff(renamed) is None


def test_faststream_context_is_the_class_behind_the_public_function() -> None:
    assert isinstance(faststream.Context("message"), Context), FASTSTREAM
    assert issubclass(Context, CustomField), FASTSTREAM
    # MessageNow overrides a synchronous use() with a coroutine (fast_depends awaits it).
    assert not inspect.iscoroutinefunction(Context.use), FASTSTREAM
    assert list(inspect.signature(Context.use).parameters) == ["self", "kwargs"], FASTSTREAM
    assert inspect.iscoroutinefunction(MessageNow.use)


async def test_message_now_resolves_what_the_stock_context_does() -> None:
    context = ContextRepo()
    context.set_global("message", "the message")
    stock = Context("message").set_param_name("msg")
    now = MessageNow("message").set_param_name("msg")
    expected = stock.use(context__=context)
    assert expected["msg"] == "the message", FASTSTREAM
    assert await now.use(context__=context) == expected


class _Consumer:
    """What a batch subscriber's ``get_msg`` asks of aiokafka's consumer."""

    def __init__(self, polls: list[dict[str, list[str]]]) -> None:
        self.polls = polls
        self.asked: list[tuple[int, int | None]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[str, list[str]]:
        self.asked.append((timeout_ms, max_records))
        return self.polls.pop(0)


def _batch_subscriber() -> object:
    broker = KafkaBroker("127.0.0.1:9")
    return broker.subscriber("t", batch=True, batch_timeout_ms=40, max_records=7, group_id="g")


async def test_faststream_still_sleeps_after_an_empty_batch_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(anyio, "sleep", sleep)
    stock = _batch_subscriber()
    assert isinstance(stock, BatchSubscriber), FASTSTREAM
    assert await stock.get_msg(_Consumer([{}])) == (), FASTSTREAM
    # The sleep this works around; gone upstream, poll_without_idle_sleep can go too.
    assert slept == [0.04], FASTSTREAM
    assert {"batch_timeout_ms", "max_records"} <= set(BatchSubscriber.__slots__), FASTSTREAM


async def test_a_patched_batch_subscriber_polls_again_without_sleeping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s after an empty poll")

    monkeypatch.setattr(anyio, "sleep", sleep)
    subscriber = _batch_subscriber()
    assert poll_without_idle_sleep(subscriber)
    consumer = _Consumer([{}, {"p0": ["a", "b"], "p1": ["c"]}])
    get_msg = subscriber.get_msg  # type: ignore[attr-defined]
    assert await get_msg(consumer) == ()
    assert await get_msg(consumer) == ("a", "b", "c")
    assert consumer.asked == [(40, 7), (40, 7)]
    # Anything but a batch subscriber is left as it is.
    one_by_one = KafkaBroker("127.0.0.1:9").subscriber("t", group_id="g")
    assert not poll_without_idle_sleep(one_by_one)

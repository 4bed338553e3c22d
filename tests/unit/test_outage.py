"""Outage rules without services: which errors wait and for what, the backoff, the log
filter that keeps a broker outage from writing thousands of lines."""

from __future__ import annotations

import logging
import socket

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from pydantic import ValidationError

from waveline.shared.errors import (
    BrokerUnavailable,
    GitFailure,
    GitUnreachable,
    InvalidMessage,
    PreconditionFailed,
    PublishRefused,
)
from waveline.shared.logs import RepeatFilter
from waveline.shared.models.images import ImageSetAnnounced
from waveline.shared.outage import Backoff, Waits, dependency_of, is_retriable


def _validation_error() -> ValidationError:
    try:
        ImageSetAnnounced.model_validate({"pipeline": "app"})
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a validation error")


@pytest.mark.parametrize(
    ("exc", "dependency"),
    [
        (asyncpg.exceptions.AdminShutdownError("57P01"), "postgres"),
        (asyncpg.exceptions.CannotConnectNowError("57P03"), "postgres"),
        (asyncpg.exceptions.TooManyConnectionsError("53300"), "postgres"),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), "postgres"),
        (asyncpg.exceptions.SerializationError("40001"), "postgres"),
        (ConnectionRefusedError(111, "refused"), "network"),
        (socket.gaierror(-2, "Name or service not known"), "network"),
        (BrokerUnavailable("no ack"), "kafka"),
        (KafkaConnectionError("down"), "kafka"),
        (GitUnreachable("timed out"), "git"),
    ],
)
def test_outages_are_retriable_and_named(exc: BaseException, dependency: str) -> None:
    assert is_retriable(exc)
    assert dependency_of(exc) == dependency


@pytest.mark.parametrize(
    "exc",
    [
        _validation_error(),
        InvalidMessage("bad"),
        PreconditionFailed("not on watched"),
        PublishRefused("too large"),
        GitFailure("push failed twice", retriable=False),
        KeyError("a bug"),
        asyncpg.exceptions.UniqueViolationError("23505"),
        asyncpg.exceptions.UndefinedColumnError("42703"),
    ],
)
def test_messages_at_fault_are_permanent(exc: BaseException) -> None:
    assert not is_retriable(exc)


def test_a_wrapped_outage_names_its_cause() -> None:
    try:
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as inner:
            raise BrokerUnavailable("publish failed") from inner
    except BrokerUnavailable as outer:
        assert dependency_of(outer) == "kafka"
    wrapped = RuntimeError("x")
    wrapped.__cause__ = asyncpg.exceptions.AdminShutdownError("57P01")
    assert dependency_of(wrapped) == "postgres"


async def test_a_refused_connection_is_named_after_the_client_that_met_it() -> None:
    try:
        await asyncpg.connect("postgresql://nobody@127.0.0.1:9/none", timeout=5)
    except OSError as exc:
        assert is_retriable(exc)
        assert dependency_of(exc) == "postgres"
    else:
        raise AssertionError("nothing listens on port 9")


def test_aiokafka_classes_we_rely_on() -> None:
    """publish() treats only errors about the record itself as permanent: aiokafka's own
    timeout error says it is not retriable, yet it is an outage."""
    assert not MessageSizeTooLargeError.retriable
    assert not KafkaTimeoutError.retriable
    assert KafkaConnectionError.retriable


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    backoff = Backoff(first_s=0.2, cap_s=10.0)
    delays = [backoff.delay(n) for n in range(1, 12)]
    assert 0.16 <= delays[0] <= 0.24
    assert 0.32 <= delays[1] <= 0.48
    assert all(8.0 <= d <= 12.0 for d in delays[7:])


def test_waits_count_time_and_log_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="waveline.shared.outage")
    waits = Waits("promoter")
    for _ in range(50):
        waits.failed("waveline.images", asyncpg.exceptions.CannotConnectNowError("57P03"))
    assert waits.current()["waveline.images"]["attempts"] == 50
    waits.failed("waveline.images", BrokerUnavailable("no ack"))  # now Kafka
    waits.succeeded("waveline.images")
    waits.succeeded("waveline.images")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines  # postgres: begins, ends; kafka: begins, ends
    assert waits.current() == {}
    assert set(waits.waited_s) == {"postgres", "kafka"}


def test_repeat_filter_lets_one_line_a_minute_through_per_kind() -> None:
    quiet = RepeatFilter(window_s=60.0)

    def record(name: str, msg: str, at: float) -> logging.LogRecord:
        rec = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, ("node 1",), None)
        rec.created = at
        return rec

    passed = [
        quiet.filter(record("aiokafka.conn", "Unable connect to %s", t * 0.1)) for t in range(3000)
    ]
    assert sum(passed) == 5  # 300 s of a failure every 100 ms: one line a minute
    again = record("aiokafka.conn", "Unable connect to %s", 301.0)
    assert quiet.filter(again)
    assert "more like this" in again.getMessage()
    assert quiet.filter(record("aiokafka.other", "Unable connect to %s", 1.0))
    assert all(quiet.filter(record("waveline.services.x", "mine %s", t)) for t in range(5))

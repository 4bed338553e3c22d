"""The notifier as a real process, killed while deliveries are under way and started again:
what was queued resumes, what was delivered is never sent again, attempts stay numbered.

Kills are real: a failpoint (``WAVELINE_FAULT_FILE``, ``shared/faults.py``) ends the process
with ``os._exit`` at a named point, or the test sends SIGKILL. The receivers run in the test
process (``tests.integration.test_notifier``); the notifier reads the same config file and
secrets (from its environment) on both runs. Each run first joins its six consumer groups
(about 15 s), so these tests take a while.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import pytest

from tests.integration.test_notifier import (
    Receivers,
    attempts,
    delivery,
    eventually,
    notifier_config,
    produce,
    promotion_reaches,
    requested,
    secret_texts,
    serve_receivers,
    statuses_of,
    topic_messages,
)
from tests.support import service_env, wait_for
from waveline.shared.config import Settings, WavelineConfig
from waveline.shared.faults import EXIT_CODE

STARTUP_S = 90.0  # a run's consumer group joins, then the delivery


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    async with serve_receivers() as found:
        yield found


class Notifier:
    """``python -m waveline run notifier`` on the test's settings, config and secrets."""

    def __init__(
        self, settings: Settings, config: WavelineConfig, base: str, tmp_path: Path
    ) -> None:
        self.fault = tmp_path / "fault"
        self.log_path = tmp_path / "notifier.log"
        self.env = service_env(settings, config, tmp_path) | secret_texts(base)
        self.log: IO[bytes] = self.log_path.open("ab")
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> asyncio.subprocess.Process:
        argv = [sys.executable, "-m", "waveline", "run", "notifier"]
        proc = await asyncio.create_subprocess_exec(
            *argv, env=self.env, stdout=self.log, stderr=self.log
        )
        self.procs.append(proc)
        return proc

    async def exited(self, proc: asyncio.subprocess.Process, timeout_s: float = 60.0) -> int:
        try:
            return await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"the notifier did not exit:\n{self.tail()}") from None

    def tail(self) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        self.log.close()


@asynccontextmanager
async def notifier(
    settings: Settings, config: WavelineConfig, receivers: Receivers, tmp_path: Path
) -> AsyncIterator[Notifier]:
    process = Notifier(settings, config, receivers.base, tmp_path)
    try:
        yield process
    finally:
        await process.stop()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kill", ["failpoint", "sigkill"])
async def test_restart_resumes_the_pending_delivery_and_never_resends_a_delivered_one(
    settings: Settings, remote: Path, tmp_path: Path, receivers: Receivers, kill: str
) -> None:
    """Promotion ``ok`` is delivered; promotion ``bad``'s receiver answers 500, so it is
    between retries when the notifier dies: at ``notifier_after_record`` (an attempt was
    just recorded) or by SIGKILL while it waits for the next attempt (1-2 s). The receiver
    recovers; the restarted notifier delivers ``bad`` with the same CloudEvent (id and
    bytes), numbers its attempts on from the recorded ones, and leaves ``ok`` alone."""
    # Waits of 1-2 s between attempts; enough attempts to outlast the kill and restart.
    config = notifier_config(remote.as_uri(), receivers.base, max_attempts=10, backoff=2, cap=2)
    ok, bad = requested(), requested()
    async with notifier(settings, config, receivers, tmp_path) as process:
        first = await process.start()
        await produce(settings, "waveline.promotions", "app", ok)
        await eventually(
            lambda: delivery(settings, ok.promotion_id),
            lambda r: r is not None and r["state"] == "delivered" and r["announced"],
            what="ok delivered",
            timeout_s=STARTUP_S,
        )
        receivers.hook.script(bad.promotion_id, 500)
        await produce(settings, "waveline.promotions", "app", bad)
        await wait_for(
            lambda: bool(receivers.hook.containing(bad.promotion_id)), what="bad's first attempt"
        )
        if kill == "failpoint":
            process.fault.write_text("notifier_after_record")
            assert await process.exited(first) == EXIT_CODE, process.tail()
            assert not process.fault.exists()
        else:
            await eventually(
                lambda: attempts(settings, bad.promotion_id),
                bool,
                what="bad's first attempt recorded",
            )
            first.send_signal(signal.SIGKILL)
            assert await process.exited(first) == -signal.SIGKILL
        sent_before = len(receivers.hook.containing(bad.promotion_id))
        recorded = await attempts(settings, bad.promotion_id)
        # Killed after recording, or while waiting: every attempt sent is recorded.
        assert len(recorded) == sent_before, (recorded, sent_before)
        row = await delivery(settings, bad.promotion_id)
        assert row is not None and row["state"] == "pending"

        receivers.hook.scripts.clear()  # the receiver recovers: 200 from now on
        await process.start()
        messages = await promotion_reaches(settings, bad.promotion_id, "delivered", STARTUP_S)
        await eventually(
            lambda: delivery(settings, bad.promotion_id),
            lambda r: r is not None and r["state"] == "delivered" and r["announced"],
            what="bad delivered and announced",
        )
        tries = await attempts(settings, bad.promotion_id)

    bad_hits = receivers.hook.containing(bad.promotion_id)
    assert len(bad_hits) == sent_before + 1
    assert {h.id for h in bad_hits} == {str(bad.promotion_id)}
    assert len({h.body for h in bad_hits}) == 1
    assert len(receivers.hook.of(ok.promotion_id)) == 1  # never sent again
    assert [t["attempt"] for t in tries] == list(range(1, sent_before + 2))
    assert [t["status_code"] for t in tries] == [500] * sent_before + [200]
    assert statuses_of(messages, ok.promotion_id) == ["requested", "delivered"]
    assert statuses_of(messages, bad.promotion_id) == ["requested", "delivered"]


@pytest.mark.timeout(240)
async def test_crash_between_send_and_record_sends_again(
    settings: Settings, remote: Path, tmp_path: Path, receivers: Receivers
) -> None:
    """At-least-once, not exactly-once: the notifier dies at ``notifier_after_send``, after
    the receiver accepted the POST (200) but before the attempt was recorded. Nothing in
    Postgres says it arrived, so the restarted notifier sends it again once the dead
    process's claim on it lapses (the attempt timeout plus 30 s): the receiver sees the same
    CloudEvent twice, same id and same signed bytes, and must deduplicate on the id. The
    notifier records it as delivered once, at attempt 1 (the lost attempt left no trace),
    and announces ``delivered`` once."""
    config = notifier_config(remote.as_uri(), receivers.base)
    event = requested()
    pid = event.promotion_id
    async with notifier(settings, config, receivers, tmp_path) as process:
        process.fault.write_text("notifier_after_send")
        first = await process.start()
        await produce(settings, "waveline.promotions", "app", event)
        assert await process.exited(first, STARTUP_S) == EXIT_CODE, process.tail()
        assert not process.fault.exists()
        assert len(receivers.hook.of(pid)) == 1  # it did arrive
        row = await delivery(settings, pid)
        assert row is not None
        assert (row["state"], row["attempts"], row["announced"]) == ("pending", 0, False)
        assert await attempts(settings, pid) == []

        await process.start()
        messages = await promotion_reaches(settings, pid, "delivered", timeout_s=STARTUP_S)
        await eventually(
            lambda: delivery(settings, pid),
            lambda r: r is not None and r["state"] == "delivered" and r["announced"],
            what="delivered and announced",
        )
        tries = await attempts(settings, pid)
        # Once more through the topic, after the follow-up is marked announced: still one.
        messages = await topic_messages(
            settings, "waveline.promotions", lambda ms: len(ms) >= len(messages)
        )

    hits = receivers.hook.of(pid)
    assert len(hits) == 2
    assert hits[0].body == hits[1].body
    assert hits[0].headers["X-Signature"] == hits[1].headers["X-Signature"]
    assert [(t["attempt"], t["status_code"], t["outcome"]) for t in tries] == [
        (1, 200, "delivered")
    ]
    assert statuses_of(messages, pid) == ["requested", "delivered"]

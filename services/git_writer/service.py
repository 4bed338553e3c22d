"""git-writer's Kafka side: batches of ``waveline.git.commands`` in, events out.

Commands that wait together are applied as successive commits and pushed once per repo per
batch. Offsets are committed (the batch acked) only after the push succeeded and the results
were recorded and published, so a crash at any point replays the batch; Event-Id trailers and
the results table turn the replay into no-ops with the original events. All git work happens
in one child process per repo (``host.py``), off this process's event loop and its GIL.

One poll is handled in rounds (``on_poll``): while a round's events are published, the next
round's commands are looked up and built; its push waits for those publishes, so events keep
the order of the pushes. A failure anywhere sends the whole poll back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from aiokafka import TopicPartition
from pydantic import ValidationError

from waveline.services.git_writer import evictions
from waveline.services.git_writer.apply import Command, Result
from waveline.services.git_writer.client import RepoProcess
from waveline.services.git_writer.host import HostInit
from waveline.services.git_writer.protocol import Built as BuiltAt
from waveline.shared.errors import GitFailure, GitUnreachable, PreconditionFailed
from waveline.shared.faults import failpoint
from waveline.shared.forge.github_app import TokenSource, token_source
from waveline.shared.logs import secret_values
from waveline.shared.models.base import utcnow
from waveline.shared.models.git import GIT_COMMAND, GitEvent
from waveline.shared.outage import Unfinished, first_offsets, is_retriable
from waveline.shared.runtime import Polled, Runtime

logger = logging.getLogger(__name__)

_EVENT_NS = uuid.UUID("5b0e6f1c-8a4e-4c39-9d0c-2f1f3c7d9a11")
MAX_BATCH = 200
# A batch whose oldest command waited longer than this was queued behind the previous
# round; the commands that came meanwhile are one fetch (about a millisecond) away and join
# it (see _top_up). When none came, the wait costs the batch TOP_UP_WAIT_MS.
TOP_UP_AFTER_MS = 5
TOP_UP_WAIT_MS = 2
Tail = asyncio.Task[None]
# Past its deadline a repo process is killed; a call still waiting this much later means
# the writer is stuck (liveness fails and the orchestrator restarts it).
STUCK_GRACE_S = 30.0
# A built batch: results by command, commands that failed alone, timings.
Built = tuple[dict[uuid.UUID, Result], list[tuple["Pending", GitFailure]], dict[str, float]]


def _succeeded(task: Tail) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


async def _wait_all(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Wait for every task, then raise the first one's failure."""
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


@dataclass
class Pending:
    """One command of the batch with where it came from (for dead-lettering)."""

    cmd: Command
    record: Any
    body: bytes


@dataclass
class GitWriter:
    runtime: Runtime
    _repos: dict[str, RepoProcess] = field(default_factory=dict)
    _closing: bool = False

    def close(self) -> None:
        """Stopping: the poll being handled ends after its current round."""
        self._closing = True

    def register(self) -> None:
        rt = self.runtime
        rt.add_live_check(self.stuck)
        # A redelivered command finds its recorded result (or its Event-Id on the branches)
        # and is a no-op, so handled offsets may be committed lazily.
        rt.subscribe_records(
            rt.topics.git_commands,
            rt.group("waveline-git-writer"),
            self.on_poll,
            title="git-writer commands",
            description="Serialized git commands, keyed by config repo.",
            max_records=MAX_BATCH,
        )

    async def on_poll(self, polled: Polled) -> None:
        """Handle a poll, and what arrives meanwhile, in rounds (for at most
        ``commit_interval_s``, so offsets still get committed under steady load). Every
        round's records join ``polled.records``: they count as handled only when this
        returns, after the last round's events were published, and all go back if it
        raises.

        A repository whose batch meets an outage (its remote, PostgreSQL) has its
        partitions paused at once, so later rounds take nothing more from them, and this
        raises ``Unfinished`` from its first command after the rounds of the others ended:
        one repository's outage does not hold the repositories of other partitions."""
        consumer = polled.consumer
        records = polled.records
        records += await self._top_up(consumer, records)
        until = time.monotonic() + self.runtime.settings.commit_interval_s
        tails: list[Tail] = []
        unfinished: dict[TopicPartition, int] = {}
        cause: BaseException | None = None
        try:
            while True:
                tails, failed = await self.on_batch(records, after=tails)
                for repo_records, exc in failed:
                    cause = cause or exc
                    for tp, offset in first_offsets(repo_records).items():
                        unfinished[tp] = min(offset, unfinished.get(tp, offset))
                if failed and consumer is not None:
                    assigned = consumer.assignment()
                    consumer.pause(*[tp for tp in unfinished if tp in assigned])
                if consumer is None or self._closing or time.monotonic() >= until:
                    break
                more = await consumer.getmany(timeout_ms=0, max_records=MAX_BATCH)
                records = list(chain.from_iterable(more.values()))
                if not records:
                    break
                records += await self._top_up(consumer, records)
                polled.records += records
        except BaseException:
            # No publish of this poll outlives it: the poll goes back, and its redelivery
            # must not race these.
            await asyncio.gather(*tails, return_exceptions=True)
            raise
        await _wait_all(tails)
        if cause is not None:
            raise Unfinished(cause, unfinished)

    async def on_batch(
        self, records: list[Any], after: list[Tail] | None = None
    ) -> tuple[list[Tail], list[tuple[list[Any], BaseException]]]:
        """Handle one round; returns the tasks still publishing its events (a round's push
        waits for ``after``, the previous round's), and the records of each repository
        whose batch met an outage, with the error (nothing of them was done)."""
        boundary = self.runtime.boundary()
        by_repo: dict[str, list[Pending]] = {}
        for record in records:
            body: bytes = record.value or b""
            try:
                cmd = GIT_COMMAND.validate_json(body)
                if cmd.repo not in self.runtime.config.repos:
                    raise PreconditionFailed(f"unknown repo {cmd.repo!r}")
            except (ValidationError, PreconditionFailed) as exc:
                logger.warning("git-writer: refusing command at offset %s: %s", record.offset, exc)
                await boundary.dead_letter_record(record, body, exc)
                continue
            by_repo.setdefault(cmd.repo, []).append(Pending(cmd, record, body))
        tails: list[Tail] = []
        failed: list[tuple[list[Any], BaseException]] = []
        for repo, batch in by_repo.items():
            try:
                tails.append(await self.handle_batch(repo, batch, after or []))
            except Exception as exc:
                if is_retriable(exc):
                    # An outage (the remote, PostgreSQL): wait it out, never dead-letter.
                    failed.append(([p.record for p in batch], exc))
                    continue
                if not isinstance(exc, GitFailure):
                    raise
                # Tried twice from fresh state: dead-letter this repo's commands with the
                # reason and carry on.
                logger.exception("repo %s: batch of %d failed; dead-lettering", repo, len(batch))
                for pending in batch:
                    await boundary.dead_letter_record(pending.record, pending.body, exc)
        # A previous round's publishes this round did not wait for (no push) stay due.
        return [t for t in after or [] if not _succeeded(t)] + tails, failed

    def stuck(self) -> str | None:
        """Why the writer is not live: a repo process call outlived its deadline by far,
        so even killing the process did not end it."""
        for repo, proc in self._repos.items():
            waited = proc.stuck_for()
            if waited > proc.deadline_s + STUCK_GRACE_S:
                deadline = proc.deadline_s
                return f"repo {repo}: a call has waited {waited:.0f} s (deadline {deadline:g} s)"
        return None

    @staticmethod
    async def _top_up(consumer: Any, records: list[Any]) -> list[Any]:
        """The backlog to take into this batch when the batch was queued behind the
        previous one.

        While a round is applied, the consumer's prefetch returns the first command that
        arrives and then waits for it to be consumed; everything produced after that stays
        on the broker. Without this, that command would pay a whole round (a push and the
        Postgres round trips around it) alone, and each one behind it a round more: at 100
        commands a second they waited 24 ms (median) before their round began, 12 ms once
        they were taken along after 5 ms of waiting (measured together with the shorter GIL
        switch interval)."""
        if consumer is None or not records or len(records) >= MAX_BATCH:
            return []
        waited_ms = time.time() * 1000 - min(r.timestamp for r in records)
        if waited_ms < TOP_UP_AFTER_MS:
            return []
        more = await consumer.getmany(
            timeout_ms=TOP_UP_WAIT_MS, max_records=MAX_BATCH - len(records)
        )
        return list(chain.from_iterable(more.values()))

    def _process(self, repo_name: str) -> RepoProcess:
        if repo_name not in self._repos:
            settings = self.runtime.settings
            self._repos[repo_name] = RepoProcess(
                HostInit(
                    repo=repo_name,
                    repo_config=self.runtime.config.repos[repo_name],
                    config=self.runtime.config,
                    path=settings.data_dir / "repos" / f"{repo_name}.git",
                    log_level=settings.log_level,
                    log_secrets=secret_values(settings, self.runtime.secrets, self.runtime.config),
                    gil_switch_interval_ms=settings.gil_switch_interval_ms,
                    connect_timeout_s=settings.git_connect_timeout_s,
                    io_timeout_s=settings.git_io_timeout_s,
                    max_file_bytes=settings.git_max_file_bytes,
                    memory_pack_bytes=settings.git_memory_pack_bytes,
                    object_cache_bytes=settings.git_object_cache_bytes,
                ),
                deadline_s=settings.git_call_deadline_s,
                tokens=self._git_tokens(repo_name),
            )
        return self._repos[repo_name]

    def _git_tokens(self, repo_name: str) -> TokenSource | None:
        """The GitHub App token source of a repo whose git authenticates with one (a
        missing or unusable key is a ``ConfigError`` at start, see on_started)."""
        repo = self.runtime.config.repos[repo_name]
        if not repo.git_uses_app():
            return None
        return token_source(repo_name, repo, self.runtime.secrets)

    async def on_started(self) -> None:
        """Start every repo's process and fetch its remote now rather than on its first
        command (an import of pygit2 and the models: a few hundred milliseconds; a clone's
        first fetch: the whole repository, 1.5 s at 20,000 files, 20 s at 200,000), so the
        service is ready only once the first set can be committed at once. A remote that
        does not answer is not waited for here: the first command meets it as an outage."""
        await asyncio.gather(*(self._warm(name) for name in self.runtime.config.repos))

    async def _warm(self, repo: str) -> None:
        process = self._process(repo)
        await process.start()
        try:
            await process.refresh()
        except GitFailure as exc:
            logger.warning("repo %s: first fetch failed (%s); commands will retry it", repo, exc)

    async def handle_batch(self, repo: str, batch: list[Pending], after: list[Tail]) -> Tail:
        """Look up, apply, record, wait for ``after``, push once; returns the task that
        publishes the events and marks the results done. Raises (so the batch is not acked)
        only when the outcome could not be made durable."""
        started = time.perf_counter()
        # Kafka record timestamps are the producers' wall clocks: how long the oldest
        # command of the batch waited to be picked up (consumer lag, in time).
        waited_ms = time.time() * 1000 - min(p.record.timestamp for p in batch)
        pool = self.runtime.pool
        proc = self._process(repo)
        failpoint("before_commit")
        # Built while the results are looked up: a command is nearly always new, and a
        # build is only objects in memory, dropped (and redone without them) when some
        # command turns out to have a result already.
        speculative = asyncio.ensure_future(proc.build([p.cmd for p in batch], False, self._age))
        first: asyncio.Future[BuiltAt] | None = speculative
        try:
            rows = await pool.fetch(
                "SELECT command_id, state, event::text AS event FROM git_command_results"
                " WHERE command_id = ANY($1::uuid[])",
                [p.cmd.command_id for p in batch],
            )
        except BaseException:
            await asyncio.gather(speculative, return_exceptions=True)
            raise
        known = {
            r["command_id"]: (r["state"], GitEvent.model_validate_json(r["event"])) for r in rows
        }
        todo = [p for p in batch if p.cmd.command_id not in known]
        if known:
            await asyncio.gather(speculative, return_exceptions=True)
            first = None
        if any(state == "pushing" for state, _ in known.values()):
            known = await proc.settle(known)
            await pool.execute(
                "UPDATE git_command_results SET state = 'done'"
                " WHERE command_id = ANY($1::uuid[]) AND state = 'pushing'",
                list(known),
            )
            todo = [p for p in batch if p.cmd.command_id not in known]
        events: dict[uuid.UUID, GitEvent] = {cid: ev for cid, (_, ev) in known.items()}
        failed: list[tuple[Pending, GitFailure]] = []
        pushed: list[uuid.UUID] = []
        if todo:
            results, failed, timings = await self._apply(
                proc, repo, todo, built_first=first, after=after
            )
            for p in todo:
                if p.cmd.command_id in results:
                    events[p.cmd.command_id] = self._event(
                        p.cmd, results[p.cmd.command_id], timings
                    )
            pushed = list(results)
        else:
            await _wait_all(after)
        return asyncio.create_task(
            self._finish(
                repo,
                batch,
                events,
                failed=failed,
                pushed=pushed,
                started=started,
                waited_ms=waited_ms,
            ),
            name=f"git-events-{repo}",
        )

    async def _finish(
        self,
        repo: str,
        batch: list[Pending],
        events: dict[uuid.UUID, GitEvent],
        *,
        failed: list[tuple[Pending, GitFailure]],
        pushed: list[uuid.UUID],
        started: float,
        waited_ms: float,
    ) -> None:
        """Dead letters, events and 'done' marks of a pushed batch."""
        failpoint("after_record")
        boundary = self.runtime.boundary()
        for pending, exc in failed:
            await boundary.dead_letter_record(pending.record, pending.body, exc)

        # The events go one after the other, each acknowledged before the next is sent: when
        # one fails, none after it is out, and the redelivered poll sends them again in
        # order (sent together, a later one could land before the failed one's resend).
        # Beside them the 'done' marks (a crash before those only costs a look at the remote
        # on redelivery, see _settle); all awaited before the batch counts as handled.
        async def publish_in_order() -> None:
            for p in batch:
                if p.cmd.command_id in events:
                    await self.runtime.publish(
                        events[p.cmd.command_id], self.runtime.topics.git_events, key=repo
                    )

        steps: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(publish_in_order()),
            # Before the batch counts as handled: a retry is decided on these records.
            asyncio.ensure_future(evictions.record(self.runtime.pool, events.values())),
        ]
        if pushed:
            steps.append(
                asyncio.ensure_future(
                    self.runtime.pool.execute(
                        "UPDATE git_command_results SET state = 'done'"
                        " WHERE command_id = ANY($1::uuid[])",
                        pushed,
                    )
                )
            )
        await _wait_all(steps)
        logger.info(
            "repo %s: batch of %d (%d new) in %.1f ms; its oldest command waited %.0f ms",
            repo,
            len(batch),
            len(pushed),
            (time.perf_counter() - started) * 1000,
            waited_ms,
        )

    @property
    def _age(self) -> float:
        return self.runtime.settings.git_fetch_interval_s

    async def _apply(
        self,
        proc: RepoProcess,
        repo: str,
        todo: list[Pending],
        *,
        built_first: asyncio.Future[BuiltAt] | None,
        after: list[Tail],
    ) -> Built:
        """Build every command on fresh state (or take ``built_first``, built for exactly
        ``todo``) and push once, after ``after``; on a git failure fetch and do it all once
        more; after that, a command that still fails is dead-lettered alone, and a push that
        still fails fails the batch (never a half-applied push)."""
        for attempt in (1, 2):
            try:
                if attempt == 1 and built_first is not None:
                    built = await built_first
                else:
                    cmds = [p.cmd for p in todo]
                    built = await proc.build(cmds, attempt == 2, self._age)
            except GitUnreachable:
                raise  # an outage: waited out with backoff (see on_poll), not retried now
            except GitFailure as exc:
                if attempt == 2 or not exc.retriable:
                    raise GitFailure(f"repo {repo}: {exc}", retriable=False) from exc
                logger.warning("repo %s: %s; fetching and retrying the batch once", repo, exc)
                continue
            results, failed_at, timings = built
            failed = [(todo[position], exc) for position, exc in failed_at]
            await self._record(repo, todo, results, "pushing")
            # The previous round's events go out before this push's can.
            await _wait_all(after)
            failpoint("before_push")
            push_started = time.perf_counter()
            try:
                await proc.flush()
            except GitFailure as exc:
                await self._forget(results)
                await proc.discard()
                if isinstance(exc, GitUnreachable):
                    raise
                if attempt == 2 or not exc.retriable:
                    raise GitFailure(
                        f"repo {repo}: push failed twice: {exc}", retriable=False
                    ) from exc
                logger.warning("repo %s: push failed (%s); fetching and retrying once", repo, exc)
                continue
            timings["push_ms"] = round((time.perf_counter() - push_started) * 1000, 3)
            failpoint("after_push")
            return results, failed, timings
        raise AssertionError("unreachable")

    async def _record(
        self, repo: str, todo: list[Pending], results: dict[uuid.UUID, Result], state: str
    ) -> None:
        rows = []
        for p in todo:
            result = results.get(p.cmd.command_id)
            if result is None:
                continue
            event = self._event(p.cmd, result, {})
            rows.append(
                (
                    p.cmd.command_id,
                    repo,
                    p.cmd.kind,
                    result.outcome,
                    state,
                    result.sha,
                    event.model_dump_json(),
                )
            )
        await self.runtime.pool.executemany(
            "INSERT INTO git_command_results (command_id, repo, kind, outcome, state, sha, event)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)"
            " ON CONFLICT (command_id) DO UPDATE SET outcome = EXCLUDED.outcome,"
            " state = EXCLUDED.state, sha = EXCLUDED.sha, event = EXCLUDED.event",
            rows,
        )

    async def _forget(self, results: dict[uuid.UUID, Result]) -> None:
        await self.runtime.pool.execute(
            "DELETE FROM git_command_results"
            " WHERE command_id = ANY($1::uuid[]) AND state = 'pushing'",
            list(results),
        )

    def _event(self, cmd: Command, result: Result, timings: dict[str, float]) -> GitEvent:
        return GitEvent(
            event_id=uuid.uuid5(_EVENT_NS, str(cmd.command_id)),
            command_id=cmd.command_id,
            command_kind=cmd.kind,
            repo=cmd.repo,
            outcome=result.outcome,
            branch=result.branch,
            sha=result.sha,
            old_sha=result.old_sha,
            replayed=result.replayed,
            trailers=result.trailers,
            wave_apps=result.wave_apps,
            values_before=result.values_before,
            values_after=result.values_after,
            pipeline=getattr(cmd, "pipeline", None),
            wave=getattr(cmd, "wave", None) or getattr(cmd, "to_wave", None),
            app_sha=getattr(cmd, "app_sha", None),
            reason=result.reason,
            rule=result.rule,
            timings_ms=timings,
            at=utcnow(),
        )

    async def after_consuming(self) -> None:
        """After the last batch: every repo process packs what only its memory holds and
        exits."""
        await asyncio.gather(*(proc.close() for proc in self._repos.values()))

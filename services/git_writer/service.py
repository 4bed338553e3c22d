"""git-writer's Kafka side: batches of ``waveline.git.commands`` in, events out.

Commands that wait together are applied as successive commits and pushed once per repo per
batch. Offsets are committed (the batch acked) only after the push succeeded and the results
were recorded and published, so a crash at any point replays the batch; Event-Id trailers and
the results table turn the replay into no-ops with the original events.

One poll is handled in rounds (``on_poll``): while a round's events are published, the next
round's commands are looked up and built; its push waits for those publishes, so events keep
the order of the pushes. A failure anywhere sends the whole poll back.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import pygit2
from pydantic import ValidationError

from waveline.services.git_writer.apply import Applier, Command, Result
from waveline.shared.errors import GitFailure, PreconditionFailed
from waveline.shared.faults import failpoint
from waveline.shared.gitengine.memory import MemoryObjects
from waveline.shared.gitengine.repo import ConfigRepo, credentials_from_env
from waveline.shared.gitengine.worker import RepoWorker
from waveline.shared.models.base import utcnow
from waveline.shared.models.git import GIT_COMMAND, AlignAuto, GitEvent
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
    _repos: dict[str, tuple[RepoWorker, Applier]] = field(default_factory=dict)
    # Per repo: packing the objects the writer keeps in memory (and any loose ones), on a
    # thread and clone object of its own so a batch never waits for it (packing 100k loose
    # objects on the repo thread stalled batches for 30 s).
    _compactors: dict[str, tuple[RepoWorker, ConfigRepo]] = field(default_factory=dict)
    _compacting: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _closing: bool = False

    def close(self) -> None:
        """Stopping: the poll being handled ends after its current round."""
        self._closing = True

    def register(self) -> None:
        rt = self.runtime
        # The repo thread calls back into Python during every build and push (the objects
        # held in memory are read through callbacks); each callback waits for the event
        # loop's thread to hand over the GIL, up to the switch interval (5 ms by default).
        sys.setswitchinterval(rt.settings.gil_switch_interval_ms / 1000)
        # A redelivered command finds its recorded result (or its Event-Id on the branches)
        # and is a no-op, so handled offsets may be committed lazily.
        rt.subscribe_records(
            rt.topics.git_commands,
            rt.group("waveline-git-writer"),
            self.on_poll,
            title="git-writer commands",
            description="Serialized git commands, keyed by config repo.",
            max_records=MAX_BATCH,
            batch_timeout_ms=20,
        )

    async def on_poll(self, polled: Polled) -> None:
        """Handle a poll, and what arrives meanwhile, in rounds (for at most
        ``commit_interval_s``, so offsets still get committed under steady load). Every
        round's records join ``polled.records``: they count as handled only when this
        returns, after the last round's events were published, and all go back if it
        raises."""
        consumer = polled.consumer
        records = polled.records
        records += await self._top_up(consumer, records)
        until = time.monotonic() + self.runtime.settings.commit_interval_s
        tails: list[Tail] = []
        try:
            while True:
                tails = await self.on_batch(records, after=tails)
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

    async def on_batch(self, records: list[Any], after: list[Tail] | None = None) -> list[Tail]:
        """Handle one round; returns the tasks still publishing its events (a round's push
        waits for ``after``, the previous round's)."""
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
        for repo, batch in by_repo.items():
            try:
                tails.append(await self.handle_batch(repo, batch, after or []))
            except GitFailure as exc:
                # Tried twice from fresh state: dead-letter this repo's commands with the
                # reason and carry on. Anything else (Postgres, Kafka) propagates, so the
                # batch is not acked and comes back.
                logger.exception("repo %s: batch of %d failed; dead-lettering", repo, len(batch))
                for pending in batch:
                    await boundary.dead_letter_record(pending.record, pending.body, exc)
        # A previous round's publishes this round did not wait for (no push) stay due.
        return [t for t in after or [] if not _succeeded(t)] + tails

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

    def _maybe_compact(self, repo_name: str, applier: Applier) -> None:
        running = self._compacting.get(repo_name)
        if running is not None and not running.done():
            return
        if not applier.compaction_due():
            return
        if repo_name not in self._compactors:
            clone = applier.repo
            self._compactors[repo_name] = (
                RepoWorker(f"{repo_name}-compact"),
                ConfigRepo(
                    name=clone.name, config=clone.config, path=clone.path, memory=clone.memory
                ),
            )
        worker, clone = self._compactors[repo_name]
        self._compacting[repo_name] = asyncio.create_task(
            self._compact(worker, clone), name=f"compact-{repo_name}"
        )

    async def _compact(self, worker: RepoWorker, clone: ConfigRepo) -> None:
        started = time.perf_counter()
        try:
            packed = await worker.run(clone.compact)
        except (pygit2.GitError, OSError):
            # A cache's housekeeping: the clone still works, and the next round retries.
            logger.exception("repo %s: packing objects failed", clone.name)
            return
        # The writer's repository object still holds packs that were merged and deleted.
        writer, applier = self._repos[clone.name]
        await writer.run(applier.repo.forget)
        if packed:
            logger.info(
                "repo %s: packed %d objects in %.0f ms (beside the writer)",
                clone.name,
                packed,
                (time.perf_counter() - started) * 1000,
            )

    async def _applier(self, repo_name: str) -> tuple[RepoWorker, Applier]:
        if repo_name not in self._repos:
            config = self.runtime.config.repos[repo_name]
            repo = ConfigRepo(
                name=repo_name,
                config=config,
                path=self.runtime.settings.data_dir / "repos" / f"{repo_name}.git",
                creds=credentials_from_env(config),
                memory=MemoryObjects(),
            )
            self._repos[repo_name] = (RepoWorker(repo_name), Applier(repo, self.runtime.config))
        return self._repos[repo_name]

    async def handle_batch(self, repo: str, batch: list[Pending], after: list[Tail]) -> Tail:
        """Look up, apply, record, wait for ``after``, push once; returns the task that
        publishes the events and marks the results done. Raises (so the batch is not acked)
        only when the outcome could not be made durable."""
        started = time.perf_counter()
        # Kafka record timestamps are the producers' wall clocks: how long the oldest
        # command of the batch waited to be picked up (consumer lag, in time).
        waited_ms = time.time() * 1000 - min(p.record.timestamp for p in batch)
        pool = self.runtime.pool
        worker, applier = await self._applier(repo)
        failpoint("before_commit")
        # Built while the results are looked up: a command is nearly always new, and a
        # build is only objects in memory, dropped (and redone without them) when some
        # command turns out to have a result already.
        speculative = asyncio.ensure_future(
            worker.run(self._build, applier, batch, False, self._age)
        )
        first: asyncio.Future[Built] | None = speculative
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
            known = await worker.run(self._settle, applier, known)
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
                worker, applier, repo, todo, built_first=first, after=after
            )
            for p in todo:
                if p.cmd.command_id in results:
                    events[p.cmd.command_id] = self._event(
                        p.cmd, results[p.cmd.command_id], timings
                    )
            pushed = list(results)
        else:
            await _wait_all(after)
        self._maybe_compact(repo, applier)
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

        steps: list[asyncio.Future[Any]] = [asyncio.ensure_future(publish_in_order())]
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
        worker: RepoWorker,
        applier: Applier,
        repo: str,
        todo: list[Pending],
        *,
        built_first: asyncio.Future[Built] | None,
        after: list[Tail],
    ) -> tuple[dict[uuid.UUID, Result], list[tuple[Pending, GitFailure]], dict[str, float]]:
        """Build every command on fresh state (or take ``built_first``, built for exactly
        ``todo``) and push once, after ``after``; on a git failure fetch and do it all once
        more; after that, a command that still fails is dead-lettered alone, and a push that
        still fails fails the batch (never a half-applied push)."""
        for attempt in (1, 2):
            try:
                if attempt == 1 and built_first is not None:
                    built = await built_first
                else:
                    built = await worker.run(self._build, applier, todo, attempt == 2, self._age)
            except GitFailure as exc:
                if attempt == 2 or not exc.retriable:
                    raise GitFailure(f"repo {repo}: {exc}", retriable=False) from exc
                logger.warning("repo %s: %s; fetching and retrying the batch once", repo, exc)
                continue
            results, failed, timings = built
            await self._record(repo, todo, results, "pushing")
            # The previous round's events go out before this push's can.
            await _wait_all(after)
            failpoint("before_push")
            push_started = time.perf_counter()
            try:
                await worker.run(applier.flush)
            except GitFailure as exc:
                await self._forget(results)
                await worker.run(applier.discard)
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

    @staticmethod
    def _build(applier: Applier, todo: list[Pending], last_try: bool, max_age_s: float) -> Built:
        started = time.perf_counter()
        # An AlignAuto asks to look at the remote now (watched moved outside Waveline).
        if last_try or any(isinstance(p.cmd, AlignAuto) for p in todo):
            applier.refresh()
        else:
            applier.refresh_if_stale(max_age_s)
        fetched = time.perf_counter()
        results: dict[uuid.UUID, Result] = {}
        failed: list[tuple[Pending, GitFailure]] = []
        for p in todo:
            if p.cmd.command_id in results:
                continue  # the same command twice in one batch: its first result stands
            try:
                results[p.cmd.command_id] = applier.apply(p.cmd)
            except PreconditionFailed as exc:
                results[p.cmd.command_id] = Result("rejected", reason=str(exc))
            except GitFailure as exc:
                if not last_try:
                    raise
                failed.append((p, GitFailure(f"failed twice: {exc}", retriable=False)))
        done = time.perf_counter()
        return (
            results,
            failed,
            {
                "fetch_ms": round((fetched - started) * 1000, 3),
                "apply_ms": round((done - fetched) * 1000, 3),
                "batch_size": float(len(todo)),
            },
        )

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

    def _settle(
        self, applier: Applier, known: dict[uuid.UUID, tuple[str, GitEvent]]
    ) -> dict[uuid.UUID, tuple[str, GitEvent]]:
        """After a crash between 'pushing' and 'done': keep the rows whose effect reached the
        remote (their recorded events are the truth), drop the others so they are redone."""
        applier.refresh()
        settled: dict[uuid.UUID, tuple[str, GitEvent]] = {}
        for cid, (state, event) in known.items():
            if state == "done" or event.outcome in {"noop", "rejected"}:
                settled[cid] = (state, event)
                continue
            tip = applier.repo.remote_ref(event.branch or "")
            landed = (
                tip is not None
                and event.sha is not None
                and applier.repo.repo.get(event.sha) is not None
                and applier.repo.is_ancestor(applier.repo.commit(event.sha).id, tip)
            )
            if landed:
                settled[cid] = ("done", event)
        return settled

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
            timings_ms=timings,
            at=utcnow(),
        )

    async def after_consuming(self) -> None:
        """After the last batch: pack what only memory holds (a restart would otherwise
        fetch back what is on the remote and lose what no branch points at any more, such
        as evicted commits), then release the threads."""
        for name, (writer, applier) in self._repos.items():
            running = self._compacting.get(name)
            if running is not None:
                await asyncio.gather(running, return_exceptions=True)
            if applier.repo.memory:
                try:
                    await writer.run(applier.repo.compact)
                except (pygit2.GitError, OSError):
                    logger.exception("repo %s: packing on shutdown failed", name)
        for worker, _ in self._repos.values():
            worker.close()
        for worker, _ in self._compactors.values():
            worker.close()

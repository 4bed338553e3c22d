"""Applying git commands to one repository. Synchronous: runs on the repo's own thread.

Commands build commits as objects on the current tips (pushed state plus whatever this batch
already built) and only ``flush()`` pushes: once per batch, with a lease on the remote values
the batch was built on. A command whose Event-Id is already reachable from ``auto`` or
``watched`` is a no-op; a command whose precondition fails is rejected and changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import pygit2

from waveline.services.git_writer import admit, attempts
from waveline.services.git_writer.autoline import AutoLine
from waveline.shared.config import PipelineConfig, WavelineConfig
from waveline.shared.errors import GitFailure, PreconditionFailed
from waveline.shared.gitengine import layouts, trailers
from waveline.shared.gitengine.index import EventIndex
from waveline.shared.gitengine.repo import ConfigRepo
from waveline.shared.models.git import (
    AlignAuto,
    Evict,
    FastForward,
    IntroduceImages,
    Outcome,
    PromoteWave,
    RollbackWave,
)

logger = logging.getLogger(__name__)

Command = IntroduceImages | PromoteWave | FastForward | Evict | RollbackWave | AlignAuto
# Commits whose wave -> app-sha map is kept (a few hundred bytes each). An LRU, not a clear
# on the limit: a new commit's map is its parent's plus its own trailers, so the walk stops
# at the newest cached commit; cleared, the next call would walk up to 5,000 commits back.
WAVE_APPS_CACHED = 10_000
# Pack the memory objects after this many branch updates, or once they hold this much.
COMPACT_EVERY_UPDATES = 2000
COMPACT_AT_BYTES = 64 * 1024 * 1024
# What ``mark`` saves and ``rewind`` restores: the batch's branch tips and the known
# alignment.
Mark = tuple[dict[str, pygit2.Oid], tuple[pygit2.Oid, pygit2.Oid] | None]


@dataclass
class Result:
    outcome: Outcome
    branch: str | None = None
    sha: str | None = None
    old_sha: str | None = None
    replayed: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    rule: str | None = None  # rejected by an admission rule (admit.py): its name
    wave_apps: dict[str, dict[str, str]] = field(default_factory=dict)
    values_before: layouts.Values = field(default_factory=dict)
    values_after: layouts.Values = field(default_factory=dict)


class Applier:
    """Owns one repo's bare clone, its Event-Id index and the batch being built."""

    def __init__(
        self,
        repo: ConfigRepo,
        config: WavelineConfig,
        *,
        max_file_bytes: int | None = None,
        compact_at_bytes: int = COMPACT_AT_BYTES,
    ) -> None:
        self.repo = repo
        self.config = config
        # Files of the config repo larger than this are refused unread (UnusableFile).
        self.max_file_bytes = max_file_bytes
        self.compact_at_bytes = compact_at_bytes
        self.index = EventIndex()
        self.watched_branch = repo.config.watched_branch
        self.auto_branch = repo.config.auto_branch
        self._pending: dict[str, pygit2.Oid] = {}
        # A (watched, auto) pair known to satisfy "watched is an ancestor of auto". Commits
        # are immutable, so the fact stays true for that pair; checking it again would walk
        # auto's whole history on every command (merge-base), O(n) per commit.
        self._aligned: tuple[pygit2.Oid, pygit2.Oid] | None = None
        self._wave_apps: OrderedDict[pygit2.Oid, dict[str, str]] = OrderedDict()
        self._auto_line = AutoLine()
        self._fetched_at = float("-inf")
        self._fresh = False  # the state was fetched for the batch being built
        self._updates = 0  # branch updates since the clone was last compacted
        self._compacted = False

    # -- state ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fetch and index what is new, dropping any unpushed batch: the fresh state a
        retry starts from."""
        self._pending.clear()
        self.repo.fetch()
        self._fetched_at = time.monotonic()
        self._fresh = True
        self.index.update(self.repo, self._tips())

    def refresh_if_stale(self, max_age_s: float) -> None:
        """Fetch unless the last fetch is younger than ``max_age_s``.

        Skipping is safe: every push carries a lease on the values we built on, so a push
        someone else made is detected there (and the retry fetches). What waits up to
        ``max_age_s`` is only noticing a direct push to watched that no lease covers, i.e.
        the re-alignment of auto onto it.
        """
        self._pending.clear()
        if time.monotonic() - self._fetched_at >= max_age_s:
            self.refresh()
        else:
            self._fresh = False

    def tip(self, branch: str) -> pygit2.Oid | None:
        return self._pending.get(branch) or self.repo.remote_ref(branch)

    def _tips(self) -> list[pygit2.Oid | None]:
        return [self.tip(self.watched_branch), self.tip(self.auto_branch)]

    def _watched(self) -> pygit2.Oid:
        watched = self.tip(self.watched_branch)
        if watched is None:
            raise PreconditionFailed(
                f"repo {self.repo.name}: watched branch {self.watched_branch!r} does not exist"
            )
        return watched

    def compaction_due(self, every: int = COMPACT_EVERY_UPDATES) -> bool:
        """True (and the count starts over) once ``every`` branch updates were made since the
        last time it said so, or once the objects held in memory reach
        ``compact_at_bytes``; the first call after start says so, for what earlier runs
        left loose."""
        held = self.repo.objects.held_bytes
        if self._updates < every and held < self.compact_at_bytes and self._compacted:
            return False
        self._updates = 0
        self._compacted = True
        return True

    def _set(self, branch: str, oid: pygit2.Oid) -> None:
        self._updates += 1
        if branch == self.auto_branch:
            self._auto_line.moved(oid, self._first_parent)
        if oid == self.repo.remote_ref(branch):
            self._pending.pop(branch, None)
        else:
            self._pending[branch] = oid
        self.index.update(self.repo, [oid])

    def _first_parent(self, oid: pygit2.Oid) -> pygit2.Oid | None:
        parents = self.repo.commit(oid).parent_ids
        return parents[0] if parents else None

    @property
    def dirty(self) -> bool:
        return bool(self._pending)

    def flush(self) -> None:
        """Push the batch: ``auto`` and ``watched`` in one push, each with its lease."""
        if not self._pending:
            return
        updates = {b: (self.repo.remote_ref(b), new) for b, new in self._pending.items()}
        # auto first: a fast-forward of watched may point into commits auto brings.
        ordered = dict(sorted(updates.items(), key=lambda kv: kv[0] != self.auto_branch))
        self.repo.push(ordered)
        self._pending.clear()

    def discard(self) -> None:
        self._pending.clear()

    def mark(self) -> Mark:
        """The batch as built so far, for ``rewind``."""
        return dict(self._pending), self._aligned

    def rewind(self, mark: Mark) -> None:
        """Back to ``mark``: what a command that failed half-way built is not pushed."""
        self._pending = dict(mark[0])
        self._aligned = mark[1]

    def already_applied(self, command_id: str) -> pygit2.Oid | None:
        return self.index.find(self.repo, command_id, self._tips())

    def _commit_at(self, sha: str, what: str) -> pygit2.Commit:
        try:
            oid = pygit2.Oid(hex=sha)
        except ValueError as exc:
            raise PreconditionFailed(f"{what} {sha!r} is not a sha") from exc
        obj = self.repo.repo.get(oid)
        if not isinstance(obj, pygit2.Commit):
            if self._fresh:
                # Fetched for this very batch and still unknown: no branch of the remote
                # has it (an evicted commit after a restart, a typo): reject, not retry.
                raise PreconditionFailed(f"{what} {sha} is on no branch of {self.repo.name}")
            # Maybe pushed after our last fetch: retriable, and the retry fetches first.
            raise GitFailure(f"{what} {sha} is not in {self.repo.name} (yet)", retriable=True)
        return obj

    def _pipeline(self, cmd: IntroduceImages | PromoteWave | RollbackWave) -> PipelineConfig:
        """The command's pipeline, once ``cmd`` keeps every rule the config decides."""
        refusal = admit.by_config(self.config, cmd)
        if refusal is not None:
            raise admit.Refused(refusal.rule, refusal.reason)
        return self.config.pipelines[cmd.pipeline]

    # -- alignment and replay ------------------------------------------------------------

    def aligned_auto(self) -> tuple[pygit2.Oid, dict[str, str]]:
        """Where ``auto`` must be before the next write: on or ahead of ``watched``.

        Reset when ``auto`` is behind, replay its own commits when the two diverged.
        Returns the new tip (not pushed) and the old→new map of replayed commits.
        """
        watched = self._watched()
        auto = self.tip(self.auto_branch)
        if auto is not None and self._aligned == (watched, auto):
            return auto, {}
        mapping: dict[str, str] = {}
        if auto is None or self.repo.is_ancestor(auto, watched):
            tip = watched
        elif self.repo.is_ancestor(watched, auto):
            tip = auto
        else:
            base = self.repo.repo.merge_base(watched, auto)
            own = list(self.repo.walk(auto, stop=base))
            own.reverse()
            tip, mapping = self.replay(watched, own)
        self._aligned = (watched, tip)
        return tip, mapping

    def replay(
        self, onto: pygit2.Oid, commits: list[pygit2.Commit]
    ) -> tuple[pygit2.Oid, dict[str, str]]:
        """Re-apply each commit's action, read from its trailers, on ``onto`` (oldest first).

        An automatic commit's action is "wave T of pipeline P holds these values", so the
        replay extracts T's values from that commit and applies them on the new base: no
        textual rebase, no conflicts, whatever else moved underneath.
        """
        tip = onto
        mapping: dict[str, str] = {}
        for commit in commits:
            info = trailers.parse(commit.message)
            pipeline = self.config.pipelines.get(info.get(trailers.PIPELINE) or "")
            wave = info.get(trailers.TARGET)
            if pipeline is None or wave is None:
                logger.warning(
                    "repo %s: dropping non-automatic commit %s from auto during replay",
                    self.repo.name,
                    commit.id,
                )
                continue
            values = layouts.extract(pipeline.layout, wave, self._reader(commit))
            parent = self.repo.commit(tip)
            files = layouts.apply(pipeline.layout, wave, values, self._reader(parent))
            new = self.repo.create_commit(tip, files, commit.message)
            if new is None:
                continue  # already true on the new base: nothing left to replay
            mapping[str(commit.id)] = str(new)
            tip = new
        return tip, mapping

    def wave_apps(self, oid: pygit2.Oid, limit: int = 5000) -> dict[str, str]:
        """``{"pipeline/wave": app_sha}`` that commit ``oid`` holds, from the newest
        automatic commit touching each wave along first parents (cached per commit)."""
        chain: list[pygit2.Commit] = []
        cursor: pygit2.Oid | None = oid
        while cursor is not None and cursor not in self._wave_apps and len(chain) < limit:
            commit = self.repo.commit(cursor)
            chain.append(commit)
            cursor = commit.parent_ids[0] if commit.parent_ids else None
        state: dict[str, str] = {}
        if cursor is not None and cursor in self._wave_apps:
            self._wave_apps.move_to_end(cursor)
            state = dict(self._wave_apps[cursor])
        for commit in reversed(chain):
            if len(commit.parent_ids) > 1:
                state = self._merged_apps(commit, state, limit)
            info = trailers.parse(commit.message)
            pipeline, wave = info.get(trailers.PIPELINE), info.get(trailers.TARGET)
            app_sha = info.get(trailers.APP_SHA)
            if pipeline and wave and app_sha:
                state = {**state, f"{pipeline}/{wave}": app_sha}
            self._wave_apps[commit.id] = state
        while len(self._wave_apps) > WAVE_APPS_CACHED:
            self._wave_apps.popitem(last=False)
        return state

    def _merged_apps(
        self, merge: pygit2.Commit, first: dict[str, str], limit: int
    ) -> dict[str, str]:
        """A merge (a promotion pull request merged on the forge) holds what its first
        parent held plus what the merged branch changed since the two diverged."""
        state = dict(first)
        for other in merge.parent_ids[1:]:
            base = self.repo.repo.merge_base(merge.parent_ids[0], other)
            before = self.wave_apps(base, limit) if base is not None else {}
            for key, app_sha in self.wave_apps(other, limit).items():
                if before.get(key) != app_sha:
                    state[key] = app_sha
        return state

    # -- commands ------------------------------------------------------------------------

    def apply(self, cmd: Command) -> Result:
        """Apply one command to the batch. Raises ``PreconditionFailed`` (reject it) or
        ``GitFailure`` (retry the batch from fresh state)."""
        result = self._apply(cmd)
        if result.sha is not None and result.outcome != "rejected":
            shas = [result.sha, *result.replayed.values()]
            if isinstance(cmd, AlignAuto):
                # Sent when watched moved outside Waveline (a merged pull request): what
                # the new watched tip holds is what Argo CD will report on.
                shas.append(str(self._watched()))
            result.wave_apps = {sha: self.wave_apps(pygit2.Oid(hex=sha)) for sha in shas}
        return result

    def _apply(self, cmd: Command) -> Result:
        if isinstance(cmd, IntroduceImages | PromoteWave | RollbackWave):
            self._pipeline(cmd)  # before any branch the command names is looked at
            done = self.already_applied(str(cmd.command_id))
            if done is None and isinstance(cmd, IntroduceImages | PromoteWave) and cmd.branch:
                branch_tip = self.tip(cmd.branch)
                if branch_tip is not None:
                    self.index.update(self.repo, [branch_tip])
                    done = self.index.find(self.repo, str(cmd.command_id), [branch_tip])
            if done is not None:
                return Result("noop", sha=str(done), reason="Event-Id already on the branches")
        if isinstance(cmd, IntroduceImages) and cmd.attempt > 1 and cmd.branch is None:
            decision = attempts.decide(self.set_facts(cmd))
            if not decision.retries:
                live = self.tip(self.auto_branch) or self._watched()
                return Result("noop", branch=self.auto_branch, sha=str(live), reason=decision.why)
        if isinstance(cmd, IntroduceImages):
            return self.introduce(cmd)
        if isinstance(cmd, PromoteWave):
            return self.promote(cmd)
        if isinstance(cmd, RollbackWave):
            return self.rollback(cmd)
        if isinstance(cmd, FastForward):
            return self.fast_forward(cmd)
        if isinstance(cmd, Evict):
            return self.evict(cmd)
        return self.align(cmd)

    def set_facts(self, cmd: IntroduceImages) -> attempts.SetFacts:
        """Where the set's earlier attempts are, from the Event-Id index (rebuilt from the
        branches' trailers after a restart): the newest one on ``watched`` or ``auto``, else
        evicted (the command exists because ingest saw the eviction recorded)."""
        watched, auto = self.tip(self.watched_branch), self.tip(self.auto_branch)
        for n in range(cmd.attempt - 1, 0, -1):
            event_id = str(attempts.command_id(cmd.pipeline, cmd.wave, cmd.app_sha, n))
            if self.index.find(self.repo, event_id, [watched]) is not None:
                return attempts.SetFacts(announced=True, attempt=n, place="watched")
            if self.index.find(self.repo, event_id, [auto]) is not None:
                return attempts.SetFacts(announced=True, attempt=n, place="auto")
        return attempts.SetFacts(announced=True, attempt=cmd.attempt - 1, place="evicted")

    def _reader(self, commit: pygit2.Commit) -> layouts.ReadFile:
        def read(path: str) -> bytes | None:
            return self.repo.read_file(commit, path, self.max_file_bytes)

        return read

    def _admitted_values(
        self, pipeline: PipelineConfig, cmd: PromoteWave | RollbackWave, wave: str, sha: str
    ) -> layouts.Values:
        """What ``wave`` holds at ``sha``, once ``cmd`` keeps the rules the repository
        decides (admit.by_git): on watched, holding images, the set the command names."""
        try:
            commit: pygit2.Commit | None = self._commit_at(sha, "commit")
        except PreconditionFailed:
            commit = None  # on no branch after this batch's fetch: not on watched either
        on_watched = commit is not None and self.repo.is_ancestor(commit.id, self._watched())
        if commit is not None and not on_watched and not self._fresh:
            # Watched may have moved since our last fetch (a merged pull request).
            raise GitFailure(f"{sha} is not on {self.watched_branch} (yet)", retriable=True)
        values: layouts.Values = {}
        held = None
        if commit is not None and on_watched:
            values = layouts.extract(pipeline.layout, wave, self._reader(commit))
            held = self.wave_apps(commit.id).get(f"{cmd.pipeline}/{wave}")
        seen = admit.Seen(on_watched=on_watched, holds_images=bool(values), app_sha=held)
        refusal = admit.by_git(cmd, seen, self.watched_branch)
        if refusal is not None:
            raise admit.Refused(refusal.rule, refusal.reason)
        return values

    def _write_wave(  # noqa: PLR0917 (one call site per command kind, all keyword-shaped)
        self,
        pipeline: PipelineConfig,
        wave: str,
        values: layouts.Values,
        subject: str,
        body: str,
        info: dict[str, str],
        noop_reason: str,
        branch: str | None = None,
    ) -> Result:
        if branch is not None:
            return self._write_promotion_branch(
                pipeline,
                wave,
                values,
                message=trailers.format_message(subject, body, info),
                info=info,
                branch=branch,
            ) or Result("noop", branch=branch, sha=str(self._watched()), reason=noop_reason)
        base, replayed = self.aligned_auto()
        parent = self.repo.commit(base)
        files = layouts.apply(pipeline.layout, wave, values, self._reader(parent))
        message = trailers.format_message(subject, body, info)
        new = self.repo.create_commit(base, files, message)
        old_auto = self.repo.remote_ref(self.auto_branch)
        if new is None:
            if base != self.tip(self.auto_branch):
                self._set(self.auto_branch, base)
            return Result(
                "noop",
                branch=self.auto_branch,
                sha=str(base),
                replayed=replayed,
                reason=noop_reason,
            )
        self._set(self.auto_branch, new)
        self._aligned = (self._watched(), new)
        return Result(
            "committed",
            branch=self.auto_branch,
            sha=str(new),
            old_sha=str(old_auto) if old_auto is not None else None,
            replayed=replayed,
            trailers=info,
        )

    def _write_promotion_branch(
        self,
        pipeline: PipelineConfig,
        wave: str,
        values: layouts.Values,
        *,
        message: str,
        info: dict[str, str],
        branch: str,
    ) -> Result | None:
        """Pull-request strategy: one commit on ``watched`` pushed to ``branch`` (replacing
        an older promotion there), leaving ``auto`` alone; None when ``watched`` already
        holds the values."""
        if branch in {self.watched_branch, self.auto_branch}:
            raise PreconditionFailed(f"promotion branch {branch!r} is watched or auto")
        parent = self.repo.commit(self._watched())
        before = layouts.extract(pipeline.layout, wave, self._reader(parent))
        files = layouts.apply(pipeline.layout, wave, values, self._reader(parent))
        new = self.repo.create_commit(parent.id, files, message)
        if new is None:
            return None
        old = self.repo.remote_ref(branch)
        self._set(branch, new)
        return Result(
            "committed",
            branch=branch,
            sha=str(new),
            old_sha=str(old) if old is not None else None,
            trailers=info,
            values_before=before,
            values_after=values,
        )

    def introduce(self, cmd: IntroduceImages) -> Result:
        pipeline = self._pipeline(cmd)
        body = "\n".join(
            f"- {svc}: {ref.tag} ({ref.bare_digest})" for svc, ref in sorted(cmd.images.items())
        )
        info = {
            trailers.PIPELINE: cmd.pipeline,
            trailers.APP_SHA: cmd.app_sha,
            trailers.TARGET: cmd.wave,
            trailers.REASON: "new images published",
            trailers.EVENT_ID: str(cmd.command_id),
        }
        if cmd.attempt > 1:
            info[trailers.REASON] = f"new images published (attempt {cmd.attempt})"
            info[trailers.ATTEMPT] = str(cmd.attempt)
        return self._write_wave(
            pipeline,
            cmd.wave,
            layouts.from_images(pipeline.layout, cmd.images),
            f"chore({cmd.pipeline}): update {cmd.wave} to {cmd.app_sha[:10]}",
            body,
            info,
            f"wave {cmd.wave} already holds this image set",
            cmd.branch,
        )

    def promote(self, cmd: PromoteWave) -> Result:
        pipeline = self._pipeline(cmd)
        values = self._admitted_values(pipeline, cmd, cmd.from_wave, cmd.deployed_sha)
        return self._write_wave(
            pipeline,
            cmd.to_wave,
            values,
            f"chore({cmd.pipeline}): promote {cmd.app_sha[:10]} from {cmd.from_wave} to "
            f"{cmd.to_wave}",
            f"Files of {cmd.from_wave} as deployed at {cmd.deployed_sha}.",
            {
                trailers.PIPELINE: cmd.pipeline,
                trailers.APP_SHA: cmd.app_sha,
                trailers.TARGET: cmd.to_wave,
                trailers.REASON: f"promoted from {cmd.from_wave} at {cmd.deployed_sha}",
                trailers.EVENT_ID: str(cmd.command_id),
            },
            f"wave {cmd.to_wave} already holds what {cmd.from_wave} runs",
            cmd.branch,
        )

    def rollback(self, cmd: RollbackWave) -> Result:
        pipeline = self._pipeline(cmd)
        values = self._admitted_values(pipeline, cmd, cmd.wave, cmd.to_sha)
        return self._write_wave(
            pipeline,
            cmd.wave,
            values,
            f"chore({cmd.pipeline}): roll {cmd.wave} back to {cmd.app_sha[:10]}",
            f"Files of {cmd.wave} as they were at {cmd.to_sha}.",
            {
                trailers.PIPELINE: cmd.pipeline,
                trailers.APP_SHA: cmd.app_sha,
                trailers.TARGET: cmd.wave,
                trailers.REASON: f"rollback to {cmd.app_sha}",
                trailers.EVENT_ID: str(cmd.command_id),
            },
            f"wave {cmd.wave} already holds that image set",
        )

    def fast_forward(self, cmd: FastForward) -> Result:
        green = self._commit_at(cmd.sha, "green commit").id
        watched = self._watched()
        if self._is_ancestor(green, watched):
            return Result(
                "noop",
                branch=self.watched_branch,
                sha=str(watched),
                reason=f"{self.watched_branch} already contains {cmd.sha}",
            )
        auto, replayed = self.aligned_auto()
        if replayed:
            self._set(self.auto_branch, auto)
        if not self._auto_line.holds(green, auto) and not self.repo.is_ancestor(green, auto):
            raise PreconditionFailed(f"{cmd.sha} is not on {self.auto_branch}")
        if not self._is_ancestor(watched, green):
            raise PreconditionFailed(f"{self.watched_branch} is not an ancestor of {cmd.sha}")
        self._set(self.watched_branch, green)
        self._aligned = (green, auto)
        return Result(
            "fast_forwarded",
            branch=self.watched_branch,
            sha=str(green),
            old_sha=str(watched),
            replayed=replayed,
        )

    def _is_ancestor(self, commit: pygit2.Oid, other: pygit2.Oid) -> bool:
        """``repo.is_ancestor``, answered from the line of ``auto`` when it holds both (a
        walk of libgit2's costs the backlog between them: autoline.py)."""
        known = self._auto_line.before(commit, other)
        return self.repo.is_ancestor(commit, other) if known is None else known

    def evict(self, cmd: Evict) -> Result:
        red = self._commit_at(cmd.sha, "red commit").id
        watched = self._watched()
        if self.repo.is_ancestor(red, watched):
            raise PreconditionFailed(f"{cmd.sha} is already on {self.watched_branch}; not evicting")
        auto, replayed = self.aligned_auto()
        red = pygit2.Oid(hex=replayed.get(str(red), str(red)))
        if not self.repo.is_ancestor(red, auto):
            return Result(
                "noop",
                branch=self.auto_branch,
                sha=str(auto),
                replayed=replayed,
                reason=f"{cmd.sha} is not on {self.auto_branch} (already evicted?)",
            )
        if not self.repo.is_ancestor(watched, red):
            raise PreconditionFailed(f"{self.watched_branch} is not an ancestor of {cmd.sha}")
        later = list(self.repo.walk(auto, stop=red))
        later.reverse()
        parent = self.repo.commit(red).parent_ids[0]
        new_tip, mapping = self.replay(parent, later)
        self._set(self.auto_branch, new_tip)
        self._aligned = (watched, new_tip)
        return Result(
            "evicted",
            branch=self.auto_branch,
            sha=str(new_tip),
            old_sha=str(red),
            replayed={**replayed, **mapping},
            # What was evicted (its pipeline, set, Event-Id, attempt): the eviction record
            # a retry is decided on (attempts.py).
            trailers=trailers.parse(self.repo.commit(red).message).values,
        )

    def align(self, cmd: AlignAuto) -> Result:
        del cmd
        old = self.tip(self.auto_branch)
        new, replayed = self.aligned_auto()
        if new == old:
            return Result("noop", branch=self.auto_branch, sha=str(new), reason="already aligned")
        self._set(self.auto_branch, new)
        return Result(
            "aligned",
            branch=self.auto_branch,
            sha=str(new),
            old_sha=str(old) if old is not None else None,
            replayed=replayed,
        )

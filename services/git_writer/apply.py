"""Applying git commands to one repository. Synchronous: runs on the repo's own thread.

Every method works from the remote-tracking refs fetched last, builds commits as objects,
and pushes once with a lease on the remote values it built on. A command whose Event-Id is
already reachable from ``auto`` or ``watched`` is a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pygit2

from waveline.shared.config import WavelineConfig
from waveline.shared.errors import PreconditionFailed
from waveline.shared.gitengine import layouts, trailers
from waveline.shared.gitengine.index import EventIndex
from waveline.shared.gitengine.repo import ConfigRepo
from waveline.shared.models.git import AlignAuto, IntroduceImages, Outcome

logger = logging.getLogger(__name__)

Command = IntroduceImages | AlignAuto


@dataclass
class Result:
    outcome: Outcome
    branch: str | None = None
    sha: str | None = None
    old_sha: str | None = None
    replayed: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None


class Applier:
    """Owns one repo's bare clone and Event-Id index."""

    def __init__(self, repo: ConfigRepo, config: WavelineConfig) -> None:
        self.repo = repo
        self.config = config
        self.index = EventIndex()
        self.watched_branch = repo.config.watched_branch
        self.auto_branch = repo.config.auto_branch

    def refresh(self) -> None:
        """Fetch and index what is new: the "fresh state" a retry starts from."""
        self.repo.fetch()
        self.index.update(self.repo, self._tips())

    def _tips(self) -> list[pygit2.Oid | None]:
        return [self.repo.remote_ref(self.watched_branch), self.repo.remote_ref(self.auto_branch)]

    def _watched(self) -> pygit2.Oid:
        watched = self.repo.remote_ref(self.watched_branch)
        if watched is None:
            raise PreconditionFailed(
                f"repo {self.repo.name}: watched branch {self.watched_branch!r} does not exist"
            )
        return watched

    def already_applied(self, command_id: str) -> pygit2.Oid | None:
        return self.index.find(self.repo, command_id, self._tips())

    # -- alignment -----------------------------------------------------------------------

    def aligned_auto(self) -> tuple[pygit2.Oid, dict[str, str]]:
        """Where ``auto`` must be before the next write: on or ahead of ``watched``.

        Reset when ``auto`` is behind, replay its own commits when the two diverged. Returns
        the new tip (not yet pushed) and the old→new map of replayed commits.
        """
        watched = self._watched()
        auto = self.repo.remote_ref(self.auto_branch)
        if auto is None or self.repo.is_ancestor(auto, watched):
            return watched, {}
        if self.repo.is_ancestor(watched, auto):
            return auto, {}
        base = self.repo.repo.merge_base(watched, auto)
        own = list(self.repo.walk(auto, stop=base))
        own.reverse()
        return self.replay(watched, own)

    def replay(
        self, onto: pygit2.Oid, commits: list[pygit2.Commit]
    ) -> tuple[pygit2.Oid, dict[str, str]]:
        """Re-apply each commit's action (from its trailers) on ``onto``, oldest first.

        The action of an automatic commit is "wave T of pipeline P holds these files", so
        replaying writes T's files as they were in that commit: generated files never
        conflict, whatever else moved underneath.
        """
        tip = onto
        mapping: dict[str, str] = {}
        for commit in commits:
            info = trailers.parse(commit.message)
            pipeline_name = info.get(trailers.PIPELINE)
            wave = info.get(trailers.TARGET)
            pipeline = self.config.pipelines.get(pipeline_name or "")
            if pipeline is None or wave is None:
                logger.warning(
                    "repo %s: dropping non-automatic commit %s from auto during replay",
                    self.repo.name,
                    commit.id,
                )
                continue
            paths = layouts.wave_paths(pipeline.layout, wave)
            files = {p: self.repo.read_file(commit, p) for p in paths}
            new = self.repo.create_commit(tip, files, commit.message)
            if new is None:
                continue  # already true on the new base: nothing to replay
            mapping[str(commit.id)] = str(new)
            tip = new
        return tip, mapping

    # -- commands ------------------------------------------------------------------------

    def apply(self, cmd: Command) -> Result:
        done = self.already_applied(str(cmd.command_id))
        if done is not None:
            return Result("noop", sha=str(done), reason="Event-Id already on the branches")
        if isinstance(cmd, IntroduceImages):
            return self.introduce(cmd)
        return self.align(cmd)

    def _push_auto(self, new: pygit2.Oid) -> None:
        self.repo.push({self.auto_branch: (self.repo.remote_ref(self.auto_branch), new)})
        self.index.update(self.repo, [new])

    def introduce(self, cmd: IntroduceImages) -> Result:
        pipeline = self.config.pipelines.get(cmd.pipeline)
        if pipeline is None:
            raise PreconditionFailed(f"unknown pipeline {cmd.pipeline!r}")
        if pipeline.repo != cmd.repo:
            raise PreconditionFailed(f"pipeline {cmd.pipeline!r} lives in repo {pipeline.repo!r}")
        if pipeline.wave(cmd.wave) is None:
            raise PreconditionFailed(f"pipeline {cmd.pipeline!r} has no wave {cmd.wave!r}")
        base, replayed = self.aligned_auto()
        parent = self.repo.commit(base)
        files = layouts.render(
            pipeline.layout, cmd.wave, cmd.images, lambda p: self.repo.read_file(parent, p)
        )
        info = {
            trailers.PIPELINE: cmd.pipeline,
            trailers.APP_SHA: cmd.app_sha,
            trailers.TARGET: cmd.wave,
            trailers.REASON: "new images published",
            trailers.EVENT_ID: str(cmd.command_id),
        }
        body = "\n".join(
            f"- {svc}: {ref.tag} ({ref.bare_digest})" for svc, ref in sorted(cmd.images.items())
        )
        message = trailers.format_message(
            f"chore({cmd.pipeline}): update {cmd.wave} to {cmd.app_sha[:10]}", body, info
        )
        new = self.repo.create_commit(base, files, message)
        old_auto = self.repo.remote_ref(self.auto_branch)
        if new is None:
            if base != old_auto:
                self._push_auto(base)
            return Result(
                "noop",
                branch=self.auto_branch,
                sha=str(base),
                replayed=replayed,
                reason=f"wave {cmd.wave} already holds this image set",
            )
        self._push_auto(new)
        return Result(
            "committed",
            branch=self.auto_branch,
            sha=str(new),
            old_sha=str(old_auto) if old_auto is not None else None,
            replayed=replayed,
            trailers=info,
        )

    def align(self, cmd: AlignAuto) -> Result:
        del cmd
        old = self.repo.remote_ref(self.auto_branch)
        new, replayed = self.aligned_auto()
        if new == old:
            return Result("noop", branch=self.auto_branch, sha=str(new), reason="already aligned")
        self._push_auto(new)
        return Result(
            "aligned",
            branch=self.auto_branch,
            sha=str(new),
            old_sha=str(old) if old is not None else None,
            replayed=replayed,
        )

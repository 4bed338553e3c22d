"""Which git commands the git-writer obeys: each is checked against the pipeline file,
whoever produced it (docs/security.md, Commands checked at the git-writer).

Anyone able to produce to ``waveline.git.commands`` could otherwise introduce an image set
straight into the last wave, name any branch or promote from any commit. The rules, each
named in the ``rejected`` event of a command that breaks it:

- ``known_pipeline``: the pipeline exists and lives in the repository the command is for;
- ``introduce_first_wave``: an introduction writes the pipeline's first wave only;
- ``promote_next_wave``: a promotion goes from a wave of the pipeline to the very next one;
- ``promote_from_watched``: from a commit on ``watched`` at which the source wave holds
  images, and holds the set the command names (by the trailers of the commit that wrote it);
- ``rollback_to_ran``: a rollback writes what the wave held at a commit on ``watched``,
  which must hold images there, and the set the command names;
- ``branch_template``: an introduction or promotion names exactly the branch the target
  wave's strategy gives: none for ``commit``, ``StrategyConfig.branch_for`` for
  ``pull-request`` (never ``watched`` or ``auto``); a ``webhook`` wave takes no git command.

Pure: ``by_config`` needs only the config, ``by_git`` only what the applier read from the
repository after its fetch (``Seen``). Fast-forward, evict and align name no pipeline: their
own preconditions (services/git_writer/apply.py) are all they are checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from waveline.shared.config import PipelineConfig, WavelineConfig
from waveline.shared.errors import PreconditionFailed
from waveline.shared.models.git import (
    AlignAuto,
    Evict,
    FastForward,
    IntroduceImages,
    PromoteWave,
    RollbackWave,
)

Rule = Literal[
    "known_pipeline",
    "introduce_first_wave",
    "promote_next_wave",
    "promote_from_watched",
    "rollback_to_ran",
    "branch_template",
]
Command = IntroduceImages | PromoteWave | FastForward | Evict | RollbackWave | AlignAuto


@dataclass(frozen=True)
class Refusal:
    rule: Rule
    reason: str


class Refused(PreconditionFailed):
    """A command broke an admission rule: rejected, nothing of it is pushed."""

    code = "refused"

    def __init__(self, rule: Rule, reason: str) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule: Rule = rule
        self.reason = reason

    def __reduce__(self) -> tuple[type[Refused], tuple[Rule, str]]:
        return type(self), (self.rule, self.reason)


@dataclass(frozen=True)
class Seen:
    """What the repository shows, after this batch's fetch, at the commit a promotion or
    rollback names, for the wave it reads there."""

    on_watched: bool  # the commit is the watched branch's tip or one of its ancestors
    holds_images: bool  # the wave's files there hold image values
    app_sha: str | None  # the set the wave holds there, by Waveline's trailers (None: none)


def by_config(config: WavelineConfig, cmd: Command) -> Refusal | None:
    """The rules the config alone decides; None when ``cmd`` keeps them all."""
    if isinstance(cmd, FastForward | Evict | AlignAuto):
        return None
    pipeline = config.pipelines.get(cmd.pipeline)
    if pipeline is None:
        return Refusal("known_pipeline", f"unknown pipeline {cmd.pipeline!r}")
    if pipeline.repo != cmd.repo:
        return Refusal(
            "known_pipeline", f"pipeline {cmd.pipeline!r} lives in repo {pipeline.repo!r}"
        )
    names = [w.name for w in pipeline.waves]
    if isinstance(cmd, IntroduceImages):
        if cmd.wave != names[0]:
            return Refusal(
                "introduce_first_wave",
                f"pipeline {cmd.pipeline!r} introduces image sets into {names[0]!r} only,"
                f" not {cmd.wave!r}",
            )
        return _branch(config, pipeline, cmd.pipeline, cmd.wave, cmd.branch)
    if isinstance(cmd, PromoteWave):
        if cmd.from_wave not in names or cmd.to_wave not in names:
            return Refusal(
                "promote_next_wave",
                f"unknown wave in {cmd.from_wave!r} -> {cmd.to_wave!r} of {cmd.pipeline!r}",
            )
        if names.index(cmd.to_wave) != names.index(cmd.from_wave) + 1:
            return Refusal(
                "promote_next_wave", f"{cmd.to_wave!r} does not follow {cmd.from_wave!r}"
            )
        return _branch(config, pipeline, cmd.pipeline, cmd.to_wave, cmd.branch)
    if cmd.wave not in names:
        return Refusal("rollback_to_ran", f"pipeline {cmd.pipeline!r} has no wave {cmd.wave!r}")
    return None


def _branch(
    config: WavelineConfig, pipeline: PipelineConfig, name: str, wave: str, branch: str | None
) -> Refusal | None:
    """The branch an introduction or promotion into ``wave`` must name (None: auto)."""
    strategy = pipeline.strategy_of(wave)
    if strategy.kind == "webhook":
        return Refusal(
            "branch_template", f"wave {wave!r} is promoted by webhook: it takes no git command"
        )
    expected = strategy.branch_for(name, wave) if strategy.kind == "pull-request" else None
    if branch == expected:
        repo = config.repos[pipeline.repo]
        if branch in {repo.watched_branch, repo.auto_branch}:
            return Refusal("branch_template", f"promotion branch {branch!r} is watched or auto")
        return None
    if expected is None:
        return Refusal(
            "branch_template",
            f"wave {wave!r} is promoted by commit on auto: the command may name no branch,"
            f" got {branch!r}",
        )
    return Refusal(
        "branch_template",
        f"wave {wave!r} is promoted by pull request on branch {expected!r}, got {branch!r}",
    )


def by_git(cmd: PromoteWave | RollbackWave, seen: Seen, watched: str) -> Refusal | None:
    """The rules the repository decides, from what ``seen`` shows at the commit ``cmd``
    names (the ``watched`` branch is named in the reason)."""
    if isinstance(cmd, PromoteWave):
        rule: Rule = "promote_from_watched"
        sha, wave, what = cmd.deployed_sha, cmd.from_wave, "deployed"
    else:
        rule, sha, wave, what = "rollback_to_ran", cmd.to_sha, cmd.wave, "rollback"
    if not seen.on_watched:
        return Refusal(rule, f"{what} commit {sha} is not on {watched}")
    if not seen.holds_images:
        return Refusal(rule, f"wave {wave!r} holds no images at {sha}")
    if seen.app_sha != cmd.app_sha:
        held = f"set {seen.app_sha}" if seen.app_sha else "no set Waveline wrote"
        return Refusal(rule, f"wave {wave!r} holds {held} at {sha}, not {cmd.app_sha}")
    return None

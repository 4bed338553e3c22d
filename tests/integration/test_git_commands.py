"""Every git-writer command and its preconditions, against real bare remotes
(docs/architecture.md, Git rules)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pygit2
import pytest

from tests.integration.test_gitengine import OTHER_SHA, applier_for, introduce, push, read
from tests.support import APP_SHA, branch_log, make_config
from waveline.services.git_writer.apply import Applier
from waveline.shared.errors import GitFailure, PreconditionFailed
from waveline.shared.gitengine import trailers
from waveline.shared.gitengine.repo import ConfigRepo
from waveline.shared.models.git import Evict, FastForward, PromoteWave, RollbackWave

THIRD_SHA = "3333333333333333333333333333333333333333"
NOW = datetime.now(UTC)


def ff(sha: str) -> FastForward:
    return FastForward(command_id=uuid.uuid4(), repo="cfg-app", issued_at=NOW, sha=sha)


def evict(sha: str) -> Evict:
    return Evict(command_id=uuid.uuid4(), repo="cfg-app", issued_at=NOW, sha=sha)


def promote(
    deployed: str, app_sha: str = APP_SHA, src: str = "staging", dst: str = "internal"
) -> PromoteWave:
    return PromoteWave(
        command_id=uuid.uuid4(),
        repo="cfg-app",
        issued_at=NOW,
        pipeline="app",
        from_wave=src,
        to_wave=dst,
        app_sha=app_sha,
        deployed_sha=deployed,
    )


def rollback(to_sha: str, app_sha: str, wave: str = "staging") -> RollbackWave:
    return RollbackWave(
        command_id=uuid.uuid4(),
        repo="cfg-app",
        issued_at=NOW,
        pipeline="app",
        wave=wave,
        app_sha=app_sha,
        to_sha=to_sha,
    )


def staging_app(remote: Path, ref: str) -> str:
    tags = json.loads(read(remote, ref, "images/staging/tags.json"))
    return str(tags["Service1"]).rsplit(":", 1)[1]


def head(remote: Path, branch: str) -> str:
    return str(branch_log(str(remote), branch)[0].id)


def test_walk_introduce_fast_forward_promote_rollback(remote: Path, tmp_path: Path) -> None:
    w = applier_for(remote, tmp_path)
    c1 = push(w, introduce(APP_SHA)).sha
    assert c1 is not None
    moved = push(w, ff(c1))
    assert moved.outcome == "fast_forwarded"
    assert head(remote, "master") == c1
    # Staging deployed c1 → internal gets staging's files as they were in c1.
    promoted = push(w, promote(c1))
    assert promoted.outcome == "committed"
    assert promoted.sha is not None
    # Each event says what every wave holds at the commit it made.
    assert promoted.wave_apps[promoted.sha] == {"app/staging": APP_SHA, "app/internal": APP_SHA}
    assert read(remote, "auto", "images/internal/tags.json") == read(
        remote, c1, "images/staging/tags.json"
    )
    info = trailers.parse(branch_log(str(remote), "auto")[0].message)
    assert info.get(trailers.REASON) == f"promoted from staging at {c1}"
    assert info.get(trailers.TARGET) == "internal"
    push(w, ff(promoted.sha))
    # A newer set reaches staging, then staging rolls back to c1's files in one step.
    c3 = push(w, introduce(OTHER_SHA)).sha
    assert c3 is not None
    push(w, ff(c3))
    assert staging_app(remote, "master") == OTHER_SHA
    back = push(w, rollback(c1, APP_SHA))
    assert back.outcome == "committed"
    assert staging_app(remote, "auto") == APP_SHA
    assert read(remote, "auto", "images/internal/tags.json") == read(
        remote, "master", "images/internal/tags.json"
    )
    reason = trailers.parse(branch_log(str(remote), "auto")[0].message).get(trailers.REASON)
    assert reason == f"rollback to {APP_SHA}"


def test_evict_replays_later_commits(remote: Path, tmp_path: Path) -> None:
    w = applier_for(remote, tmp_path)
    good1 = push(w, introduce(APP_SHA)).sha
    red = push(w, introduce(OTHER_SHA)).sha
    good2_cmd = introduce(THIRD_SHA)
    good2 = push(w, good2_cmd).sha
    assert good1 and red and good2
    result = push(w, evict(red))
    assert result.outcome == "evicted"
    assert set(result.replayed) == {good2}
    assert result.wave_apps[result.replayed[good2]] == {"app/staging": THIRD_SHA}
    log = branch_log(str(remote), "auto")
    assert [str(c.id) for c in log[1:2]] == [good1]
    new_good2 = log[0]
    assert str(new_good2.id) == result.replayed[good2] == result.sha
    # The replayed commit keeps its trailers, so its Event-Id still makes a replay a no-op.
    assert trailers.parse(new_good2.message).event_id == str(good2_cmd.command_id)
    assert push(w, good2_cmd).outcome == "noop"
    assert staging_app(remote, "auto") == THIRD_SHA
    # Evicting again: no longer on auto.
    assert push(w, evict(red)).outcome == "noop"
    # The evicted commit's Event-Id no longer counts as applied.
    assert red not in {str(c.id) for c in branch_log(str(remote), "auto")}


def test_evicting_the_only_commit_resets_auto_to_master(remote: Path, tmp_path: Path) -> None:
    w = applier_for(remote, tmp_path)
    red = push(w, introduce(APP_SHA)).sha
    assert red is not None
    assert push(w, evict(red)).outcome == "evicted"
    assert head(remote, "auto") == head(remote, "master")


def test_preconditions_reject_without_pushing(remote: Path, tmp_path: Path) -> None:
    w = applier_for(remote, tmp_path)
    c1 = push(w, introduce(APP_SHA)).sha
    c2 = push(w, introduce(OTHER_SHA)).sha
    assert c1 and c2
    master = head(remote, "master")
    auto = head(remote, "auto")
    with pytest.raises(PreconditionFailed, match="not on master"):
        w.apply(promote(c1))  # c1 is not deployed (not on master)
    with pytest.raises(PreconditionFailed, match="does not follow"):
        w.apply(promote(master, src="staging", dst="production"))
    with pytest.raises(PreconditionFailed, match="holds no images"):
        w.apply(promote(master))  # staging is empty at master
    with pytest.raises(PreconditionFailed, match="already on master"):
        w.apply(evict(master))
    # An unknown commit: maybe pushed since the last fetch, so retriable (the retry
    # fetches first) ...
    w.refresh_if_stale(3600)
    with pytest.raises(GitFailure) as unknown:
        w.apply(ff("9" * 40))
    assert unknown.value.retriable
    # ... and rejected once a fetch made for this batch does not bring it either.
    w.refresh()
    with pytest.raises(PreconditionFailed, match="on no branch"):
        w.apply(ff("9" * 40))
    assert push(w, ff(c2)).outcome == "fast_forwarded"
    with pytest.raises(PreconditionFailed, match="already on master"):
        w.apply(evict(c1))
    # A commit that is not on auto cannot be fast-forwarded to.
    evicted = push(w, introduce(THIRD_SHA)).sha
    assert evicted is not None
    push(w, evict(evicted))
    with pytest.raises(PreconditionFailed, match="not on auto"):
        w.apply(ff(evicted))
    assert not w.dirty
    del auto


def test_batch_is_one_push(remote: Path, tmp_path: Path) -> None:
    w = applier_for(remote, tmp_path)
    first = w.apply(introduce(APP_SHA))
    second = w.apply(introduce(OTHER_SHA))
    assert first.sha and second.sha
    moved = w.apply(ff(first.sha))
    assert moved.outcome == "fast_forwarded"
    assert branch_log(str(remote), "auto") == []  # nothing pushed yet
    w.flush()
    assert head(remote, "auto") == second.sha
    assert head(remote, "master") == first.sha


def test_failed_push_leaves_the_remote_untouched(remote: Path, tmp_path: Path) -> None:
    w = applier_for(remote, tmp_path)
    other = applier_for(remote, tmp_path / "other")
    push(other, introduce(THIRD_SHA))
    w.apply(introduce(APP_SHA))
    w.apply(introduce(OTHER_SHA))
    with pytest.raises(GitFailure):
        w.flush()
    w.discard()
    assert len(branch_log(str(remote), "auto")) == 2  # only the other writer's commit
    w.refresh()
    w.apply(introduce(APP_SHA))
    w.flush()
    assert len(branch_log(str(remote), "auto")) == 3


def test_yaml_path_pipeline(tmp_path: Path) -> None:
    bare = tmp_path / "yaml.git"
    repo = pygit2.init_repository(str(bare), bare=True, initial_head="master")
    values = (
        b"# staging values\nservices:\n  Service1:\n    image:\n      tag: old   # set by CI\n"
        b"  Service2:\n    image: {tag: 'old'}\n"
    )
    tb = repo.TreeBuilder()
    staging = repo.TreeBuilder()
    staging.insert("values.yaml", repo.create_blob(values), pygit2.enums.FileMode.BLOB)
    envs = repo.TreeBuilder()
    envs.insert("staging", staging.write(), pygit2.enums.FileMode.TREE)
    tb.insert("envs", envs.write(), pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("t", "t@example.com")
    repo.create_commit("refs/heads/master", sig, sig, "init", tb.write(), [])
    config = make_config(
        bare.as_uri(),
        layout={"kind": "yaml-path", "path": "envs/{wave}/values.yaml", "digest_key": None},
    )
    w = Applier(ConfigRepo("cfg-app", config.repos["cfg-app"], tmp_path / "clone.git"), config)
    w.refresh()
    push(w, introduce(APP_SHA))
    assert read(bare, "auto", "envs/staging/values.yaml") == values.replace(
        b"tag: old", f"tag: {APP_SHA}".encode()
    ).replace(b"tag: 'old'", f"tag: '{APP_SHA}'".encode())

"""Whatever a person committed to a config repo: each layout either reads it or refuses it
with ``UnusableFile`` naming the file, the path in it and why — quickly, and never with an
unexpected exception."""

from __future__ import annotations

import logging
import pickle
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest

from tests.support import APP_SHA, image_set, make_config
from waveline.devstack.demo import seed_repo
from waveline.services.git_writer import apply as apply_module
from waveline.services.git_writer.host import HostInit, RepoHost
from waveline.shared.config import LayoutConfig
from waveline.shared.errors import PreconditionFailed, UnusableFile
from waveline.shared.gitengine import filecheck, layouts, trailers, yamledit
from waveline.shared.gitengine.repo import ConfigRepo
from waveline.shared.models.git import IntroduceImages
from waveline.shared.models.images import ImageSetAnnounced

IMAGES = ImageSetAnnounced.model_validate(image_set()).images
VALUES = LayoutConfig(kind="yaml-path", path="envs/{wave}/values.yaml")
KUSTOMIZE = LayoutConfig(kind="kustomize", path="envs/{wave}")
JSON = LayoutConfig(kind="images-json", path="images/{wave}")
TAG_FILE = LayoutConfig(kind="tag-file", path="tags/{wave}", service="Service1")
VALUES_PATH = "envs/staging/values.yaml"
KUSTOMIZATION = "envs/staging/kustomization.yaml"
TAGS = "images/staging/tags.json"


def reader(files: dict[str, bytes]) -> layouts.ReadFile:
    return files.get


def refusal(call: Any, *args: Any) -> UnusableFile:
    with pytest.raises(UnusableFile) as caught:
        call(*args)
    return caught.value


def introduce_values(files: dict[str, bytes]) -> dict[str, bytes]:
    values = layouts.from_images(VALUES, IMAGES)
    return layouts.apply(VALUES, "staging", values, reader(files))


def introduce_kustomize(files: dict[str, bytes]) -> dict[str, bytes]:
    values = layouts.from_images(KUSTOMIZE, IMAGES)
    return layouts.apply(KUSTOMIZE, "staging", values, reader(files))


# -- not UTF-8 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "path"),
    [(VALUES, VALUES_PATH), (KUSTOMIZE, KUSTOMIZATION), (JSON, TAGS), (TAG_FILE, "tags/staging")],
)
def test_bytes_that_are_not_utf8_are_refused_with_their_place(
    layout: LayoutConfig, path: str
) -> None:
    files = {path: b"# fine\nimages: \xff\xfe\n"}
    exc = refusal(layouts.extract, layout, "staging", reader(files))
    assert str(exc) == f"{path}: line 2, column 9: not UTF-8 text (byte 0xff)"
    assert (exc.file, exc.where) == (path, "line 2, column 9")
    if layout.kind in {"yaml-path", "kustomize"}:  # read on every write too
        values = layouts.from_images(layout, IMAGES)
        refusal(layouts.apply, layout, "staging", values, reader(files))


# -- wrong types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"services: [1, 2]\n", "services: expected a mapping, got a list"),
        (b"services: just text\n", "services: expected a mapping, got a string"),
        (
            b"services:\n  Service1:\n    image: [a, b]\n",
            "services.Service1.image: expected a mapping, got a list",
        ),
        (
            b"services:\n  Service1:\n    image: 42\n",
            "services.Service1.image: expected a mapping, got a number",
        ),
        (
            b"services:\n  Service1:\n    image:\n      tag: {nested: true}\n",
            "services.Service1.image.tag: expected a scalar, got a mapping",
        ),
        (b"- a list\n- at the top\n", "(top level): expected a mapping, got a list"),
    ],
)
def test_yaml_path_refuses_a_key_under_the_wrong_type(text: bytes, message: str) -> None:
    exc = refusal(introduce_values, {VALUES_PATH: text})
    assert str(exc) == f"{VALUES_PATH}: {message}"


def test_yaml_path_reading_refuses_a_service_entry_of_the_wrong_shape() -> None:
    text = b"services:\n  Service1:\n    image: [a, b]\n"
    exc = refusal(layouts.extract, VALUES, "staging", reader({VALUES_PATH: text}))
    assert str(exc) == f"{VALUES_PATH}: services.Service1.image: expected a mapping, got a list"
    # A flag beside the services is no service, and is left alone.
    fine = b"services:\n  enabled: true\n  api:\n    image: {tag: v1}\n"
    assert layouts.extract(VALUES, "staging", reader({VALUES_PATH: fine})) == {"api": {"tag": "v1"}}
    named = b"services:\n  'bad name!':\n    image: {tag: v1}\n"
    exc = refusal(layouts.extract, VALUES, "staging", reader({VALUES_PATH: named}))
    assert str(exc) == f"{VALUES_PATH}: services.bad name!: not a valid service name"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"Service1": 7}', "Service1: expected a string, got a number"),
        (b'{"Service1": {"tag": "x"}}', "Service1: expected a string, got an object"),
        (b'{"Service1": null}', "Service1: expected a string, got null"),
        (b'["Service1"]', "(top level): expected an object, got an array"),
        (b'{"Service1": "a", "Service1": "b"}', "Service1: duplicate key"),
    ],
)
def test_tags_json_refuses_wrong_types_and_duplicate_keys(data: bytes, message: str) -> None:
    exc = refusal(layouts.extract, JSON, "staging", reader({TAGS: data}))
    assert str(exc) == f"{TAGS}: {message}"


# -- kustomize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"images:\n  name: x\n  newTag: v1\n", "images: expected a list, got a mapping"),
        (b"images: docker.example.com/service1\n", "images: expected a list, got a string"),
        (b"images:\n- docker.example.com/service1\n", "images.0: expected a mapping, got a string"),
        (
            b"images:\n- name: a\n- name: docker.example.com/service1\n  newtag: v1\n",
            "images.1.newtag: unknown key (kustomize knows name, newName, newTag, tagSuffix, "
            "digest)",
        ),
        (b"images:\n- newTag: v1\n", "images.0: no name"),
        (b"images:\n- name: a\n  newTag: [v1]\n", "images.0.newTag: expected a string, got a list"),
        (b"- just\n- a list\n", "(top level): expected a mapping, got a list"),
    ],
)
def test_kustomize_refuses_images_it_cannot_use(text: bytes, message: str) -> None:
    files = {KUSTOMIZATION: text}
    assert str(refusal(introduce_kustomize, files)) == f"{KUSTOMIZATION}: {message}"
    exc = refusal(layouts.extract, KUSTOMIZE, "staging", reader(files))
    assert str(exc) == f"{KUSTOMIZATION}: {message}"


def test_kustomize_accepts_every_field_kustomize_knows() -> None:
    text = b"images:\n- name: x/y\n  newName: z/y\n  tagSuffix: -a\n  newTag: v1\n  digest:\n"
    values = layouts.extract(KUSTOMIZE, "staging", reader({KUSTOMIZATION: text}))
    assert values == {"x/y": {"newName": "z/y", "newTag": "v1"}}  # a null digest: none


# -- duplicate keys ----------------------------------------------------------------------


def test_duplicate_yaml_keys_are_refused_with_their_path() -> None:
    text = b"services:\n  Service1:\n    image: {tag: a}\n  Service1:\n    image: {tag: b}\n"
    exc = refusal(introduce_values, {VALUES_PATH: text})
    assert str(exc) == f"{VALUES_PATH}: services.Service1: duplicate key"
    quoted = b"services:\n  Service1: {}\n  'Service1': {}\n"  # the same string
    assert "services.Service1: duplicate key" in str(
        refusal(introduce_values, {VALUES_PATH: quoted})
    )
    # `1` and '1' are an integer and a string: two keys.
    distinct = b"ports:\n  1: a\n  '1': b\nservices: {}\n"
    assert VALUES_PATH in introduce_values({VALUES_PATH: distinct})


# -- nesting -----------------------------------------------------------------------------


def timed_refusal(call: Any, *args: Any) -> tuple[UnusableFile, float]:
    started = time.perf_counter()
    exc = refusal(call, *args)
    return exc, time.perf_counter() - started


@pytest.mark.parametrize(
    "text",
    [
        "services: " + "[" * 5000 + "]" * 5000 + "\n",
        "services: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
        "services:\n" + "- " * 5000 + "x\n",
        "services:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(1000)),
    ],
    ids=["flow-sequences", "flow-mappings", "block-sequences", "block-mappings"],
)
def test_deep_yaml_is_refused_in_milliseconds(text: str) -> None:
    exc, elapsed = timed_refusal(introduce_values, {VALUES_PATH: text.encode()})
    assert exc.file == VALUES_PATH
    # libyaml looks ahead up to a line's first 1,024 characters: a flow collection that
    # deep on one line is refused by its own limit (1,000 levels) before ours.
    assert "nested deeper than 64 levels" in exc.reason or "nesting depth" in exc.reason
    assert elapsed < 0.25, f"{elapsed * 1000:.0f} ms"  # ruamel alone: 5 s to fail


def test_deep_json_is_refused_in_milliseconds() -> None:
    data = b'{"Service1": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    exc, elapsed = timed_refusal(layouts.extract, JSON, "staging", reader({TAGS: data}))
    assert str(exc) == f"{TAGS}: nested deeper than 64 levels"
    assert elapsed < 0.05, f"{elapsed * 1000:.0f} ms"


def test_the_depth_limit_is_exact() -> None:
    limit = filecheck.MAX_DEPTH
    filecheck.check_yaml("[" * limit + "]" * limit, "f.yaml")
    filecheck.json_document(b"[" * limit + b"]" * limit, "f.json")
    with pytest.raises(UnusableFile, match="nested deeper"):
        filecheck.check_yaml("[" * (limit + 1) + "]" * (limit + 1), "f.yaml")
    with pytest.raises(UnusableFile, match="nested deeper"):
        filecheck.json_document(b"[" * (limit + 1) + b"]" * (limit + 1), "f.json")
    # Brackets inside strings are text, not nesting.
    filecheck.json_document(b'{"a": "' + b"[" * 500 + b'\\""}', "f.json")
    filecheck.check_yaml("a: '" + "[" * 500 + "'\n", "f.yaml")


# -- size --------------------------------------------------------------------------------


def test_a_file_over_the_cap_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "cfg.git"
    seed_repo(bare)
    repo = ConfigRepo("cfg", make_config(bare.as_uri()).repos["cfg-app"], bare)
    master = repo.repo.references["refs/heads/master"].target
    assert isinstance(master, pygit2.Oid)
    big = b"a: " + b"x" * (2 * 1024 * 1024) + b"\n"
    files = {VALUES_PATH: big, "small.yaml": b"a: 1\n"}
    commit = repo.commit(repo.create_commit(master, files, "big file") or master)

    def no_read(oid: Any) -> Any:
        raise AssertionError(f"{oid} was read")

    with monkeypatch.context() as patch:
        patch.setattr(repo.repo, "get", no_read)  # the size comes from the header alone
        started = time.perf_counter()
        with pytest.raises(UnusableFile) as caught:
            repo.read_file(commit, VALUES_PATH, max_bytes=1024 * 1024)
        elapsed = time.perf_counter() - started
    assert str(caught.value) == (
        f"{VALUES_PATH}: 2,097,156 bytes, over the limit of 1,048,576 bytes"
    )
    assert elapsed < 0.05, f"{elapsed * 1000:.2f} ms"  # ~0.01 ms; read whole, ~9 ms more
    assert repo.read_file(commit, "small.yaml", max_bytes=1024 * 1024) == b"a: 1\n"
    assert repo.read_file(commit, VALUES_PATH) == big  # no cap: read
    assert repo.read_file(commit, "envs", max_bytes=10) is None  # a directory: no file


# -- the error itself --------------------------------------------------------------------


def test_reasons_stay_short_whatever_the_file_quotes() -> None:
    key = "k" * 100_000  # an explicit key: a plain one is at most 1,024 characters
    text = f"services:\n  ? {key}\n  : 1\n  ? {key}\n  : 2\n".encode()
    exc = refusal(introduce_values, {VALUES_PATH: text})
    assert len(str(exc)) < 300
    assert exc.reason == "duplicate key"


def test_unusable_file_survives_the_repo_process_socket() -> None:
    exc = UnusableFile("a/b.yaml", "images", "expected a list, got a mapping")
    back = pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own bytes)
    assert isinstance(back, UnusableFile)
    assert isinstance(back, PreconditionFailed)  # rejected like any failed precondition
    assert (back.file, back.where, back.reason, str(back)) == (
        exc.file,
        exc.where,
        exc.reason,
        "a/b.yaml: images: expected a list, got a mapping",
    )


def test_a_wave_name_from_a_commit_trailer_is_refused_as_a_precondition() -> None:
    with pytest.raises(PreconditionFailed, match="invalid wave name"):
        layouts.wave_paths(JSON, "../../etc")


# -- odd but valid YAML is edited correctly ----------------------------------------------


def test_edits_keep_anchors_merges_and_continued_scalars_right() -> None:
    keys: list[list[yamledit.Key]] = [["a", "tag"]]
    anchored = yamledit.set_scalars("a:\n  tag: &x old\nb: *x\n", [(keys[0], "new")], "f")
    assert yamledit.load(anchored, "f") == {"a": {"tag": "new"}, "b": "old"}
    merged = yamledit.set_scalars("base: &b {tag: old}\na:\n  <<: *b\n", [(keys[0], "new")], "f")
    assert yamledit.load(merged, "f")["a"]["tag"] == "new"
    assert yamledit.load(merged, "f")["base"]["tag"] == "old"
    continued = yamledit.set_scalars("a:\n  tag: old\n    more\nz: 1\n", [(keys[0], "new")], "f")
    assert yamledit.load(continued, "f") == {"a": {"tag": "new"}, "z": 1}


# -- defence in depth in the repo process ------------------------------------------------


def introduce(app_sha: str) -> IntroduceImages:
    return IntroduceImages(
        command_id=uuid.uuid4(),
        repo="cfg-app",
        issued_at=datetime.now(UTC),
        pipeline="app",
        wave="staging",
        app_sha=app_sha,
        images=ImageSetAnnounced.model_validate(image_set(app_sha)).images,
    )


def test_an_unexpected_error_rejects_only_its_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug meeting odd input (here: an error raised after the command's commit was
    built) rejects that command, drops what it built, logs the traceback once, and the
    batch's other commands are committed and pushed."""
    bare = tmp_path / "cfg-app.git"
    seed_repo(bare)
    config = make_config(bare.as_uri())
    bad = {"a" * 40, "b" * 40}
    original = apply_module.Applier.wave_apps

    def flaky(self: apply_module.Applier, oid: pygit2.Oid, limit: int = 5000) -> dict[str, str]:
        info = trailers.parse(self.repo.commit(oid).message)
        if info.get(trailers.APP_SHA) in bad:
            raise TypeError("injected: a bug meeting odd input")
        return original(self, oid, limit)

    monkeypatch.setattr(apply_module.Applier, "wave_apps", flaky)
    init = HostInit(
        repo="cfg-app",
        repo_config=config.repos["cfg-app"],
        config=config,
        path=tmp_path / "clone.git",
        log_level="INFO",
        log_secrets=[],
        gil_switch_interval_ms=0.5,
    )
    host = RepoHost(init)
    try:
        cmds = [introduce("a" * 40), introduce(APP_SHA), introduce("b" * 40)]
        with caplog.at_level(logging.WARNING, logger="waveline.services.git_writer.host"):
            results, failed, _ = host.build(cmds, False, 0.0)
            host.flush()
    finally:
        host.close()
    outcomes = [results[c.command_id].outcome for c in cmds]
    assert outcomes == ["rejected", "committed", "rejected"]
    assert failed == []
    reason = results[cmds[0].command_id].reason or ""
    assert (
        reason
        == "unexpected error applying the command: TypeError: injected: a bug meeting odd input"
    )
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # the second command at the same place: one line, no trace
    assert any("traceback logged before" in r.getMessage() for r in caplog.records)
    # Only the good command's commit was pushed: auto is seed + one commit.
    remote = pygit2.Repository(str(bare))
    auto = remote.references["refs/heads/auto"].target
    log = list(remote.walk(auto))
    assert len(log) == 2
    assert trailers.parse(log[0].message).get(trailers.APP_SHA) == APP_SHA

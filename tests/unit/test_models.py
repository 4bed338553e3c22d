"""Strict validation of what CI sends: names, tags, digests, paths."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.support import APP_SHA, DIGEST_1, image_set
from waveline.shared.models.git import GIT_COMMAND, IntroduceImages
from waveline.shared.models.images import ImageRef, ImageSetAnnounced
from waveline.shared.names import check_relative_path


def test_seed_document_and_lower_case_keys() -> None:
    doc = image_set()
    announced = ImageSetAnnounced.model_validate(doc)
    assert announced.images["Service1"].tag.endswith(APP_SHA)
    lower = {"Tag": "reg.io/a/svc:v1.2", "Digest": f"reg.io/a/svc@{DIGEST_1}"}
    ref = ImageRef.model_validate({"tag": lower["Tag"], "digest": lower["Digest"]})
    assert ref == ImageRef.model_validate(lower)
    assert ref.model_dump() == lower  # output always uses the capitalised keys


def test_bare_digest_takes_the_tag_repository() -> None:
    ref = ImageRef.model_validate({"Tag": "reg.io:5000/svc:abc", "Digest": DIGEST_1})
    assert ref.digest == f"reg.io:5000/svc@{DIGEST_1}"
    assert ref.bare_digest == DIGEST_1
    assert ref.bare_tag == "abc"


@pytest.mark.parametrize(
    "images",
    [
        {"../etc": {"Tag": "r/s:1", "Digest": DIGEST_1}},
        {"svc/x": {"Tag": "r/s:1", "Digest": DIGEST_1}},
        {"svc": {"Tag": "r/s", "Digest": DIGEST_1}},
        {"svc": {"Tag": "r/s:bad tag", "Digest": DIGEST_1}},
        {"svc": {"Tag": "R/UPPER:1", "Digest": DIGEST_1}},
        {"svc": {"Tag": "r/s:1", "Digest": "sha256:abc"}},
        {"svc": {"Tag": "r/s:1", "Digest": "md5:" + "a" * 32}},
        {"svc": {"Tag": "r/s:1", "Digest": f"other/repo@{DIGEST_1}"}},
        {"svc": {"Tag": "r/s:1"}},
        {},
    ],
)
def test_rejects_bad_images(images: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ImageSetAnnounced.model_validate({"pipeline": "app", "app_sha": APP_SHA, "images": images})


@pytest.mark.parametrize("app_sha", ["", "xyz", "ABCDEF1", "a" * 65, "12345"])
def test_rejects_bad_app_sha(app_sha: str) -> None:
    with pytest.raises(ValidationError):
        ImageSetAnnounced.model_validate({**image_set(), "app_sha": app_sha})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ImageSetAnnounced.model_validate({**image_set(), "surprise": 1})


@pytest.mark.parametrize(
    "path", ["../x", "a/../../b", "/abs", ".git/config", "a/.GIT/x", "", "a\\b"]
)
def test_paths_stay_in_the_repo(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        check_relative_path(path)


def test_git_command_union_round_trips() -> None:
    announced = ImageSetAnnounced.model_validate(image_set())
    cmd = IntroduceImages(
        command_id="49fc07a2-ac7e-5147-9c91-b61476b2842c",
        repo="cfg-app",
        issued_at="2026-11-21T00:00:00Z",
        pipeline="app",
        wave="staging",
        app_sha=APP_SHA,
        images=announced.images,
    )
    again = GIT_COMMAND.validate_json(cmd.model_dump_json())
    assert again == cmd

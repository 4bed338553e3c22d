"""The four layouts: render, extract, apply in place (comments and quoting kept)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import APP_SHA, DIGEST_1, DIGEST_2, image_set
from waveline.shared.config import LayoutConfig
from waveline.shared.errors import PreconditionFailed
from waveline.shared.gitengine import layouts
from waveline.shared.models.images import ImageSetAnnounced

IMAGES = ImageSetAnnounced.model_validate(image_set()).images

VALUES_YAML = b"""\
# Helm values for staging; edited by people and by Waveline.
replicas: 3   # keep me
services:
  Service1:
    image:
      repository: docker.example.com/service1
      tag: "old-tag"    # bumped by Waveline
      digest: 'sha256:0000000000000000000000000000000000000000000000000000000000000000'
  Service2:
    image: {repository: docker.example.com/service2, tag: old2, digest: none}
  other:
    image:
      tag: untouched
ingress:
  hosts: [a.example.com,   b.example.com]
"""

KUSTOMIZATION = b"""\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../../base   # shared base
images:
- name: docker.example.com/service1
  newTag: "old"
- name: unrelated/thing
  newTag: v9
"""


def files(data: dict[str, bytes]) -> layouts.ReadFile:
    return data.get


def layout(**kw: Any) -> LayoutConfig:
    return LayoutConfig.model_validate(kw)


def test_images_json_round_trip() -> None:
    lay = layout(kind="images-json", path="images/{wave}")
    out = layouts.apply(lay, "staging", layouts.from_images(lay, IMAGES), files({}))
    assert set(out) == {"images/staging/tags.json", "images/staging/digests.json"}
    assert json.loads(out["images/staging/digests.json"])["Service2"].endswith(DIGEST_2)
    assert out["images/staging/tags.json"].endswith(b"}\n")
    back = layouts.extract(lay, "staging", files(out))
    assert back == layouts.from_images(lay, IMAGES)
    # Copy to another wave: same bytes under the other wave's paths.
    promoted = layouts.apply(lay, "internal", back, files({}))
    assert promoted["images/internal/tags.json"] == out["images/staging/tags.json"]


def test_tag_file_holds_only_the_tag() -> None:
    lay = layout(kind="tag-file", path="deployed_tags/{wave}_image_tag", service="Service1")
    out = layouts.apply(lay, "prod", layouts.from_images(lay, IMAGES), files({}))
    assert out == {"deployed_tags/prod_image_tag": f"{APP_SHA}\n".encode()}
    assert layouts.extract(lay, "prod", files(out)) == {"image": {"tag": APP_SHA}}
    with pytest.raises(PreconditionFailed, match="one tag"):
        layouts.from_images(layout(kind="tag-file", path="t/{wave}"), IMAGES)


def test_yaml_path_keeps_everything_but_the_values() -> None:
    lay = layout(kind="yaml-path", path="envs/{wave}/values.yaml")
    path = "envs/staging/values.yaml"
    out = layouts.apply(
        lay, "staging", layouts.from_images(lay, IMAGES), files({path: VALUES_YAML})
    )
    expected = (
        VALUES_YAML.replace(b'tag: "old-tag"', f'tag: "{APP_SHA}"'.encode())
        .replace(b"'sha256:" + b"0" * 64 + b"'", f"'{DIGEST_1}'".encode())
        .replace(b"tag: old2, digest: none", f"tag: {APP_SHA}, digest: {DIGEST_2}".encode())
    )
    assert out[path] == expected  # byte for byte, except the changed values
    values = layouts.extract(lay, "staging", files(out))
    assert values["Service1"] == {"tag": APP_SHA, "digest": DIGEST_1}
    assert values["other"] == {"tag": "untouched"}


def test_yaml_path_creates_missing_keys_and_file() -> None:
    lay = layout(kind="yaml-path", path="envs/{wave}/values.yaml", digest_key=None)
    out = layouts.apply(lay, "dev", {"api": {"tag": "v1"}}, files({}))
    assert out["envs/dev/values.yaml"] == b"services:\n  api:\n    image:\n      tag: v1\n"
    bad = {"envs/dev/values.yaml": b"services: [1, 2]\n"}
    with pytest.raises(PreconditionFailed, match="services: expected a mapping, got a list"):
        layouts.apply(lay, "dev", {"api": {"tag": "v1"}}, files(bad))
    with pytest.raises(PreconditionFailed, match="not valid YAML"):
        layouts.apply(lay, "dev", {"api": {"tag": "v1"}}, files({"envs/dev/values.yaml": b"a: ["}))


def test_kustomize_sets_images_entries_in_place() -> None:
    lay = layout(kind="kustomize", path="envs/{wave}")
    path = "envs/prod/kustomization.yaml"
    out = layouts.apply(lay, "prod", layouts.from_images(lay, IMAGES), files({path: KUSTOMIZATION}))
    text = out[path].decode()
    assert text.startswith(KUSTOMIZATION.decode().split("images:")[0])
    assert (
        f'- name: docker.example.com/service1\n  newTag: "{APP_SHA}"\n  digest: {DIGEST_1}' in text
    )
    assert "- name: unrelated/thing\n  newTag: v9" in text
    assert f"- name: docker.example.com/service2\n  newTag: {APP_SHA}\n  digest: {DIGEST_2}" in text
    values = layouts.extract(lay, "prod", files(out))
    assert values["docker.example.com/service2"] == {"newTag": APP_SHA, "digest": DIGEST_2}


@pytest.mark.parametrize(
    "config",
    [
        {"kind": "yaml-path", "path": "envs/{wave}/values.txt"},
        {"kind": "yaml-path", "path": "envs/{wave}/v.yaml", "tag_key": "image.tag"},
        {"kind": "images-json", "path": "images/all"},
        {"kind": "images-json", "path": "../{wave}"},
    ],
)
def test_layout_config_is_checked(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"path|key"):
        LayoutConfig.model_validate(config)

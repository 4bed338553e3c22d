"""How an image set becomes files for one wave (README.md, Layouts).

Every layout converts between files and *values* — the per-service image fields it stores —
in both directions:

- ``from_images(images)``: the values an announced image set stands for;
- ``extract(wave, read)``: the values a wave holds in some commit (``read`` reads its files);
- ``apply(wave, values, read)``: the files to write so the wave holds ``values``, starting
  from the current content (in-place layouts keep everything else byte for byte).

Introducing, promoting (copy W's values as deployed into W+1), rolling back (a wave's values
at an earlier commit) and replaying (a commit's values on a new base) are all
``apply(extract(...))`` or ``apply(from_images(...))``: generated files never conflict.

Whatever the files hold, reading them either gives values or raises ``UnusableFile`` naming
the file, the path in it and why (filecheck): the command is rejected, nothing else fails.
The generated layouts (``images-json``, ``tag-file``) rewrite their files whole, so only
reading one (promote, rollback, replay) meets what a person committed there; the in-place
layouts read the file on every write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from waveline.shared.config import LayoutConfig
from waveline.shared.errors import PreconditionFailed, UnusableFile
from waveline.shared.gitengine import filecheck, yamledit
from waveline.shared.models.images import ImageRef
from waveline.shared.names import check_name, check_relative_path

ReadFile = Callable[[str], bytes | None]
Values = dict[str, dict[str, str]]
# The fields of a kustomization's `images:` entry (kustomize's types.Image); kustomize
# refuses any other key.
KUSTOMIZE_IMAGE_KEYS = ("name", "newName", "newTag", "tagSuffix", "digest")
_KUSTOMIZE_VALUES = ("newName", "newTag", "digest")


def _path(layout: LayoutConfig, wave: str) -> str:
    try:
        check_name(wave, "wave name")
        return check_relative_path(layout.path.replace("{wave}", wave))
    except ValueError as exc:  # a replayed commit's wave comes from its trailers
        raise PreconditionFailed(str(exc)) from exc


def wave_paths(layout: LayoutConfig, wave: str) -> list[str]:
    """The files that hold ``wave``'s image set."""
    base = _path(layout, wave)
    if layout.kind == "images-json":
        return [f"{base}/tags.json", f"{base}/digests.json"]
    if layout.kind == "kustomize":
        return [f"{base}/kustomization.yaml"]
    return [base]  # tag-file and yaml-path name the file itself


def from_images(layout: LayoutConfig, images: Mapping[str, ImageRef]) -> Values:
    if layout.kind == "images-json":
        return {svc: {"tag": ref.tag, "digest": ref.digest} for svc, ref in images.items()}
    if layout.kind == "tag-file":
        service = layout.service or (next(iter(images)) if len(images) == 1 else None)
        if service is None or service not in images:
            raise PreconditionFailed(
                "tag-file layout holds one tag: announce one service or set layout.service "
                f"(got {sorted(images)})"
            )
        return {"image": {"tag": images[service].bare_tag}}
    if layout.kind == "yaml-path":
        return {
            svc: {"tag": ref.bare_tag, "digest": ref.bare_digest} for svc, ref in images.items()
        }
    return {  # kustomize: entries are keyed by image name, as `kustomize edit set image` does
        ref.repository: {"newTag": ref.bare_tag, "digest": ref.bare_digest}
        for ref in images.values()
    }


def extract(layout: LayoutConfig, wave: str, read: ReadFile) -> Values:
    paths = wave_paths(layout, wave)
    if layout.kind == "images-json":
        tags = _json_map(read(paths[0]), paths[0])
        digests = _json_map(read(paths[1]), paths[1])
        return {
            svc: {"tag": tags[svc], **({"digest": digests[svc]} if svc in digests else {})}
            for svc in tags
        }
    if layout.kind == "tag-file":
        tag = _text(read(paths[0]), paths[0]).strip()
        return {"image": {"tag": tag}} if tag else {}
    doc = yamledit.load(_text(read(paths[0]), paths[0]), paths[0])
    if layout.kind == "yaml-path":
        return _extract_yaml_paths(layout, doc, paths[0])
    return {
        str(e["name"]): {k: str(e[k]) for k in _KUSTOMIZE_VALUES if e.get(k) is not None}
        for e in _kustomize_images(doc, paths[0])
    }


def apply(layout: LayoutConfig, wave: str, values: Values, read: ReadFile) -> dict[str, bytes]:
    paths = wave_paths(layout, wave)
    if layout.kind == "images-json":
        tags = {svc: v["tag"] for svc, v in values.items() if "tag" in v}
        digests = {svc: v["digest"] for svc, v in values.items() if "digest" in v}
        return {paths[0]: _json_bytes(tags), paths[1]: _json_bytes(digests)}
    if layout.kind == "tag-file":
        tag = next(iter(values.values()), {}).get("tag", "")
        return {paths[0]: (tag + "\n").encode()}
    where = paths[0]
    text = _text(read(where), where)
    if layout.kind == "yaml-path":
        assignments: list[yamledit.Assignment] = []
        for svc, fields in sorted(values.items()):
            if fields.get("tag"):
                assignments.append((list(_key_path(layout.tag_key, svc)), fields["tag"]))
            if layout.digest_key and fields.get("digest"):
                assignments.append((list(_key_path(layout.digest_key, svc)), fields["digest"]))
        return {where: yamledit.set_scalars(text, assignments, where).encode()}
    return {where: _apply_kustomize(text, values, where).encode()}


# -- helpers -----------------------------------------------------------------------------


def _text(data: bytes | None, path: str) -> str:
    return filecheck.text(data, path) if data else ""


def _json_map(data: bytes | None, path: str) -> dict[str, str]:
    if data is None or not data.strip():
        return {}
    doc = filecheck.json_document(data, path)
    if not isinstance(doc, dict):
        raise filecheck.wrong_type(path, [], "an object", doc, json_names=True)
    for key, value in doc.items():
        if not isinstance(value, str):
            raise filecheck.wrong_type(path, [key], "a string", value, json_names=True)
    return doc


def _json_bytes(data: Mapping[str, str]) -> bytes:
    return (json.dumps(dict(sorted(data.items())), indent=2) + "\n").encode()


def _key_path(template: str, service: str) -> list[str]:
    try:
        check_name(service, "service name")
    except ValueError as exc:
        raise PreconditionFailed(str(exc)) from exc
    parts = template.replace("{service}", service).split(".")
    if any(not p for p in parts):
        raise PreconditionFailed(f"invalid key template {template!r}")
    return parts


def _extract_yaml_paths(layout: LayoutConfig, doc: Any, where: str) -> Values:
    """Walk the keys around ``{service}`` in the templates to find every service present.

    An entry of the services' mapping that is not itself a mapping is no service (a flag
    beside them); inside one that is, a node of the wrong type is refused, never skipped:
    a skipped service would silently not be promoted."""
    values: Values = {}
    if doc is None:
        return values
    if not isinstance(doc, dict):
        raise filecheck.wrong_type(where, [], "a mapping", doc)
    for field, template in (("tag", layout.tag_key), ("digest", layout.digest_key)):
        if not template:
            continue
        prefix, _, suffix = template.partition("{service}")
        before = [k for k in prefix.split(".") if k]
        after = [k for k in suffix.split(".") if k]
        node = yamledit.walk(doc, before, where)
        if node is None:
            continue
        if not isinstance(node, dict):
            raise filecheck.wrong_type(where, before, "a mapping", node)
        for svc, sub in node.items():
            if not isinstance(sub, dict):
                continue
            leaf = yamledit.walk(sub, after, where, at=[*before, str(svc)])
            if leaf is None:
                continue
            if isinstance(leaf, dict | list):
                raise filecheck.wrong_type(where, [*before, str(svc), *after], "a scalar", leaf)
            if not _is_name(str(svc)):
                raise UnusableFile(
                    where, filecheck.dotted([*before, str(svc)]), "not a valid service name"
                )
            values.setdefault(str(svc), {})[field] = str(leaf)
    return values


def _is_name(value: str) -> bool:
    try:
        check_name(value)
    except ValueError:
        return False
    return True


def _kustomize_images(doc: Any, where: str) -> list[Any]:
    """A kustomization's `images:` entries, each checked as kustomize would: a mapping of
    known keys with scalar values and a name."""
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise filecheck.wrong_type(where, [], "a mapping", doc)
    entries = doc.get("images")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise filecheck.wrong_type(where, ["images"], "a list", entries)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise filecheck.wrong_type(where, ["images", i], "a mapping", entry)
        for key, value in entry.items():
            if key not in KUSTOMIZE_IMAGE_KEYS:
                known = ", ".join(KUSTOMIZE_IMAGE_KEYS)
                raise UnusableFile(
                    where, f"images.{i}.{key}", f"unknown key (kustomize knows {known})"
                )
            if isinstance(value, dict | list):
                raise filecheck.wrong_type(where, ["images", i, key], "a string", value)
        if entry.get("name") is None:
            raise UnusableFile(where, f"images.{i}", "no name")
    return entries


def _apply_kustomize(text: str, values: Values, where: str) -> str:
    """Update ``images:`` entries by name in place; append entries for new images."""
    entries = _kustomize_images(yamledit.load(text, where), where)
    index = {str(e["name"]): i for i, e in enumerate(entries)}
    assignments: list[yamledit.Assignment] = []
    new: list[tuple[str, dict[str, str]]] = []
    for name, fields in sorted(values.items()):
        if name in index:
            for key in ("newName", "newTag", "digest"):
                if key in fields:
                    assignments.append((["images", index[name], key], fields[key]))
        else:
            new.append((name, fields))
    text = yamledit.set_scalars(text, assignments, where)
    if not new:
        return text
    doc = yamledit.load(text, where) or CommentedMap()
    if doc.get("images") is None:
        doc["images"] = CommentedSeq()
    for name, fields in new:
        entry = CommentedMap(name=name)
        entry.update({k: fields[k] for k in ("newName", "newTag", "digest") if k in fields})
        doc["images"].append(entry)
    return yamledit.dump(doc)

"""How an image set becomes files for one wave (DESIGN §2, file layouts).

Every layout converts between files and *values* — the per-service image fields it stores —
in both directions:

- ``from_images(images)``: the values an announced image set stands for;
- ``extract(wave, read)``: the values a wave holds in some commit (``read`` reads its files);
- ``apply(wave, values, read)``: the files to write so the wave holds ``values``, starting
  from the current content (in-place layouts keep everything else byte for byte).

Introducing, promoting (copy W's values as deployed into W+1), rolling back (a wave's values
at an earlier commit) and replaying (a commit's values on a new base) are all
``apply(extract(...))`` or ``apply(from_images(...))``: generated files never conflict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from waveline.shared.config import LayoutConfig
from waveline.shared.errors import PreconditionFailed
from waveline.shared.gitengine import yamledit
from waveline.shared.models.images import ImageRef
from waveline.shared.names import check_name, check_relative_path

ReadFile = Callable[[str], bytes | None]
Values = dict[str, dict[str, str]]


def _path(layout: LayoutConfig, wave: str) -> str:
    check_name(wave, "wave name")
    return check_relative_path(layout.path.replace("{wave}", wave))


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
        data = read(paths[0])
        return {"image": {"tag": data.decode().strip()}} if data and data.strip() else {}
    doc = yamledit.load((read(paths[0]) or b"").decode(), paths[0])
    if layout.kind == "yaml-path":
        return _extract_yaml_paths(layout, doc)
    values: Values = {}
    for entry in doc.get("images") or [] if isinstance(doc, dict) else []:
        if isinstance(entry, dict) and "name" in entry:
            values[str(entry["name"])] = {
                k: str(entry[k]) for k in ("newName", "newTag", "digest") if k in entry
            }
    return values


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
    text = (read(where) or b"").decode()
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


def _json_map(data: bytes | None, path: str) -> dict[str, str]:
    if data is None or not data.strip():
        return {}
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreconditionFailed(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise PreconditionFailed(f"{path}: expected a JSON object of strings")
    return {str(k): v for k, v in doc.items()}


def _json_bytes(data: Mapping[str, str]) -> bytes:
    return (json.dumps(dict(sorted(data.items())), indent=2) + "\n").encode()


def _key_path(template: str, service: str) -> list[str]:
    check_name(service, "service name")
    parts = template.replace("{service}", service).split(".")
    if any(not p for p in parts):
        raise PreconditionFailed(f"invalid key template {template!r}")
    return parts


def _extract_yaml_paths(layout: LayoutConfig, doc: Any) -> Values:
    """Walk the keys around ``{service}`` in the templates to find every service present."""
    values: Values = {}
    if not isinstance(doc, dict):
        return values
    for field, template in (("tag", layout.tag_key), ("digest", layout.digest_key)):
        if not template:
            continue
        prefix, _, suffix = template.partition("{service}")
        node: Any = doc
        for key in [k for k in prefix.split(".") if k]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        for svc, sub in node.items():
            leaf: Any = sub
            for key in [k for k in suffix.split(".") if k]:
                leaf = leaf.get(key) if isinstance(leaf, dict) else None
            if leaf is not None and not isinstance(leaf, dict | list):
                values.setdefault(str(svc), {})[field] = str(leaf)
    return values


def _apply_kustomize(text: str, values: Values, where: str) -> str:
    """Update ``images:`` entries by name in place; append entries for new images."""
    doc = yamledit.load(text, where)
    entries = doc.get("images") if isinstance(doc, dict) else None
    index = {str(e.get("name")): i for i, e in enumerate(entries or []) if isinstance(e, dict)}
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

"""Surgical YAML edits: change a scalar's bytes and nothing else.

ruamel.yaml's round trip keeps comments and key order but re-spaces some things (flow
sequences, the gap before a trailing comment). Config repos are reviewed by people, so an
existing value is changed by splicing the new token in at the position ruamel's parser
reports, in the old token's quoting style; every other byte stays. Only a key that does not
exist yet needs a structural rewrite (ruamel dump), which is then the fallback.
"""

from __future__ import annotations

import io
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import ScalarString

from waveline.shared.errors import PreconditionFailed

Key = str | int
Assignment = tuple[list[Key], str]
_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./@:+-]*$")


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def load(text: str, where: str) -> Any:
    try:
        return _yaml().load(text) if text.strip() else None
    except YAMLError as exc:
        raise PreconditionFailed(f"{where}: not valid YAML: {exc}") from exc


def dump(doc: Any) -> str:
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def _token_end(line: str, col: int) -> int:
    quote = line[col] if col < len(line) else ""
    i = col + 1
    if quote == '"':
        while i < len(line):
            if line[i] == "\\":
                i += 2
            elif line[i] == '"':
                return i + 1
            else:
                i += 1
        return -1
    if quote == "'":
        while i < len(line):
            if line.startswith("''", i):
                i += 2
            elif line[i] == "'":
                return i + 1
            else:
                i += 1
        return -1
    end = col
    while end < len(line) and line[end] not in ",]}\r\n" and not line.startswith(" #", end):
        end += 1
    return len(line[:end].rstrip(" \t"))


def _is_plain_string(value: str) -> bool:
    if not _PLAIN_SAFE.match(value):
        return False
    loaded = YAML(typ="safe").load(value)
    return isinstance(loaded, str) and loaded == value


def _render(value: str, old_token: str) -> str:
    if old_token.startswith("'"):
        return "'" + value.replace("'", "''") + "'"
    if old_token.startswith('"') or not _is_plain_string(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _dotted(keys: list[Key]) -> str:
    return ".".join(str(k) for k in keys)


def _child(node: Any, key: Key) -> Any:
    if isinstance(key, int):
        return node[key] if isinstance(node, list) and 0 <= key < len(node) else None
    return node.get(key) if isinstance(node, dict) else None


def _parent(doc: Any, keys: list[Key], where: str) -> Any:
    node = doc
    for key in keys:
        node = _child(node, key)
        if node is None:
            return None
    if not isinstance(node, dict):
        raise PreconditionFailed(f"{where}: {_dotted(keys)} is not a mapping")
    return node


def set_scalars(text: str, assignments: list[Assignment], where: str) -> str:
    """Set each dotted key path to a string. Existing scalars are spliced in place; missing
    keys are created through a ruamel round trip (only then may other bytes move)."""
    doc = load(text, where)
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, dict):
        raise PreconditionFailed(f"{where}: top level must be a mapping")
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []
    missing: list[Assignment] = []
    for keys, value in assignments:
        parent = _parent(doc, keys[:-1], where)
        if parent is None or keys[-1] not in parent:
            missing.append((keys, value))
            continue
        old = parent[keys[-1]]
        if isinstance(old, dict | list):
            raise PreconditionFailed(f"{where}: {_dotted(keys)} is not a scalar")
        line, col = parent.lc.value(keys[-1])
        end = _token_end(lines[line], col)
        if end < 0 or lines[line][col] in "|>":
            missing.append((keys, value))  # multi-line scalar: rewrite structurally
            continue
        edits.append((line, col, end, _render(value, lines[line][col:end])))
    for line, col, end, token in sorted(edits, reverse=True):
        lines[line] = lines[line][:col] + token + lines[line][end:]
    text = "".join(lines)
    if not missing:
        return text
    doc = load(text, where) or CommentedMap()
    for keys, value in missing:
        node = doc
        for key in keys[:-1]:
            child = _child(node, key)
            if child is None and isinstance(key, str) and isinstance(node, dict):
                child = CommentedMap()
                node[key] = child
            if not isinstance(child, dict | list):
                raise PreconditionFailed(
                    f"{where}: {_dotted(keys)} crosses a non-mapping at {key!r}"
                )
            node = child
        if not isinstance(node, dict):
            raise PreconditionFailed(f"{where}: {_dotted(keys)} is not under a mapping")
        old = node.get(keys[-1])
        node[keys[-1]] = type(old)(value) if isinstance(old, ScalarString) else value
    return dump(doc)

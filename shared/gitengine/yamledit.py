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
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import ScalarString

from waveline.shared.errors import UnusableFile
from waveline.shared.gitengine import filecheck

Key = str | int
Assignment = tuple[list[Key], str]
_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./@:+-]*$")


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def load(text: str, where: str) -> Any:
    """The round-trip document of ``text`` (None when empty); ``UnusableFile`` naming
    ``where`` for text that is not YAML, nested deeper than ``filecheck.MAX_DEPTH`` or with
    a key twice (checked first, cheaply: see filecheck)."""
    if not text.strip():
        return None
    filecheck.check_yaml(text, where)
    try:
        return _yaml().load(text)
    except DuplicateKeyError as exc:  # what the check above could not tell apart
        mark = exc.problem_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UnusableFile(where, at, str(exc.problem)) from None
    except MarkedYAMLError as exc:
        # What libyaml accepts and ruamel does not (YAML 1.2 rules, several documents).
        mark = exc.problem_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UnusableFile(where, at, f"not valid YAML: {exc.problem}") from None
    except YAMLError as exc:
        raise UnusableFile(where, "", f"not valid YAML: {exc}") from None
    except RecursionError:
        raise UnusableFile(where, "", "nested too deep to parse") from None


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


def step(node: Any, key: Key, at: Sequence[Key], where: str) -> Any:
    """``node[key]`` (None when absent or null), where ``node`` is at path ``at`` of file
    ``where``: a string key needs a mapping, an index a list, else ``UnusableFile``."""
    if isinstance(key, int):
        if not isinstance(node, list):
            raise filecheck.wrong_type(where, at, "a list", node)
        return node[key] if 0 <= key < len(node) else None
    if not isinstance(node, dict):
        raise filecheck.wrong_type(where, at, "a mapping", node)
    return node.get(key)


def walk(node: Any, keys: Sequence[Key], where: str, at: Sequence[Key] = ()) -> Any:
    """The node at ``keys`` below ``node`` (itself at path ``at``); None as soon as a key
    is absent or null; ``UnusableFile`` when a node on the way has the wrong type."""
    path = list(at)
    for key in keys:
        if node is None:
            return None
        node = step(node, key, path, where)
        path.append(key)
    return node


def _position(parent: Any, key: Key, lines: list[str]) -> tuple[int, int] | None:
    """Where the value of ``parent[key]`` starts, when its token can be spliced: not for
    a key merged in with '<<' (ruamel records no position), nor for a block scalar, an
    anchored or tagged value (the splice would drop the anchor other nodes refer to)."""
    data = getattr(parent.lc, "data", None) or {}
    pos = data.get(key)
    if pos is None or len(pos) < 4:
        return None
    line, col = pos[2], pos[3]
    if line >= len(lines) or col >= len(lines[line]) or lines[line][col] in "|>&!":
        return None
    return line, col


def _holds(text: str, assignments: list[Assignment], where: str) -> bool:
    doc = load(text, where)
    return all(str(walk(doc, keys, where)) == value for keys, value in assignments)


def set_scalars(text: str, assignments: list[Assignment], where: str) -> str:
    """Set each dotted key path to a string. Existing scalars are spliced in place; missing
    keys are created through a ruamel round trip (only then may other bytes move)."""
    doc = load(text, where)
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, dict):
        raise filecheck.wrong_type(where, [], "a mapping", doc)
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []
    missing: list[Assignment] = []
    for keys, value in assignments:
        parent = walk(doc, keys[:-1], where)
        if parent is not None and not isinstance(parent, dict):
            raise filecheck.wrong_type(where, keys[:-1], "a mapping", parent)
        if parent is None or keys[-1] not in parent:
            missing.append((keys, value))
            continue
        old = parent[keys[-1]]
        if isinstance(old, dict | list):
            raise filecheck.wrong_type(where, keys, "a scalar", old)
        pos = _position(parent, keys[-1], lines)
        end = _token_end(lines[pos[0]], pos[1]) if pos is not None else -1
        if pos is None or end < 0:
            missing.append((keys, value))  # rewritten structurally
            continue
        line, col = pos
        edits.append((line, col, end, _render(value, lines[line][col:end])))
    for line, col, end, token in sorted(edits, reverse=True):
        lines[line] = lines[line][:col] + token + lines[line][end:]
    spliced = "".join(lines)
    if edits and not _holds(spliced, [a for a in assignments if a not in missing], where):
        # A token that reads differently than it looks (a plain scalar continued on the
        # next line): leave the bytes alone and set everything structurally.
        spliced, missing = text, list(assignments)
    text = spliced
    if not missing:
        return text
    doc = load(text, where) or CommentedMap()
    for keys, value in missing:
        node = doc
        for depth, key in enumerate(keys[:-1]):
            child = step(node, key, keys[:depth], where)
            if child is None:
                if isinstance(key, int):
                    raise UnusableFile(where, filecheck.dotted(keys[: depth + 1]), "no such entry")
                child = CommentedMap()
                node[key] = child
            node = child
        if not isinstance(node, dict):
            raise filecheck.wrong_type(where, keys[:-1], "a mapping", node)
        old = node.get(keys[-1])
        node[keys[-1]] = type(old)(value) if isinstance(old, ScalarString) else value
    return dump(doc)

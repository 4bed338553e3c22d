"""Config-repo files as input: decoded, bounded and parsed so that whatever a person
committed is either usable or refused with ``UnusableFile`` naming the file, the place in it
and why — never an unexpected exception, never seconds of parsing.

The size cap is checked before a file is read (``ConfigRepo.read_file``). Nesting is checked
here, before the real parse, by a linear pass: ruamel.yaml and the json module recurse once
per level, and ruamel's scanner is quadratic in flow depth (a 5,000-deep ``[[[…]]]`` took
5 s before failing with RecursionError). For YAML the pass is libyaml's event stream (C,
no tree built, stopped at the first level too many), which also finds duplicate keys with
the path to them; for JSON, strings are cut out by a regular expression and the brackets
left are counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import yaml
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver

from waveline.shared.errors import UnusableFile

# Far deeper than any values file or kustomization; far below where the parsers recurse
# into trouble (Python's recursion limit is 1,000, libyaml's own nesting limit 1,000).
MAX_DEPTH = 64
_YAML_LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
# A JSON string (escapes included): unrolled so the match is linear.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_RESOLVER = VersionedResolver()  # ruamel's own (YAML 1.2): keys typed as the loader will


def kind_of(value: Any, *, json_names: bool = False) -> str:
    """How a reason names what a file holds: 'a mapping', 'a list', 'a string', …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object" if json_names else "a mapping"
    if isinstance(value, list):
        return "an array" if json_names else "a list"
    return f"a {type(value).__name__}"


def dotted(keys: Sequence[str | int]) -> str:
    return ".".join(str(k) for k in keys) or "(top level)"


def wrong_type(
    file: str, keys: Sequence[str | int], expected: str, value: Any, *, json_names: bool = False
) -> UnusableFile:
    """``file: a.b: expected <expected>, got <what value is>``."""
    got = kind_of(value, json_names=json_names)
    return UnusableFile(file, dotted(keys), f"expected {expected}, got {got}")


def text(data: bytes, file: str) -> str:
    """``data`` as UTF-8 text, or UnusableFile saying where the first bad byte is."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UnusableFile(
            file, f"line {line}, column {column}", f"not UTF-8 text (byte 0x{data[exc.start]:02x})"
        ) from None


def json_document(data: bytes, file: str) -> Any:
    """Parse JSON text: UTF-8 (a leading BOM allowed), at most MAX_DEPTH deep, no key twice
    in an object."""
    source = text(data, file).removeprefix("\ufeff")
    _check_json_depth(source, file)

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise UnusableFile(file, key, "duplicate key")
            obj[key] = value
        return obj

    try:
        return json.loads(source, object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise UnusableFile(file, where, f"not valid JSON: {exc.msg}") from None
    except RecursionError:  # depth hidden from the pre-scan by broken quoting
        raise UnusableFile(file, "", f"nested deeper than {MAX_DEPTH} levels") from None


def _check_json_depth(source: str, file: str) -> None:
    depth = 0
    for bracket in _NOT_BRACKET.sub("", _JSON_STRING.sub("", source)):
        if bracket in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise UnusableFile(file, "", f"nested deeper than {MAX_DEPTH} levels")
        else:
            depth -= 1


class _Collection:
    """A mapping or sequence open in the event stream, and which child is being read."""

    __slots__ = ("children", "key", "keys", "mapping")

    def __init__(self, mapping: bool) -> None:
        self.mapping = mapping
        self.children = 0  # in a mapping, keys and values alternate: even is a key
        self.key = ""
        # Each key's text, with the (tag, plain) of each time it appeared.
        self.keys: dict[str, list[tuple[str | None, bool]]] = {}

    def segment(self) -> str:
        if not self.mapping:
            return str(self.children)
        return self.key if self.children % 2 else "?"


def _path(stack: list[_Collection], *more: str) -> str:
    return dotted([c.segment() for c in stack] + list(more))


def check_yaml(source: str, file: str) -> None:
    """Refuse YAML text nested deeper than MAX_DEPTH or with a key twice in one mapping,
    naming the path; or that is not YAML at all. Linear in the text, stops at the first
    problem, builds nothing."""
    stack: list[_Collection] = []
    try:
        for event in yaml.parse(source, Loader=_YAML_LOADER):
            node = isinstance(event, yaml.ScalarEvent | yaml.AliasEvent)
            if isinstance(event, yaml.ScalarEvent | yaml.AliasEvent) and stack:
                _note_key(stack, event, file)
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise UnusableFile(file, _path(stack), f"nested deeper than {MAX_DEPTH} levels")
                if stack and stack[-1].mapping and not stack[-1].children % 2:
                    stack[-1].key = "?"  # a complex key: a collection as a key
                stack.append(_Collection(isinstance(event, yaml.MappingStartEvent)))
            elif isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
            # A scalar, an alias or a collection's end completes a child of the one open.
            if stack and (node or isinstance(event, yaml.CollectionEndEvent)):
                stack[-1].children += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UnusableFile(file, where, f"not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise UnusableFile(file, "", f"not valid YAML: {exc}") from None


def _note_key(
    stack: list[_Collection], event: yaml.ScalarEvent | yaml.AliasEvent, file: str
) -> None:
    """At a scalar or alias: when it is a mapping's key, remember it (a scalar key is
    refused the second time: keys that read the same are the same key)."""
    mapping = stack[-1]
    if not mapping.mapping or mapping.children % 2:
        return  # an item of a sequence, or a value
    if isinstance(event, yaml.AliasEvent):
        mapping.key = f"*{event.anchor}"
        return
    seen = mapping.keys.setdefault(event.value, [])
    here = (event.tag, not event.style)
    # '<<' merges; ruamel decides what may be merged twice.
    if event.value != "<<" and any(
        _type_of(event.value, *here) == _type_of(event.value, *other) for other in seen
    ):
        raise UnusableFile(file, _path(stack[:-1], event.value), "duplicate key")
    seen.append(here)
    mapping.key = event.value


def _type_of(value: str, tag: str | None, plain: bool) -> str:
    """What a key's text loads as (asked only when the same text comes twice): `a` and
    'a' are one key, `1` and '1' are not."""
    if tag:
        return tag
    if not plain:
        return "tag:yaml.org,2002:str"
    return str(_RESOLVER.resolve(ScalarNode, value, (True, False)))

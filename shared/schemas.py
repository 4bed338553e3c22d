"""Schema files for every topic's messages, generated from the pydantic models (README.md).

``schemas/<topic>/<Model>.schema.json`` is the model's JSON Schema (validation mode, by alias);
``schemas/<topic>/<Model>.avsc`` is an Avro record kept in step with it. The Avro schema is
derived by walking the model's fields, not by translating the JSON Schema, so Avro names,
enums, maps and defaults come straight from the Python types.

Messages travel as JSON, so the Avro schema describes the JSON document: field names are the
JSON keys (aliases), and datetimes are ISO 8601 strings rather than Avro timestamps (a
``timestamp-micros`` long would not match what is on the wire).

``python -m waveline.shared.schemas schemas`` regenerates the tree (``make schemas``);
``--check`` only compares and exits 1 listing the differences.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

from waveline.shared.models.registry import TOPIC_MODELS

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
JSON_SUFFIX = ".schema.json"
AVRO_SUFFIX = ".avsc"

AvroSchema: TypeAlias = str | dict[str, Any] | list[Any]

_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PRIMITIVES: dict[Any, str] = {str: "string", int: "long", float: "double", bool: "boolean"}
_SEQUENCES = (tuple, list, set, frozenset)


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema as pydantic generates it (by alias, validation mode), with the
    ``$schema`` dialect pydantic targets, so a validator picks draft 2020-12."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def avro_schema(model: type[BaseModel], namespace: str = "dev.waveline") -> dict[str, Any]:
    """An Avro record describing ``model``'s JSON document.

    Every named type (nested model records, enums from ``Literal`` fields) is defined once,
    at its first use, and referenced by full name after that. Raises ``TypeError`` for a
    field type with no Avro form and ``ValueError`` for a field name Avro does not allow.
    """
    walker = _AvroWalker(namespace)
    schema = walker.record(model)
    assert isinstance(schema, dict)  # the first use of a model is always its definition
    return schema


@dataclass
class _AvroWalker:
    namespace: str
    # full name -> what defined it, so a second, different type under the same name is an
    # error instead of a silent reference to the wrong definition.
    defined: dict[str, object] = field(default_factory=dict)

    def claim(self, name: str, owner: object) -> str | None:
        """The full name if ``owner`` already defined it; None when it must be defined now."""
        full = f"{self.namespace}.{name}"
        if full not in self.defined:
            self.defined[full] = owner
            return None
        if self.defined[full] != owner:
            raise TypeError(f"two different Avro types would be named {full}")
        return full

    def record(self, model: type[BaseModel]) -> AvroSchema:
        reference = self.claim(model.__name__, model)
        if reference is not None:
            return reference
        fields = [self.field(model, name, info) for name, info in model.model_fields.items()]
        schema: dict[str, Any] = {
            "type": "record",
            "name": model.__name__,
            "namespace": self.namespace,
            "fields": fields,
        }
        # __doc__ rather than inspect.getdoc: a model without a docstring must not inherit
        # the base class's text.
        if model.__doc__:
            schema["doc"] = inspect.cleandoc(model.__doc__)
        return schema

    def field(self, model: type[BaseModel], name: str, info: FieldInfo) -> dict[str, Any]:
        key = info.serialization_alias or info.alias or name
        if not _AVRO_NAME.fullmatch(key):
            raise ValueError(f"{model.__name__}.{name}: {key!r} is not a valid Avro field name")
        enum_name = f"{model.__name__}{''.join(p.title() for p in name.split('_'))}"
        avro_type = self.type(info.annotation, enum_name)
        out: dict[str, Any] = {"name": key, "type": avro_type}
        doc = [info.description] if info.description else []
        values = _string_literal_values(info.annotation)
        if values is not None and _is_string_type(avro_type):
            doc.append("one of: " + ", ".join(values))
        if _optional_inner(info.annotation) is datetime:
            doc.append("ISO 8601 date-time string")
        if doc:
            out["doc"] = "; ".join(doc)
        has_default, default = _json_default(info)
        if has_default:
            if default is None and isinstance(avro_type, list) and "null" in avro_type:
                out["default"] = None
            elif isinstance(avro_type, list):
                # Avro requires a union's default to match its first branch.
                if default is not None and len(avro_type) == 2 and "null" in avro_type:
                    out["type"] = [t for t in avro_type if t != "null"] + ["null"]
                    out["default"] = default
            else:
                out["default"] = default
        return out

    def type(self, annotation: Any, enum_name: str) -> AvroSchema:
        annotation = _unannotate(annotation)
        origin = get_origin(annotation)
        if annotation in _PRIMITIVES:
            return _PRIMITIVES[annotation]
        if annotation is UUID:
            return {"type": "string", "logicalType": "uuid"}
        if annotation is datetime:
            return "string"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.record(annotation)
        if origin is Literal:
            return self.literal(get_args(annotation), enum_name)
        if origin in (Union, types.UnionType):
            return self.union(get_args(annotation), enum_name)
        if origin is dict:
            key_type, value_type = get_args(annotation)
            if _unannotate(key_type) is not str:
                raise TypeError(f"Avro maps need string keys, got {key_type!r}")
            return {"type": "map", "values": self.type(value_type, enum_name)}
        if origin in _SEQUENCES:
            args = get_args(annotation)
            variadic = origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)
            if not args or not variadic:
                raise TypeError(f"no Avro form for fixed-length or untyped {annotation!r}")
            return {"type": "array", "items": self.type(args[0], enum_name)}
        raise TypeError(f"no Avro form for {annotation!r}")

    def literal(self, values: tuple[Any, ...], enum_name: str) -> AvroSchema:
        if all(isinstance(v, str) for v in values):
            if all(_AVRO_NAME.fullmatch(v) for v in values) and len(set(values)) == len(values):
                reference = self.claim(enum_name, values)
                if reference is not None:
                    return reference
                return {
                    "type": "enum",
                    "name": enum_name,
                    "namespace": self.namespace,
                    "symbols": list(values),
                }
            return "string"
        if all(isinstance(v, bool) for v in values):
            return "boolean"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "long"
        raise TypeError(f"no Avro form for a Literal of mixed values {values!r}")

    def union(self, members: tuple[Any, ...], enum_name: str) -> AvroSchema:
        nullable = any(m is type(None) for m in members)
        branches = [self.type(m, enum_name) for m in members if m is not type(None)]
        flat: list[Any] = ["null"] if nullable else []
        for branch in branches:
            # Avro forbids a union directly inside a union, and a type twice in one union.
            for item in branch if isinstance(branch, list) else [branch]:
                if item not in flat:
                    flat.append(item)
        return flat[0] if len(flat) == 1 else flat


def _unannotate(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_string_type(avro_type: AvroSchema) -> bool:
    if isinstance(avro_type, list):
        return any(_is_string_type(t) for t in avro_type)
    return avro_type == "string"


def _optional_inner(annotation: Any) -> Any:
    """``X`` for ``X`` or ``X | None`` (metadata stripped); other unions are returned as is."""
    annotation = _unannotate(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        members = [m for m in get_args(annotation) if m is not type(None)]
        if len(members) == 1:
            return _unannotate(members[0])
    return annotation


def _string_literal_values(annotation: Any) -> list[str] | None:
    """The allowed values of a (possibly optional) ``Literal``, else None."""
    annotation = _optional_inner(annotation)
    if get_origin(annotation) is Literal:
        return [str(v) for v in get_args(annotation)]
    return None


def _json_default(info: FieldInfo) -> tuple[bool, Any]:
    """(True, default as it appears in JSON) when the field has a static default."""
    if info.is_required() or info.default_factory_takes_validated_data:
        return False, None
    default = info.get_default(call_default_factory=True)
    annotation: Any = info.annotation
    return True, TypeAdapter(annotation).dump_python(default, mode="json", by_alias=True)


def _dump(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files(
    topic_models: Mapping[str, Iterable[type[BaseModel]]] | None = None,
) -> dict[Path, str]:
    """Relative path -> file content, for every model on every topic."""
    topic_models = TOPIC_MODELS if topic_models is None else topic_models
    files: dict[Path, str] = {}
    for topic, models in topic_models.items():
        for model in models:
            base = Path(topic) / model.__name__
            files[base.with_name(base.name + JSON_SUFFIX)] = _dump(json_schema(model))
            files[base.with_name(base.name + AVRO_SUFFIX)] = _dump(avro_schema(model))
    return files


def _generated_files(out_dir: Path) -> set[Path]:
    """Files under ``out_dir`` that this module would own (other files are left alone)."""
    if not out_dir.is_dir():
        return set()
    return {
        p.relative_to(out_dir)
        for p in out_dir.rglob("*")
        if p.is_file() and (p.name.endswith(JSON_SUFFIX) or p.name.endswith(AVRO_SUFFIX))
    }


def write_all(out_dir: Path) -> list[Path]:
    """Write every topic's schema files under ``out_dir`` and delete stale generated ones
    (``*.schema.json``/``*.avsc`` of models no longer on a topic). Returns the paths written."""
    expected = expected_files()
    written: list[Path] = []
    for rel, content in sorted(expected.items()):
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    for rel in _generated_files(out_dir) - expected.keys():
        stale = out_dir / rel
        stale.unlink()
        if stale.parent != out_dir and not any(stale.parent.iterdir()):
            stale.parent.rmdir()
    return written


def check_all(out_dir: Path) -> list[str]:
    """Differences between ``out_dir`` and what ``write_all`` would write, one line each
    (``missing``, ``changed`` or ``extra`` and the path); empty when they agree."""
    expected = expected_files()
    present = _generated_files(out_dir)
    problems: list[str] = []
    for rel in sorted(expected.keys() | present):
        path = out_dir / rel
        if rel not in present:
            problems.append(f"missing: {path}")
        elif rel not in expected:
            problems.append(f"extra: {path}")
        elif path.read_text(encoding="utf-8") != expected[rel]:
            problems.append(f"changed: {path}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m waveline.shared.schemas",
        description="Generate (or check) the JSON Schema and Avro files of every topic.",
    )
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("schemas"))
    parser.add_argument(
        "--check", action="store_true", help="compare only; exit 1 listing the differences"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = check_all(args.out_dir)
        for line in problems:
            sys.stderr.write(line + "\n")
        if problems:
            sys.stderr.write("schemas are out of date: run `make schemas`\n")
            return 1
        return 0
    written = write_all(args.out_dir)
    sys.stdout.write(f"wrote {len(written)} schema files under {args.out_dir}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

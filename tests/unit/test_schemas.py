"""The committed ``schemas/`` files agree with the message models (docs/architecture.md).

Each model gets hand-built, realistic samples; every sample must survive the trip through
its committed Avro schema and validate against its committed JSON Schema.
"""

from __future__ import annotations

import importlib
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import validate
from pydantic import BaseModel

from waveline.shared.models.checks import CheckReported
from waveline.shared.models.deploys import DeployReported
from waveline.shared.models.dlq import DeadLetter
from waveline.shared.models.git import (
    AlignAuto,
    Evict,
    FastForward,
    GitEvent,
    IntroduceImages,
    PromoteWave,
    RollbackWave,
)
from waveline.shared.models.images import ImageRef, ImageSetAnnounced
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.models.promotions import PromotionEvent
from waveline.shared.models.pulls import PullRequestReported
from waveline.shared.models.registry import TOPIC_MODELS
from waveline.shared.models.waves import WaveStatus
from waveline.shared.schemas import avro_schema, check_all, main, write_all

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"

APP_SHA = "7d1043473d55bfa90e8530d35801d4e381bc69f0"
CFG_SHA = "3f9a1c0e5b7d2468ace13579bdf02468ace13579"
CFG_SHA_2 = "9b8a7c6d5e4f30211f2e3d4c5b6a79881726354a"
DIGEST_1 = "sha256:6a9ca693f6fff83215c00b653bcf2106124705ad538dc509373523fdd6cefdb4"
DIGEST_2 = "sha256:621f0ce9f70ad34dcc76d4b28c0e16ff30afa7f0318ec9ed85f9979255006a65"
AT = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)


def _id(n: int) -> UUID:
    return UUID(f"00000000-0000-4000-8000-{n:012d}")


IMAGES = {
    "service1": ImageRef(
        tag=f"docker.example.com/service1:{APP_SHA}",
        digest=f"docker.example.com/service1@{DIGEST_1}",
    ),
    "service2": ImageRef(
        tag=f"docker.example.com/service2:{APP_SHA}",
        digest=f"docker.example.com/service2@{DIGEST_2}",
    ),
}

SAMPLES: list[BaseModel] = [
    ImageSetAnnounced(
        pipeline="app",
        app_sha=APP_SHA,
        images=IMAGES,
        event_id=_id(1),
        received_at=AT,
        source="http",
        app_committed_at=AT,
    ),
    # What CI produces straight to Kafka: no event_id, no received_at.
    ImageSetAnnounced(pipeline="app", app_sha=APP_SHA, images={"service1": IMAGES["service1"]}),
    IntroduceImages(
        command_id=_id(2),
        repo="cfg-app",
        issued_at=AT,
        pipeline="app",
        wave="staging",
        app_sha=APP_SHA,
        images=IMAGES,
    ),
    PromoteWave(
        command_id=_id(3),
        repo="cfg-app",
        issued_at=AT,
        pipeline="app",
        from_wave="staging",
        to_wave="internal",
        app_sha=APP_SHA,
        deployed_sha=CFG_SHA,
    ),
    FastForward(command_id=_id(4), repo="cfg-app", issued_at=AT, sha=CFG_SHA),
    Evict(command_id=_id(5), repo="cfg-app", issued_at=AT, sha=CFG_SHA),
    RollbackWave(
        command_id=_id(6),
        repo="cfg-app",
        issued_at=AT,
        pipeline="app",
        wave="production",
        app_sha=APP_SHA,
        to_sha=CFG_SHA_2,
    ),
    AlignAuto(command_id=_id(7), repo="cfg-app", issued_at=AT),
    GitEvent(
        event_id=_id(8),
        command_id=_id(2),
        command_kind="introduce",
        repo="cfg-app",
        outcome="committed",
        branch="auto",
        sha=CFG_SHA,
        old_sha=CFG_SHA_2,
        replayed={CFG_SHA_2: CFG_SHA},
        trailers={
            "Autocommit-Pipeline": "app",
            "Autocommit-App-SHA": APP_SHA,
            "Autocommit-Target": "staging",
            "Autocommit-Reason": "new images published",
            "Autocommit-Event-Id": str(_id(2)),
        },
        pipeline="app",
        wave="staging",
        app_sha=APP_SHA,
        timings_ms={"fetch": 12.5, "commit": 3.0, "push": 41.25},
        at=AT,
    ),
    GitEvent(
        event_id=_id(9),
        command_id=_id(5),
        command_kind="evict",
        repo="cfg-app",
        outcome="failed",
        reason="push rejected: auto moved under the lease",
        at=AT,
    ),
    CheckReported(
        event_id=_id(10),
        repo="cfg-app",
        sha=CFG_SHA,
        context="ci/validate",
        state="success",
        kind="check_run",
        branches=("auto",),
        reported_at=AT,
    ),
    CheckReported(
        event_id=_id(11),
        repo="cfg-app",
        sha=CFG_SHA,
        context="ci/lint",
        state="pending",
        reported_at=AT,
        app="github-actions",
        user="github-actions[bot]",
    ),
    DeployReported(
        event_id=_id(12),
        app="staging-us",
        revision=CFG_SHA,
        phase="Succeeded",
        health="Healthy",
        sync="Synced",
        reported_at=AT,
    ),
    DeployReported(event_id=_id(13), app="prod-eu", revision=CFG_SHA, reported_at=AT),
    OperatorCommand(
        event_id=_id(14),
        pipeline="app",
        wave="production",
        action="rollback",
        to=APP_SHA,
        actor="alice",
        issued_at=AT,
    ),
    OperatorCommand(
        event_id=_id(15),
        pipeline="app",
        wave="production",
        action="approve",
        issued_at=AT,
        app_sha=APP_SHA,
    ),
    OperatorCommand(
        event_id=_id(27),
        pipeline="app",
        wave="production",
        action="release",
        issued_at=AT,
        app_sha=APP_SHA,
        hold_id=_id(28),
    ),
    WaveStatus(
        event_id=_id(16),
        pipeline="app",
        wave="staging",
        state="running",
        app_sha=APP_SHA,
        cfg_sha=CFG_SHA,
        at=AT,
        cfg_position=42,
    ),
    WaveStatus(
        event_id=_id(17),
        pipeline="app",
        wave="internal",
        state="failing",
        reason="internal-us: Degraded",
        at=AT,
    ),
    PromotionEvent(
        event_id=_id(18),
        promotion_id=_id(19),
        pipeline="app",
        from_wave="staging",
        to_wave="internal",
        app_sha=APP_SHA,
        images=IMAGES,
        cfg_sha=CFG_SHA,
        strategy="pull-request",
        status="committed",
        at=AT,
    ),
    PromotionEvent(
        event_id=_id(20),
        promotion_id=_id(21),
        pipeline="app",
        to_wave="staging",
        app_sha=APP_SHA,
        status="requested",
        at=AT,
    ),
    PromotionEvent(
        event_id=_id(40),
        promotion_id=_id(41),
        pipeline="app",
        from_wave="internal",
        to_wave="production",
        app_sha=APP_SHA,
        strategy="pull-request",
        status="opened",
        url="https://github.com/acme/cfg-app/pull/7",
        detail="pull request #7",
        at=AT,
    ),
    OperatorCommand(
        event_id=_id(42),
        pipeline="app",
        wave="production",
        action="result",
        actor="pipeline",
        promotion_id=_id(43),
        result="succeeded",
        detail="deployed by the external system",
        issued_at=AT,
    ),
    PullRequestReported(
        event_id=_id(44),
        repo="cfg-app",
        number=7,
        action="closed",
        state="closed",
        merged=True,
        head_ref="waveline/app/production",
        head_sha=CFG_SHA,
        base_ref="master",
        merge_sha=CFG_SHA,
        url="https://github.com/acme/cfg-app/pull/7",
        reported_at=AT,
    ),
    DeadLetter(
        event_id=_id(22),
        service="git-writer",
        source_topic="waveline.git.commands",
        partition=3,
        offset=1024,
        key="cfg-app",
        payload='{"kind": "introduce"}',
        error_code="git_failure",
        reason="push rejected twice",
        retriable=False,
        failed_at=AT,
    ),
    DeadLetter(
        event_id=_id(23),
        service="ingest",
        source_topic="waveline.images",
        payload="not json",
        error_code="invalid_message",
        reason="Expecting value: line 1 column 1",
        retriable=True,
        failed_at=AT,
    ),
]

TOPIC_OF: dict[type[BaseModel], str] = {
    model: topic for topic, models in TOPIC_MODELS.items() for model in models
}


def _first(model: type[BaseModel]) -> BaseModel:
    return next(s for s in SAMPLES if type(s) is model)


def _sample_id(sample: BaseModel) -> str:
    return type(sample).__name__


def _files(sample: BaseModel) -> tuple[Path, Path]:
    base = SCHEMAS / TOPIC_OF[type(sample)] / type(sample).__name__
    return base.with_name(base.name + ".avsc"), base.with_name(base.name + ".schema.json")


def _parsed_avsc(sample: BaseModel) -> Any:
    return parse_schema(json.loads(_files(sample)[0].read_text(encoding="utf-8")))


def _json_schema_errors(instance: Any, schema: dict[str, Any]) -> list[str]:
    """All validation errors, from ``jsonschema`` when installed, else from the subset below."""
    try:
        jsonschema = importlib.import_module("jsonschema")
    except ImportError:
        return _subset_errors(instance, schema, schema, "$")
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _subset_errors(value: Any, schema: dict[str, Any], root: dict[str, Any], at: str) -> list[str]:
    """The part of JSON Schema pydantic emits for these models: refs, anyOf, types, enums,
    required and additional properties, lengths, patterns. Formats are not checked."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return _subset_errors(value, root["$defs"][name], root, at)
    if "anyOf" in schema:
        branches = [_subset_errors(value, s, root, at) for s in schema["anyOf"]]
        return [] if any(not b for b in branches) else [f"{at}: matches no anyOf branch"]
    kind = schema.get("type")
    if kind is not None:
        # bool is an int in Python, not in JSON.
        is_bool = isinstance(value, bool)
        if not isinstance(value, _JSON_TYPES[kind]) or (is_bool and kind != "boolean"):
            return [f"{at}: {value!r} is not of type {kind}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{at}: {value!r} != {schema['const']!r}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1e9):
            errors.append(f"{at}: length {len(value)} out of bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{at}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                errors.append(f"{at}: missing required {key!r}")
        if not schema.get("minProperties", 0) <= len(value) <= schema.get("maxProperties", 1e9):
            errors.append(f"{at}: {len(value)} properties out of bounds")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += _subset_errors(item, properties[key], root, f"{at}.{key}")
            elif extra is False:
                errors.append(f"{at}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                errors += _subset_errors(item, extra, root, f"{at}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _subset_errors(item, schema["items"], root, f"{at}[{i}]")
    return errors


def test_committed_schemas_match_the_models(tmp_path: Path) -> None:
    write_all(tmp_path)
    generated = {
        p.relative_to(tmp_path): p.read_text(encoding="utf-8")
        for p in tmp_path.rglob("*")
        if p.is_file()
    }
    committed = {
        p.relative_to(SCHEMAS): p.read_text(encoding="utf-8")
        for p in SCHEMAS.rglob("*")
        if p.is_file() and p.name.endswith((".avsc", ".schema.json"))
    }
    differences = sorted(
        f"{'missing' if rel not in committed else 'extra' if rel not in generated else 'changed'}"
        f": schemas/{rel}"
        for rel in generated.keys() | committed.keys()
        if generated.get(rel) != committed.get(rel)
    )
    assert not differences, (
        "schemas/ does not match the message models; run `make schemas` and commit the result:\n"
        + "\n".join(differences)
    )
    assert check_all(SCHEMAS) == []


def test_every_model_has_a_sample() -> None:
    missing = set(TOPIC_OF) - {type(s) for s in SAMPLES}
    assert not missing, f"add samples for {sorted(m.__name__ for m in missing)}"


@pytest.mark.parametrize("sample", SAMPLES, ids=_sample_id)
def test_sample_round_trips_through_avro(sample: BaseModel) -> None:
    schema = _parsed_avsc(sample)
    document = sample.model_dump(mode="json")
    assert validate(document, schema, raise_errors=True)
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, document)
    buffer.seek(0)
    decoded = schemaless_reader(buffer, schema, None)
    assert type(sample).model_validate(decoded) == sample


@pytest.mark.parametrize("sample", SAMPLES, ids=_sample_id)
def test_sample_matches_its_json_schema(sample: BaseModel) -> None:
    schema = json.loads(_files(sample)[1].read_text(encoding="utf-8"))
    document = json.loads(sample.model_dump_json())
    assert _json_schema_errors(document, schema) == []


def test_json_schema_check_catches_a_bad_document() -> None:
    sample = _first(ImageSetAnnounced)
    schema = json.loads(_files(sample)[1].read_text(encoding="utf-8"))
    document = sample.model_dump(mode="json")
    del document["app_sha"]
    document["images"]["service1"]["Digest"] = 42
    document["colour"] = "blue"
    assert len(_json_schema_errors(document, schema)) >= 3


def _with(sample: BaseModel, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    document = sample.model_dump(mode="json")
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("sample", "path", "value"),
    [
        (_first(CheckReported), ("state",), 42),
        (_first(CheckReported), ("state",), "green"),
        (_first(CheckReported), ("branches",), "auto"),
        (_first(ImageSetAnnounced), ("images", "service1", "Tag"), 7),
        (_first(ImageSetAnnounced), ("event_id",), 12345),
        (_first(GitEvent), ("timings_ms", "push"), "slow"),
        (_first(DeadLetter), ("partition",), "three"),
        (_first(IntroduceImages), ("kind",), "promote"),
    ],
    ids=["enum-int", "enum-unknown", "array-str", "nested-int", "uuid-int", "map", "opt", "kind"],
)
def test_wrong_types_fail_avro_validation(
    sample: BaseModel, path: tuple[str, ...], value: Any
) -> None:
    schema = _parsed_avsc(sample)
    assert validate(sample.model_dump(mode="json"), schema, raise_errors=False)
    assert not validate(_with(sample, path, value), schema, raise_errors=False)


def test_named_types_are_defined_once_and_unrepresentable_literals_are_strings() -> None:
    class Pair(BaseModel):
        first: ImageRef
        second: ImageRef | None = None

    schema = avro_schema(Pair)
    first, second = schema["fields"]
    assert first["type"]["name"] == "ImageRef"
    assert second["type"] == ["null", "dev.waveline.ImageRef"]
    assert second["default"] is None
    parse_schema(schema)

    promotion = avro_schema(PromotionEvent)
    strategy = next(f for f in promotion["fields"] if f["name"] == "strategy")
    assert strategy["type"] == "string"  # "pull-request" is not an Avro enum symbol
    assert strategy["default"] == "commit"


def test_check_reports_missing_changed_and_extra_files(tmp_path: Path) -> None:
    assert main(["--check", str(tmp_path)]) == 1
    assert main([str(tmp_path)]) == 0
    assert check_all(tmp_path) == []
    changed = tmp_path / "waveline.checks" / "CheckReported.avsc"
    changed.write_text("{}\n", encoding="utf-8")
    missing = tmp_path / "waveline.dlq" / "DeadLetter.schema.json"
    missing.unlink()
    extra = tmp_path / "waveline.checks" / "Gone.avsc"
    extra.write_text("{}\n", encoding="utf-8")
    assert check_all(tmp_path) == [
        f"changed: {changed}",
        f"extra: {extra}",
        f"missing: {missing}",
    ]
    assert main(["--check", str(tmp_path)]) == 1
    write_all(tmp_path)
    assert check_all(tmp_path) == []
    assert not extra.exists()

"""``python -m waveline.cli.docs docs/asyncapi.json``: one AsyncAPI 3.0 document for the
FastStream brokers of every Kafka consumer (``make docs``).

The brokers are built and their subscribers registered exactly as ``waveline run`` does, but
nothing is started: the whole build is synchronous, so no connection to Kafka or Postgres can
be made. Settings are the built-in defaults rather than the environment, so the document (and
its topic names) is the same on every machine.

The consumers subscribe with raw ``KafkaMessage`` parameters (they validate the body
themselves), so FastStream only knows an empty payload for them; each such payload is replaced
with the JSON Schema of the models ``waveline.shared.models.registry`` puts on that topic.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from faststream.specification import AsyncAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import waveline
from waveline.cli.serve import consumer_for
from waveline.shared.config import Secrets, Settings, WavelineConfig, load_config
from waveline.shared.errors import ConfigError
from waveline.shared.models.registry import TOPIC_MODELS
from waveline.shared.runtime import bootstrap

CONSUMERS = ("git-writer", "status-tracker", "promoter", "notifier")
DEFAULT_CONFIG = Path("deploy/config/waveline.yaml")
_EMPTY_PAYLOAD = "#/components/schemas/EmptyPayload"
_SCHEMAS = "#/components/schemas/"
_MESSAGES = "#/components/messages/"


def build_document(
    settings: Settings | None = None, config: WavelineConfig | None = None
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document (as a JSON-ready dict) of all consumer services."""
    settings = settings or Settings.model_construct()
    # Subscribing reads no pipeline, so an empty config documents the same channels.
    config = config or WavelineConfig(repos={}, pipelines={})
    brokers = []
    for name in CONSUMERS:
        runtime = bootstrap(name, settings, config, Secrets())
        consumer_for(name, runtime).register()
        brokers.append(runtime.broker)
    spec = AsyncAPI(
        *brokers,
        title="Waveline",
        version=waveline.__version__,
        description="GitOps promotion engine: the Kafka topics each Waveline service consumes.",
        schema_version="3.0.0",
    ).to_specification()
    document: dict[str, Any] = json.loads(spec.to_json())
    _add_model_payloads(document, settings.topic_prefix)
    return document


def _add_model_payloads(document: dict[str, Any], prefix: str) -> None:
    """Point every empty payload on a known topic at that topic's message models."""
    components = document.setdefault("components", {})
    messages = components.get("messages", {})
    used: dict[type[BaseModel], None] = {}
    for channel in document.get("channels", {}).values():
        topic_models = TOPIC_MODELS.get(channel.get("address", "").removeprefix(prefix))
        if not topic_models:
            continue
        for reference in channel.get("messages", {}).values():
            message = messages.get(unquote(reference["$ref"].removeprefix(_MESSAGES)))
            if message is None or message.get("payload") != {"$ref": _EMPTY_PAYLOAD}:
                continue
            message["payload"] = _payload(topic_models)
            used.update(dict.fromkeys(topic_models))
    if not used:
        return
    _, definitions = models_json_schema(
        [(m, "validation") for m in used], by_alias=True, ref_template=_SCHEMAS + "{model}"
    )
    schemas = components.setdefault("schemas", {})
    schemas.update(definitions.get("$defs", {}))
    if _EMPTY_PAYLOAD not in json.dumps(document):
        schemas.pop("EmptyPayload", None)


def _payload(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    refs = [{"$ref": _SCHEMAS + m.__name__} for m in models]
    if len(refs) == 1:
        return refs[0]
    payload: dict[str, Any] = {"oneOf": refs}
    if all("kind" in m.model_fields for m in models):
        payload["discriminator"] = "kind"
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m waveline.cli.docs",
        description="Write the AsyncAPI 3.0 document of the Waveline services.",
    )
    parser.add_argument("out", type=Path, help="file to write, e.g. docs/asyncapi.json")
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"pipeline file, if present (default {DEFAULT_CONFIG})",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config) if args.config.is_file() else None
    except ConfigError as exc:
        print(f"waveline docs: {exc}", file=sys.stderr)
        return 2
    document = build_document(config=config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(document.get('channels', {}))} channels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

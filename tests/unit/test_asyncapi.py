"""``python -m waveline.cli.docs`` documents every consumer's topics without a broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from waveline.cli.docs import build_document, main
from waveline.shared.config import Settings

TOPICS = (
    "waveline.git.commands",
    "waveline.images",
    "waveline.checks",
    "waveline.deploys",
    "waveline.promotions",
    "waveline.git.events",
)


def _payload_of(document: dict[str, Any], address: str) -> Any:
    channel = next(c for c in document["channels"].values() if c["address"] == address)
    (reference,) = channel["messages"].values()
    name = reference["$ref"].removeprefix("#/components/messages/").replace("%20", " ")
    return document["components"]["messages"][name]["payload"]


def test_document_covers_every_consumed_topic(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "asyncapi.json"
    assert main([str(out), "--config", str(tmp_path / "absent.yaml")]) == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "Waveline"
    addresses = {c["address"] for c in document["channels"].values()}
    bindings = {c["bindings"]["kafka"]["topic"] for c in document["channels"].values()}
    for topic in TOPICS:
        assert topic in addresses, f"{topic} missing from channels {sorted(addresses)}"
        assert topic in bindings
    assert {op["action"] for op in document["operations"].values()} == {"receive"}


def test_payloads_are_the_topic_models() -> None:
    # An unreachable broker: generating the document must not try to connect.
    document = build_document(Settings(kafka_bootstrap="127.0.0.1:1"))
    schemas = document["components"]["schemas"]
    assert _payload_of(document, "waveline.images") == {
        "$ref": "#/components/schemas/ImageSetAnnounced"
    }
    commands = _payload_of(document, "waveline.git.commands")
    assert commands["discriminator"] == "kind"
    assert {r["$ref"].rsplit("/", 1)[1] for r in commands["oneOf"]} == {
        "IntroduceImages",
        "PromoteWave",
        "FastForward",
        "Evict",
        "RollbackWave",
        "AlignAuto",
    }
    assert set(schemas["ImageRef"]["properties"]) == {"Tag", "Digest"}
    assert "EmptyPayload" not in schemas
    assert "#/$defs/" not in json.dumps(document)

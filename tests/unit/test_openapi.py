"""The OpenAPI document covers exactly the routes the ingest app serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tests.support import make_config
from waveline.services.ingest.app import create_app
from waveline.services.ingest.openapi import document
from waveline.shared.config import Secrets, Settings
from waveline.shared.runtime import bootstrap


def routes(tmp_path: Path) -> set[tuple[str, str]]:
    runtime = bootstrap(
        "ingest",
        Settings(kafka_bootstrap="127.0.0.1:1"),
        make_config((tmp_path / "x.git").as_uri()),
        Secrets(ci_token=SecretStr("x")),
    )
    app = create_app(runtime)
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info: Any = route.resource.get_info() if route.resource else {}
        path = str(info.get("path") or info.get("formatter", ""))
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)
        found.add((route.method.lower(), path))
    return found


def test_every_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    doc = document()
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == routes(tmp_path)


def test_document_shape() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    body = doc["paths"]["/v1/images"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/ImageSetAnnounced"}
    announce = doc["components"]["schemas"]["ImageSetAnnounced"]
    assert set(announce["required"]) >= {"pipeline", "app_sha", "images"}
    assert "event_id" not in announce["properties"]
    refs = re.findall(r"#/components/schemas/(\w+)", str(doc))
    assert set(refs) <= set(doc["components"]["schemas"])

"""The OpenAPI document covers exactly the routes the ingest app serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from tests.support import make_config
from waveline.services.ingest.app import create_app
from waveline.services.ingest.openapi import document
from waveline.services.ingest.payloads import ArgoReport, PromotionResult, Rollback
from waveline.shared.config import Secrets, Settings
from waveline.shared.models.images import ImageRef
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


def test_every_operation_documents_what_the_front_door_answers() -> None:
    for path, operations in document()["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert "415" in codes, (method, path)  # any request with a Content-Encoding
            if "requestBody" in operation:
                assert {"400", "408", "413", "422"} <= codes, (method, path)
                assert any(c.startswith("2") for c in codes), (method, path)


def test_request_bodies_are_the_models_the_handlers_validate() -> None:
    paths = document()["paths"]

    def body(path: str) -> Any:
        return paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]

    wave = "/v1/pipelines/{pipeline}/waves/{wave}"
    assert body(f"{wave}/promotions/{{promotion}}/result") == PromotionResult.model_json_schema()
    assert body(f"{wave}/rollback") == Rollback.model_json_schema()
    assert body("/v1/webhooks/argocd") == ArgoReport.model_json_schema()
    assert paths[f"{wave}/{{action}}"]["post"]["requestBody"]["required"] is False


def test_documented_image_patterns_agree_with_the_model() -> None:
    """A body the document's patterns allow is one ImageSetAnnounced takes, and back."""
    ref = document()["components"]["schemas"]["ImageRef"]["properties"]
    tag, digest = re.compile(ref["Tag"]["pattern"]), re.compile(ref["Digest"]["pattern"])
    sha = "6a9ca693f6fff83215c00b653bcf2106124705ad538dc509373523fdd6cefdb4"
    cases = [
        ("registry.example.com:5000/team/api:1.2.3", f"sha256:{sha}"),
        ("api:v1", f"api@sha256:{sha}"),
        ("Api:v1", f"sha256:{sha}"),
        ("api:-v1", f"sha256:{sha}"),
        ("api", f"sha256:{sha}"),
        ("api:v1", f"sha256:{sha[:-1]}"),
        ("a//b:v1", f"sha256:{sha}"),
        ("api:v1", f"API@sha256:{sha}"),
    ]
    for tag_ref, digest_ref in cases:
        documented = bool(tag.match(tag_ref) and digest.match(digest_ref))
        try:
            ImageRef.model_validate({"Tag": tag_ref, "Digest": digest_ref})
            taken = True
        except ValidationError:
            taken = False
        assert documented == taken, (tag_ref, digest_ref)

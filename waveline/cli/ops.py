"""CLI commands that talk to a running Waveline: publish, status, approve/hold/release/rollback.

They use the HTTP API of ingest (``WAVELINE_URL``, default ``http://127.0.0.1:8080``) with the
tokens from the environment, or — for ``publish --kafka`` — produce straight to
``waveline.images`` with the same document.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from waveline.cli.status import format_status as format_status  # noqa: PLC0414 (re-export)
from waveline.shared.models.images import ImageSetAnnounced


class CliError(Exception):
    """A user-facing failure: printed, exit code 1."""


def base_url() -> str:
    port = os.environ.get("WAVELINE_HTTP_PORT", "8080")
    return os.environ.get("WAVELINE_URL", f"http://127.0.0.1:{port}").rstrip("/")


def _token(name: str) -> str:
    token = os.environ.get(name)
    if not token:
        raise CliError(f"set {name} to authenticate")
    return token


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib would send the request again, ``Authorization``
    header included, to whatever host the ``Location`` names. A 3xx then surfaces as an
    ``HTTPError`` that ``request`` turns into a clear refusal."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# Every CLI request carries a token, so none follows a redirect.
_OPENER = urllib.request.build_opener(_RefuseRedirects)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def request(method: str, path: str, token_env: str, body: Any = None) -> tuple[int, Any]:
    """``method`` ``path`` on Waveline's API with the token from ``token_env``; the status
    and the JSON answer. A redirect is never followed (the token would go with it to
    wherever it points): it is a ``CliError`` naming where it pointed."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(  # noqa: S310 (the URL is the operator's own Waveline)
        base_url() + path,
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {_token(token_env)}",
            "Content-Type": "application/json",
        },
    )
    try:
        with _OPENER.open(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            location = exc.headers.get("Location") or ""
            target = _origin(urllib.parse.urljoin(base_url() + path, location))
            exc.close()
            raise CliError(
                f"{method} {path}: Waveline at {_origin(base_url())} answered HTTP {exc.code},"
                f" redirecting to {target}; not following a redirect with your token"
                " (set WAVELINE_URL to the address that answers itself)"
            ) from None
        detail = exc.read().decode("utf-8", "replace")
        raise CliError(f"{method} {path}: HTTP {exc.code}: {detail}") from exc
    except urllib.error.URLError as exc:
        raise CliError(f"cannot reach Waveline at {base_url()}: {exc.reason}") from exc


def image_set_document(
    pipeline: str,
    app_sha: str,
    images: list[str],
    file: Path | None,
    app_committed_at: str | None = None,
) -> dict[str, Any]:
    """Build and validate the ``waveline.images`` document from flags or a seed-001 file
    (``app_committed_at``: the app commit's time, for DORA's lead time)."""
    found: dict[str, Any] = {}
    if file is not None:
        loaded = json.loads(file.read_text())
        if not isinstance(loaded, dict):
            raise CliError(f"{file}: expected a JSON object of services")
        found.update(loaded)
    for item in images:
        service, sep, ref = item.partition("=")
        tag, at, digest = ref.partition("@")
        if not sep or not at:
            raise CliError(f"--image {item!r}: expected service=registry/repo:tag@sha256:…")
        found[service] = {"Tag": tag, "Digest": digest}
    doc: dict[str, Any] = {"pipeline": pipeline, "app_sha": app_sha, "images": found}
    if app_committed_at:
        doc["app_committed_at"] = app_committed_at
    try:
        ImageSetAnnounced.model_validate(doc)
    except ValueError as exc:
        raise CliError(f"invalid image set: {exc}") from exc
    return doc

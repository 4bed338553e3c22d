"""Request bodies: the one way every ingest handler gets its input.

In order, each refusal before any further work: a ``Content-Encoding`` other than
``identity`` is 415 (the server never inflates a body: ``auto_decompress`` is off, see
``server.py``); a body over ``WAVELINE_HTTP_MAX_BODY`` is 413; a body not received within
``WAVELINE_HTTP_BODY_TIMEOUT_S`` is 408; bytes that are not UTF-8 JSON, or JSON that is not
an object, are 400 ``malformed``; JSON nested deeper than ``jsonlimits.MAX_DEPTH`` is 400
``too_deep`` (checked on the bytes, before parsing); a field of the wrong type or value is
422 ``invalid_field`` with the field's path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn, TypeVar

from aiohttp import hdrs, web
from pydantic import BaseModel, ValidationError

from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.jsonlimits import MAX_DEPTH, too_deep
from waveline.services.ingest.responses import ApiError, validation_detail

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def refuse_encoded(request: web.Request) -> None:
    """415 when the request declares a content coding other than ``identity``."""
    codings = [
        c.strip().lower()
        for value in request.headers.getall(hdrs.CONTENT_ENCODING, [])
        for c in value.split(",")
    ]
    if any(c not in {"", "identity"} for c in codings):
        raise ApiError(
            415, "unsupported_encoding", "send the body uncompressed (no Content-Encoding)"
        )


@web.middleware
async def encodings(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse encoded bodies before routing, authentication or reading."""
    refuse_encoded(request)
    return await handler(request)


async def read_body(request: web.Request) -> bytes:
    """The raw body, within the size limit and the body deadline."""
    settings = IngestContext.of(request).runtime.settings
    limit = settings.http_max_body
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"body exceeds {limit} bytes")
    try:
        async with asyncio.timeout(settings.http_body_timeout_s):
            return await request.read()
    except TimeoutError as exc:
        raise ApiError(
            408, "timeout", f"body not received within {settings.http_body_timeout_s:g} s"
        ) from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, "too_large", f"body exceeds {limit} bytes") from exc


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _malformed(why: str) -> ApiError:
    return ApiError(400, "malformed", f"body is not a JSON object: {why}")


def parse_json(body: bytes, *, optional: bool = False) -> dict[str, Any]:
    """The JSON object in ``body``; ``{}`` for an empty body when ``optional``."""
    if optional and not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed("not UTF-8") from exc
    if too_deep(body):
        raise ApiError(400, "too_deep", f"JSON nests deeper than {MAX_DEPTH} levels")
    try:
        doc = json.loads(text, parse_constant=_no_constants)
    except RecursionError as exc:  # not reachable past too_deep; kept as a backstop
        raise ApiError(400, "too_deep", f"JSON nests deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers past 4300 digits
        raise _malformed(str(exc)) from exc
    if not isinstance(doc, dict):
        raise _malformed(f"got a JSON {_JSON_TYPES.get(type(doc), 'value')}")
    return doc


def validate(model: type[M], doc: Mapping[str, Any]) -> M:
    """``model`` from ``doc``; 422 naming each bad field (never echoing the input)."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ApiError(422, "invalid_field", validation_detail(exc)) from exc


async def read_json(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    return parse_json(await read_body(request), optional=optional)


async def read_model(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    """Read, parse and validate the body as ``model`` (an empty body is ``{}`` if
    ``optional``)."""
    return validate(model, await read_json(request, optional=optional))

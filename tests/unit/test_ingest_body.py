"""The body rules of ingest without a server: nesting depth on raw bytes, and what
``parse_json`` refuses."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from waveline.services.ingest.body import parse_json
from waveline.services.ingest.jsonlimits import MAX_DEPTH, too_deep
from waveline.services.ingest.responses import ApiError


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


LEAVES: list[Any] = ['[{"', "]}\\", '\\"[', "é[", 7, None, True, "\\\\]", [], {}]


def random_doc(rnd: random.Random, levels: int) -> Any:
    """A document about ``levels`` deep: a chain of containers with shallow siblings.
    Strings full of brackets, quotes and escapes (keys too) must not count."""
    if levels == 0:
        return rnd.choice(LEAVES)
    items = [random_doc(rnd, levels - 1)]
    items += [rnd.choice([rnd.choice(LEAVES), [rnd.choice(LEAVES)]]) for _ in range(2)]
    rnd.shuffle(items)
    if rnd.random() < 0.5:
        return items
    return {f'k{i}"[{{': item for i, item in enumerate(items)}


def test_depth_on_bytes_matches_the_parsed_depth() -> None:
    rnd = random.Random(14)
    for _ in range(3000):
        doc = random_doc(rnd, rnd.randint(0, 40))
        body = json.dumps(doc, ensure_ascii=rnd.random() < 0.5).encode()
        for limit in (1, 5, MAX_DEPTH):
            assert too_deep(body, limit) == (depth(doc) > limit), (body[:200], limit)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 250_000,  # deep
        b'"' + b"[" * 250_000,  # one unterminated string: nothing inside counts
        b'"\\"' * 80_000,  # many quotes, each escaped: a naive regex retries from each one
        b"[1," * 80_000,
    ],
)
def test_depth_check_is_fast_on_hostile_bodies(body: bytes) -> None:
    started = time.perf_counter()
    too_deep(body)
    assert time.perf_counter() - started < 0.1


def refused(body: bytes) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_json(body)
    return caught.value


def test_parse_json_refuses_what_json_cannot_carry() -> None:
    assert refused(b"[" * 40 + b"]" * 40).error == "too_deep"
    assert refused(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}").error == "too_deep"
    for body in (b"{nope", b'{"a": NaN}', b"\xff{}", b"[]", b'"x"'):
        error = refused(body)
        assert (error.status_code, error.error) == (400, "malformed"), body
    assert parse_json(b'{"a": [[["\\ud83d\\ude00"]]]}') == {"a": [[["\U0001f600"]]]}
    assert parse_json(b" ", optional=True) == {}
    assert refused(b"").error == "malformed"

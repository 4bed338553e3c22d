"""How deeply a JSON text nests, judged on its raw bytes before any parser sees it.

Python's ``json`` recurses once per level: a body of a few thousand ``[`` raises
``RecursionError`` (and costs the work up to there). Ingest's documents nest a few levels, so
anything deeper than ``MAX_DEPTH`` is refused before parsing. The check is linear in the body
and runs in C but for a final tally over the brackets alone; brackets inside strings do not
count. It assumes UTF-8 (RFC 8259), where ``"``, ``\\`` and brackets never occur inside a
multi-byte character.
"""

from __future__ import annotations

import re

MAX_DEPTH = 32

# A string, escapes included. An unterminated one runs to the end of the body, so a body of
# many unclosed quotes is still one linear pass (re would otherwise retry from each quote).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when some container in ``body`` sits more than ``limit`` levels deep.

    Exact for valid JSON; for invalid JSON the answer does not matter (the parser refuses it).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # fewer openers than the limit: nothing can nest deeper
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        depth += 1 if byte in _OPENERS else -1
        if depth > limit:
            return True
    return False

"""HMAC signatures of webhook bodies, compatible with Flux's ``generic-hmac`` provider.

Flux's notification-controller signs the request body with the ``token`` of the provider's
secret and sends ``X-Signature: <hash-function>=<hex HMAC>``, with ``sha256`` as the hash
function. Waveline does the same, so a receiver written for Flux verifies Waveline's calls
unchanged, and the other way round. A target whose secret sets ``signing_key`` signs with that
key instead, and its token is only the bearer credential (target.py).

The HMAC is over the exact body bytes: a receiver must verify the raw bytes it read, before
parsing (re-serializing JSON changes the bytes).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature"
ALGORITHM = "sha256"

# What a receiver accepts: the functions Flux documents for verification. Waveline itself
# only ever signs with sha256.
_DIGESTS: dict[str, Callable[..., Any]] = {
    "sha224": hashlib.sha224,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
_HEADER = re.compile(r"^(sha224|sha256|sha384|sha512)=([0-9a-fA-F]+)$")


def sign(body: bytes, key: str) -> str:
    """``sha256=<hex HMAC-SHA256 of body keyed by key>``, the ``X-Signature`` value.

    ``key`` is the target's signing key (else its token), UTF-8 encoded. An empty key is
    refused: it would produce a signature anyone can forge.
    """
    if not key:
        raise ValueError("the signing key must not be empty")
    digest = hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"{ALGORITHM}={digest}"


def verify(body: bytes, key: str, header: str | None) -> bool:
    """Whether ``header`` (an ``X-Signature`` value) is a valid HMAC of ``body`` under ``key``.

    Accepts ``sha224``, ``sha256``, ``sha384`` and ``sha512`` as Flux receivers do; compares in
    constant time. Returns ``False`` (never raises) for a missing or malformed header or an
    empty key.
    """
    if not key or not header:
        return False
    match = _HEADER.fullmatch(header.strip())
    if match is None:
        return False
    algorithm, received = match.groups()
    expected = hmac.new(key.encode("utf-8"), body, _DIGESTS[algorithm]).hexdigest()
    # Both sides are ASCII hex here, so compare_digest's ASCII-only rule for str holds.
    return hmac.compare_digest(expected, received.lower())

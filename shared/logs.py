"""Process logging: one format for every service, and a filter that masks secret values.

Secrets are ``SecretStr`` everywhere, so they should never reach a log record; the filter is
the second line of defence for text we do not control (library messages, URLs).
"""

from __future__ import annotations

import base64
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BaseModel, SecretBytes, SecretStr

if TYPE_CHECKING:
    from waveline.shared.config import Secrets, Settings, WavelineConfig

_MASK = "***"
# The filter ignores values shorter than this (masking them would garble every line).
_MIN_SECRET = 4
# Pieces cut out of a secret (a line of a key, a field of a webhook secret's YAML) shorter
# than this are not credentials on their own; masking them would garble messages.
_MIN_PIECE = 6
# Webhook secrets nest YAML in YAML (``headers``); deeper than this is not a secret's shape.
_MAX_DEPTH = 4


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = message
        for secret in self._secrets:
            redacted = redacted.replace(secret, _MASK)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_text:
            for secret in self._secrets:
                record.exc_text = record.exc_text.replace(secret, _MASK)
        return True


# Libraries that log every failed attempt while a dependency is away (aiokafka's connection
# errors, faststream's "Kafka error occurred" every 5 s per consumer, with a traceback).
QUIETED = ("aiokafka", "faststream", "waveline.faststream")


class RepeatFilter(logging.Filter):
    """Lets through one record per (logger, message template) per ``window_s`` from the
    libraries in ``QUIETED``; the next one that passes says how many were held back. During
    a broker outage a service then logs a line per kind of failure a minute, not thousands.
    Waveline's own code logs once per state change already and is left alone."""

    def __init__(self, window_s: float = 60.0, prefixes: Iterable[str] = QUIETED) -> None:
        super().__init__()
        self.window_s = window_s
        self._prefixes = tuple(prefixes)
        # (logger, template) -> (last time let through, records held back since). Bounded:
        # the key space is the libraries' message templates.
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefixes):
            return True
        key = (record.name, str(record.msg))
        last, held = self._seen.get(key, (float("-inf"), 0))
        if record.created - last < self.window_s:
            self._seen[key] = (last, held + 1)
            return False
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[key] = (record.created, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.window_s:g} s)"
        return True


def setup_logging(service: str, level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
    )
    handler.addFilter(RepeatFilter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in QUIETED:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def secret_values(
    settings: Settings,
    secrets: Secrets,
    config: WavelineConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Every secret value a process holds, and every piece of one that a message may quote
    on its own, for ``setup_logging``'s filter:

    - every ``SecretStr`` (or ``SecretBytes``) anywhere in ``settings`` and ``secrets``
      (nested models, maps and lists included), so a secret setting added later is covered
      without touching this function;
    - the value of every environment variable ``config`` names in a field ending in ``_env``
      (git tokens, SSH keys, forge tokens, webhook secrets, scoped tokens, app keys);
    - for each value, what ``secret_pieces`` cuts out of it: URL passwords, the lines of a
      key, the values of a YAML map;
    - the password of any URL among the plain settings.
    """
    source = os.environ if env is None else env
    values = [*_secret_strings(settings), *_secret_strings(secrets)]
    if config is not None:
        values += [v for name in sorted(named_env_vars(config)) if (v := source.get(name))]
    found: set[str] = set()
    for value in values:
        found.update(secret_pieces(value))
    for name in type(settings).model_fields:
        plain = getattr(settings, name)
        if isinstance(plain, str) and "://" in plain:
            found.update(_url_pieces(plain))
    return sorted(s for s in found if len(s) >= _MIN_SECRET)


def named_env_vars(config: BaseModel) -> set[str]:
    """The environment variables ``config`` names: every string field ending in ``_env``,
    at any depth. The config names only secrets that way (README.md, Configuration)."""
    names: set[str] = set()
    for node in _walk(config):
        if isinstance(node, BaseModel):
            for field in type(node).model_fields:
                value = getattr(node, field)
                if field.endswith("_env") and isinstance(value, str) and value:
                    names.add(value)
    return names


def secret_pieces(value: str, depth: int = 0) -> set[str]:
    """``value`` and the parts of it a message may quote alone.

    - a URL's password (as written and percent-decoded), ``user:password`` and its base64
      (what HTTP Basic sends);
    - every line of a multi-line value (an SSH or TLS private key), except ``-----BEGIN``
      and ``-----END`` lines, which are public;
    - every value of a YAML mapping (a webhook secret: address, proxy, token, headers and
      whatever key it gains), recursively, each cut up the same way; of a URL value, its
      path and query too (Slack and Teams keep their credential there), not its origin.
    """
    pieces = {value, value.strip()}
    pieces.update(_url_pieces(value))
    stripped = value.strip()
    if "\n" in stripped:
        for raw in stripped.splitlines():
            line = raw.strip()
            if len(line) >= _MIN_PIECE and not line.startswith("-----"):
                pieces.add(line)
    if depth < _MAX_DEPTH and ("\n" in stripped or ":" in stripped):
        for scalar in _yaml_scalars(stripped):
            if len(scalar) >= _MIN_PIECE:
                pieces.update(secret_pieces(scalar, depth + 1))
            parts = urlsplit(scalar.strip()) if "://" in scalar else None
            if parts is not None and parts.netloc:
                tail = parts.path + (f"?{parts.query}" if parts.query else "")
                if len(tail) >= _MIN_PIECE:
                    pieces.add(tail)
    return {p for p in pieces if p}


def _url_pieces(value: str) -> set[str]:
    text = value.strip()
    if "://" not in text or any(c.isspace() for c in text):
        return set()
    try:
        parts = urlsplit(text)
        password = parts.password
        username = parts.username
    except ValueError:
        return set()
    if not password:
        return set()
    pieces = {password, unquote(password)}
    pair = f"{unquote(username or '')}:{unquote(password)}"
    pieces.update({pair, base64.b64encode(pair.encode()).decode("ascii")})
    pieces.add(parts.netloc.rpartition("@")[0])
    return {p for p in pieces if len(p) >= _MIN_SECRET}


def _yaml_scalars(text: str) -> list[str]:
    """The string values of ``text`` read as a YAML mapping (none when it is not one)."""
    try:
        # BaseLoader: every scalar stays the string written, and no object is built.
        loaded = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506
    except yaml.YAMLError:
        return []
    if not isinstance(loaded, dict):
        return []
    return list(_walk_values(loaded))


def _walk_values(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for item in node.values():
            yield from _walk_values(item)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_values(item)


def _secret_strings(root: Any) -> Iterator[str]:
    for node in _walk(root):
        if isinstance(node, SecretStr):
            yield node.get_secret_value()
        elif isinstance(node, SecretBytes):
            yield node.get_secret_value().decode("utf-8", "replace")


def _walk(node: Any, depth: int = 0) -> Iterator[Any]:
    """``node`` and everything in it: model fields, map values, sequence items."""
    yield node
    if depth > 16:
        return
    if isinstance(node, BaseModel):
        children: Iterable[Any] = (getattr(node, f) for f in type(node).model_fields)
    elif isinstance(node, Mapping):
        children = node.values()
    elif isinstance(node, list | tuple | set | frozenset):
        children = node
    else:
        return
    for child in children:
        yield from _walk(child, depth + 1)

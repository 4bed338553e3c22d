"""Process logging: one format for every service, and a filter that masks secret values.

Secrets are ``SecretStr`` everywhere, so they should never reach a log record; the filter is
the second line of defence for text we do not control (library messages, URLs).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from waveline.shared.config import Secrets, Settings

_MASK = "***"


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


def secret_values(settings: Settings, secrets: Secrets) -> list[str]:
    """Every secret value a process holds, for ``setup_logging``'s filter."""
    held = [
        secrets.ci_token,
        secrets.github_webhook_secret,
        secrets.argocd_token,
        secrets.operator_token,
        settings.database_url,
        *secrets.named.values(),
    ]
    return [s.get_secret_value() for s in held if s is not None]

"""Autocommit trailers: written on every automatic commit, parsed to rebuild state.

Compatible with ``git interpret-trailers``: a final paragraph of ``Key: value`` lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PIPELINE = "Autocommit-Pipeline"
APP_SHA = "Autocommit-App-SHA"
TARGET = "Autocommit-Target"
REASON = "Autocommit-Reason"
EVENT_ID = "Autocommit-Event-Id"
ACTION = "Autocommit-Action"
SOURCE = "Autocommit-Source"
# The attempt number of an image set's introduction retried after an eviction (2, 3, ...);
# the first attempt carries none (docs/gates.md, Retry after eviction).
ATTEMPT = "Waveline-Attempt"

_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*): ?(.*)$")


@dataclass(frozen=True)
class Trailers:
    values: dict[str, str]

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    @property
    def event_id(self) -> str | None:
        return self.values.get(EVENT_ID)

    @property
    def attempt(self) -> int:
        """The attempt number (1 when the trailer is absent or not a positive number)."""
        raw = self.values.get(ATTEMPT, "")
        return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def format_message(subject: str, body: str, trailers: dict[str, str]) -> str:
    for key, value in trailers.items():
        if "\n" in value or "\n" in key:
            raise ValueError(f"trailer {key!r} must be a single line")
    parts = [subject.strip()]
    if body.strip():
        parts.append(body.strip())
    parts.append("\n".join(f"{k}: {v}" for k, v in trailers.items()))
    return "\n\n".join(parts) + "\n"


def parse(message: str) -> Trailers:
    """Trailers of the last paragraph; empty when that paragraph is not all trailers."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return Trailers({})
    values: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            return Trailers({})
        values[match.group(1)] = match.group(2).strip()
    return Trailers(values)

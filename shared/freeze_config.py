"""Freeze windows in the pipeline file (docs/gates.md, Freeze windows): when no promotion into
a wave starts.

``PipelineConfig.freeze`` (``PipelineFreeze``) applies to every wave of the pipeline,
``WaveConfig.freeze`` (``FreezeWindows``) to that wave only; a wave is frozen while any of
the two has a window in force (``services/promoter/freeze.py`` decides it). Bad values are
refused when the file is loaded, the message naming the field (``load_config`` turns them
into a ``ConfigError``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

# The macros croniter knows, except @reboot (no time at all).
_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
# A longer window is a permanent freeze: say so with a manual freeze (it has a reason and
# an actor, and `waveline unfreeze` ends it) rather than a window.
MAX_WINDOW = timedelta(days=31)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RecurringWindow(_Model):
    """A window opening at each time ``cron`` names (five fields, or @daily and the like) in
    ``timezone``, lasting ``duration`` of elapsed time (a window across a DST change lasts
    as long as any other)."""

    cron: str
    duration: timedelta
    timezone: str = "UTC"
    reason: str | None = Field(default=None, max_length=200)

    @field_validator("cron")
    @classmethod
    def _cron(cls, expr: str) -> str:
        expr = " ".join(expr.split())
        fields = expr.split(" ")
        if expr in _MACROS or (len(fields) == 5 and croniter.is_valid(expr)):
            return expr
        raise ValueError(
            f"invalid cron expression {expr!r}: five fields (minute hour day-of-month month"
            " day-of-week), e.g. '0 18 * * FRI', or @daily/@weekly/@monthly/@yearly/@hourly"
        )

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        from waveline.shared.config import parse_duration  # config imports this module

        duration = parse_duration(value)
        if not timedelta(0) < duration <= MAX_WINDOW:
            raise ValueError(
                f"duration {value!r} must be more than 0 and at most 31 days"
                " (use a manual freeze, `waveline freeze`, for longer)"
            )
        return duration

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {name!r}: an IANA name such as 'Europe/Paris' or 'UTC'"
            ) from exc
        return name

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class FreezeRange(_Model):
    """A one-off freeze from ``start`` to ``end`` (ISO 8601 times with their UTC offset,
    e.g. ``2026-12-23T18:00:00+01:00``); ``end`` is excluded."""

    start: AwareDatetime
    end: AwareDatetime
    reason: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _ordered(self) -> FreezeRange:
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start")
        return self


class FreezeWindows(_Model):
    """A wave's own windows (``waves[].freeze``)."""

    windows: tuple[RecurringWindow, ...] = ()
    ranges: tuple[FreezeRange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.windows or self.ranges)


class PipelineFreeze(FreezeWindows):
    """The pipeline's windows (``freeze``), for every wave, and whether introducing a new
    image set into the first wave stops during a freeze too."""

    # Default "frozen": the first wave runs on real clusters as much as any other, and a
    # freeze (a release weekend, an incident) is about nothing new reaching them. A team
    # whose first wave is a sandbox that should keep taking CI's builds says "allowed".
    introductions: Literal["frozen", "allowed"] = "frozen"

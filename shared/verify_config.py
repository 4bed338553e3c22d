"""Config of a wave's verifications (docs/gates.md, Verification): checks run after the wave
runs a set, before its bake counts as passed.

Two kinds: an HTTP check (retried ``attempts`` times every ``interval`` until one passes) and
a Prometheus instant query (evaluated ``count`` times every ``interval``; more than
``failure_limit`` failed measurements fail it, like an Argo Rollouts analysis). Conditions are
a tiny declarative form (an operator and a value), never evaluated code. Secrets (header
values, the Prometheus token) are named by environment variable; the file never holds one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Op = Literal["==", "!=", "<", "<=", ">", ">="]
Scalar = bool | int | float | str | None

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _duration(value: Any) -> Any:
    """``90s``, ``10m``, ``1h30m`` or seconds (the forms shared/config.py takes)."""
    if isinstance(value, str) and not value.strip().startswith("P"):
        found = _DURATION.fullmatch(value.strip())
        if not value.strip() or found is None:
            raise ValueError(f"invalid duration {value!r}: use forms like 90s, 10m, 1h30m")
        hours, minutes, seconds = (int(g or 0) for g in found.groups())
        return timedelta(hours=hours, minutes=minutes, seconds=seconds)
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Condition(_Frozen):
    """``value_seen <op> value``. ``==``/``!=`` compare any JSON value (a boolean equals only
    a boolean); the orderings need numbers on both sides."""

    op: Op = "=="
    value: Scalar

    @model_validator(mode="after")
    def _ordered_numbers(self) -> Condition:
        if self.op not in ("==", "!=") and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float)
        ):
            raise ValueError(f"condition {self.op}: the value must be a number")
        return self

    def describe(self) -> str:
        return f"{self.op} {_show(self.value)}"


def _show(value: Scalar) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value) if isinstance(value, str) else str(value)


class PrometheusServer(_Frozen):
    """A Prometheus HTTP API (``url`` up to, not including, ``/api/v1``); ``token_env``
    names the variable holding a bearer token, if it needs one."""

    url: str
    token_env: str | None = Field(default=None, pattern=_ENV.pattern)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError("prometheus url must be an http:// or https:// address")
        return url.rstrip("/")


class HttpCheck(_Frozen):
    """A request whose answer must have ``expect_status`` and, when ``field`` is given, a
    JSON body whose field (dotted path, list items by index: ``items.0.ready``) satisfies
    ``condition`` (``equals: X`` is short for ``condition: {op: "==", value: X}``)."""

    url: str
    method: Literal["GET", "HEAD", "POST", "PUT"] = "GET"
    headers: dict[str, str] = {}
    # header name -> the environment variable holding its whole value (``Bearer ...``)
    secret_headers: dict[str, str] = {}
    body: str | None = None
    expect_status: int = Field(default=200, ge=100, le=599)
    field: str | None = Field(default=None, min_length=1)
    condition: Condition | None = None
    timeout: timedelta = timedelta(seconds=10)

    @model_validator(mode="before")
    @classmethod
    def _equals(cls, data: Any) -> Any:
        if isinstance(data, dict) and "equals" in data:
            if "condition" in data:
                raise ValueError("give equals or condition, not both")
            rest = {k: v for k, v in data.items() if k != "equals"}
            return rest | {"condition": {"op": "==", "value": data["equals"]}}
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError("url must be an http:// or https:// address")
        return url

    @field_validator("headers", "secret_headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER.fullmatch(name) or "\n" in value or "\r" in value:
                raise ValueError(f"invalid header {name!r}")
        return headers

    @field_validator("secret_headers")
    @classmethod
    def _env_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, env in headers.items():
            if not _ENV.fullmatch(env):
                raise ValueError(f"secret_headers.{name}: {env!r} is not an environment name")
        return headers

    @field_validator("timeout", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return _duration(value)

    @model_validator(mode="after")
    def _field_and_condition(self) -> HttpCheck:
        if (self.field is None) != (self.condition is None):
            raise ValueError("field and condition (or equals) go together")
        if timedelta(0) >= self.timeout or self.timeout > timedelta(minutes=5):
            raise ValueError("timeout must be greater than 0 and at most 5m")
        both = set(self.headers) & set(self.secret_headers)
        if both:
            raise ValueError(f"headers {sorted(both)} given twice (headers and secret_headers)")
        return self


EmptyOutcome = Literal["failed", "passed", "error"]


class PrometheusQuery(_Frozen):
    """A PromQL instant query; every sample of a vector (or the scalar) must satisfy
    ``condition``. An empty answer counts as ``on_empty`` (default: a failed measurement;
    ``error``: as if Prometheus had not answered)."""

    query: str = Field(min_length=1, max_length=10_000)
    condition: Condition
    on_empty: EmptyOutcome = "failed"
    # Overrides the config's top-level ``prometheus``.
    server: PrometheusServer | None = None
    timeout: timedelta = timedelta(seconds=10)

    @field_validator("timeout", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return _duration(value)

    @model_validator(mode="after")
    def _bounds(self) -> PrometheusQuery:
        if timedelta(0) >= self.timeout or self.timeout > timedelta(minutes=5):
            raise ValueError("timeout must be greater than 0 and at most 5m")
        return self


class Verification(_Frozen):
    """One verification of a wave: ``http`` or ``prometheus``.

    ``http``: ``attempts`` tries, ``interval`` apart, until one passes.
    ``prometheus``: ``count`` measurements, ``interval`` apart; fails once more than
    ``failure_limit`` failed, or after ``error_limit`` errors (no answer) in a row.
    The first measurement is taken ``delay`` after the wave runs the set."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    http: HttpCheck | None = None
    prometheus: PrometheusQuery | None = None
    delay: timedelta = timedelta(0)
    interval: timedelta = timedelta(seconds=30)
    attempts: int = Field(default=3, ge=1, le=1000)
    count: int = Field(default=1, ge=1, le=1000)
    failure_limit: int = Field(default=0, ge=0)
    error_limit: int = Field(default=4, ge=0, le=1000)

    @field_validator("delay", "interval", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return _duration(value)

    @model_validator(mode="after")
    def _one_kind(self) -> Verification:
        if (self.http is None) == (self.prometheus is None):
            raise ValueError(f"verification {self.name!r}: give exactly one of http, prometheus")
        if self.interval <= timedelta(0) or self.delay < timedelta(0):
            raise ValueError(f"verification {self.name!r}: interval must be greater than 0")
        if self.prometheus is not None and self.failure_limit >= self.count:
            raise ValueError(f"verification {self.name!r}: failure_limit must be less than count")
        return self

    @property
    def kind(self) -> Literal["http", "prometheus"]:
        return "http" if self.http is not None else "prometheus"

    @property
    def steps(self) -> int:
        """Measurements it takes at most (the ``m`` of an ``n/m`` progress)."""
        return self.attempts if self.http is not None else self.count


def unique_names(verifications: tuple[Verification, ...]) -> tuple[Verification, ...]:
    names = [v.name for v in verifications]
    if len(set(names)) != len(names):
        raise ValueError(f"verification names must be unique within a wave, got {names}")
    return verifications


def secret_envs(
    prometheus: PrometheusServer | None, verifications: Iterable[Verification]
) -> set[str]:
    """The environment variables the verifications read secrets from."""
    names = {prometheus.token_env} if prometheus and prometheus.token_env else set()
    for v in verifications:
        if v.http is not None:
            names.update(v.http.secret_headers.values())
        elif v.prometheus is not None and v.prometheus.server is not None:
            names.update([v.prometheus.server.token_env] if v.prometheus.server.token_env else [])
    return names


def missing_server(
    prometheus: PrometheusServer | None, where: str, verifications: Iterable[Verification]
) -> None:
    """``ValueError`` for a Prometheus verification with no server to ask."""
    for v in verifications:
        if v.prometheus is not None and v.prometheus.server is None and prometheus is None:
            raise ValueError(
                f"{where}.verifications.{v.name}: a prometheus query needs a server"
                " (its own `server` or the top-level `prometheus`)"
            )

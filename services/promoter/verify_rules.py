"""The rules of wave verifications as pure functions (docs/gates.md, Verification): what one
answer says (an HTTP response, a Prometheus query result), how a run moves on with each
measurement, and the verdict on a set from its runs. No I/O, no clock.

A measurement is ``passed``, ``failed`` (the answer says no) or ``error`` (no usable answer:
unreachable, timed out, a server error of Prometheus). An HTTP check passes at its first
passed attempt and fails once ``attempts`` were used (errors use one too). A Prometheus run
takes ``count`` measurements; errors do not count among them, but more than ``error_limit``
in a row fail it, as do more than ``failure_limit`` failed measurements.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from waveline.shared.verify_config import (
    Condition,
    EmptyOutcome,
    HttpCheck,
    PrometheusQuery,
    Verification,
)

Outcome = Literal["passed", "failed", "error"]
RunStatus = Literal["running", "passed", "failed"]
_CLIP = 120


@dataclass(frozen=True)
class Measurement:
    outcome: Outcome
    # What was seen, for a reason: never a header, a token or the URL (which may hold one).
    detail: str


@dataclass(frozen=True)
class RunState:
    """A verification run of one (pipeline, wave, set): measurements taken (errors of a
    Prometheus run excluded), failed ones, errors in a row, and the reason once failed."""

    status: RunStatus = "running"
    measurements: int = 0
    failures: int = 0
    errors: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class VerificationState:
    """The verdict on a set in a wave: ``passed`` (or nothing to verify), ``running`` with
    its progress, or ``failed`` with the reason."""

    status: RunStatus
    reason: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def _clip(text: str) -> str:
    return text if len(text) <= _CLIP else text[: _CLIP - 1] + "…"


def show(value: Any) -> str:
    """A JSON value as it reads in a reason (clipped)."""
    if isinstance(value, float):
        return format(value, "g")
    return _clip(json.dumps(value, sort_keys=True, default=str))


def holds(seen: Any, condition: Condition) -> bool:
    """``seen <op> value``. Equality is JSON equality (a boolean equals only a boolean, and
    1 == 1.0); an ordering with anything but numbers is false, as is any ordering with NaN."""
    want = condition.value
    if condition.op in ("==", "!="):
        same = _json_equal(seen, want)
        return same if condition.op == "==" else not same
    if not _number(seen) or not _number(want):
        return False
    a, b = float(seen), float(want)  # type: ignore[arg-type]
    if math.isnan(a):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[condition.op]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


_MISSING = object()


def field_at(document: Any, path: str) -> Any:
    """The value at dotted ``path`` (list items by index), or ``_MISSING``."""
    here = document
    for part in path.split("."):
        if isinstance(here, dict) and part in here:
            here = here[part]
        elif isinstance(here, list) and part.isdigit() and int(part) < len(here):
            here = here[int(part)]
        else:
            return _MISSING
    return here


def judge_http(check: HttpCheck, status: int, body: bytes | None) -> Measurement:
    """One attempt of an HTTP check from its response (``body`` None: over the size cap)."""
    if status != check.expect_status:
        return Measurement("failed", f"HTTP {status}, expected {check.expect_status}")
    if check.field is None or check.condition is None:
        return Measurement("passed", f"HTTP {status}")
    if body is None:
        return Measurement("failed", "response body too large to read")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Measurement("failed", "response body is not JSON")
    seen = field_at(document, check.field)
    if seen is _MISSING:
        return Measurement("failed", f"{check.field} missing from the response")
    if holds(seen, check.condition):
        return Measurement("passed", f"{check.field} = {show(seen)}")
    return Measurement("failed", f"{check.field} = {show(seen)}, not {check.condition.describe()}")


def _sample(value: Any) -> float | None:
    """A Prometheus sample value ``[<time>, "<number>"]`` as a float (None: malformed)."""
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], str):
        return None
    try:
        return float(value[1])  # Prometheus writes NaN, +Inf, -Inf as such: float() reads them
    except ValueError:
        return None


def _labels(metric: Any) -> str:
    if not isinstance(metric, dict) or not metric:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()))
    return _clip("{" + inner + "}")


def judge_prometheus(query: PrometheusQuery, status: int, answer: Any) -> Measurement:
    """One measurement from Prometheus's answer to an instant query (``answer``: the parsed
    JSON body, None when it was not JSON). Every sample of a vector, or the scalar, must
    satisfy the condition; an empty vector counts as ``query.on_empty``."""
    if not isinstance(answer, dict) or answer.get("status") not in ("success", "error"):
        return Measurement("error", f"Prometheus answered HTTP {status} without its API's JSON")
    if answer["status"] == "error":
        kind, error = str(answer.get("errorType", "?")), _clip(str(answer.get("error", "")))
        # A query Prometheus cannot parse will never pass: a failed measurement, not an
        # outage to wait out.
        outcome: Outcome = "failed" if kind == "bad_data" else "error"
        return Measurement(outcome, f"Prometheus {kind}: {error}")
    data = answer.get("data")
    result_type = data.get("resultType") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    want = query.condition
    if result_type == "scalar":
        value = _sample(result)
        if value is None:
            return Measurement("error", "malformed scalar in Prometheus's answer")
        verdict: Outcome = "passed" if holds(value, want) else "failed"
        return Measurement(verdict, _value_detail(value, want, "", verdict))
    if result_type != "vector" or not isinstance(result, list):
        return Measurement(
            "failed", f"query returned {result_type}: use an instant vector or scalar"
        )
    if not result:
        return _empty(query.on_empty)
    seen: list[tuple[float, str]] = []
    for item in result:
        value = _sample(item.get("value")) if isinstance(item, dict) else None
        if value is None:
            return Measurement("error", "malformed sample in Prometheus's answer")
        seen.append((value, _labels(item.get("metric"))))
    bad = [(v, labels) for v, labels in seen if not holds(v, want)]
    if bad:
        value, labels = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return Measurement("failed", _value_detail(value, want, labels, "failed") + more)
    value, labels = seen[0]
    return Measurement("passed", _value_detail(value, want, labels, "passed"))


def _value_detail(value: float, want: Condition, labels: str, outcome: Outcome) -> str:
    where = f"{labels} " if labels else ""
    verb = "" if outcome == "passed" else "not "
    return f"{where}{format(value, 'g')} {verb}{want.describe()}"


def _empty(on_empty: EmptyOutcome) -> Measurement:
    return Measurement(on_empty, "query returned no samples")


def advance(v: Verification, state: RunState, m: Measurement) -> RunState:
    """The run after measurement ``m`` (a finished run stays as it is)."""
    if state.status != "running":
        return state
    if v.http is not None:
        taken = state.measurements + 1
        if m.outcome == "passed":
            return replace(state, status="passed", measurements=taken, errors=0)
        failures = state.failures + 1
        if taken >= v.attempts:
            tries = f"{v.attempts} attempt" + ("s" if v.attempts > 1 else "")
            reason = f"{v.name}: {m.detail} (after {tries})"
            return RunState("failed", taken, failures, 0, reason)
        return replace(state, measurements=taken, failures=failures)
    if m.outcome == "error":
        errors = state.errors + 1
        if errors > v.error_limit:
            reason = f"{v.name}: no answer {errors} times in a row: {m.detail}"
            return replace(state, status="failed", errors=errors, reason=reason)
        return replace(state, errors=errors)
    taken = state.measurements + 1
    failures = state.failures + (m.outcome == "failed")
    if failures > v.failure_limit:
        limit = f" ({failures} of {taken} failed, limit {v.failure_limit})"
        reason = f"{v.name}: {m.detail}" + (limit if v.failure_limit else "")
        return RunState("failed", taken, failures, 0, reason)
    if taken >= v.count:
        return RunState("passed", taken, failures, 0, None)
    return RunState("running", taken, failures, 0, None)


def progress(v: Verification, state: RunState) -> str:
    """``name n/m``: measurements taken of those it takes at most."""
    return f"{v.name} {min(state.measurements, v.steps)}/{v.steps}"


def verdict(
    verifications: tuple[Verification, ...], runs: Mapping[str, RunState]
) -> VerificationState:
    """The verdict on a set from the runs of the wave's configured verifications (runs of
    verifications no longer configured are ignored; one not started yet is running).
    Failed when any failed (the first in config order gives the reason), passed when all
    passed, running otherwise: ``verifying ready 1/3, error-rate 2/5``."""
    if not verifications:
        return VerificationState("passed", "nothing to verify")
    states = [(v, runs.get(v.name, RunState())) for v in verifications]
    failed = [s for _, s in states if s.status == "failed"]
    if failed:
        return VerificationState("failed", f"failed: {failed[0].reason}")
    running = [progress(v, s) for v, s in states if s.status == "running"]
    if running:
        return VerificationState("running", "verifying " + ", ".join(running))
    return VerificationState("passed", "verified")

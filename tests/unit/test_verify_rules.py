"""Wave verification rules (services/promoter/verify_rules.py) and their config
(shared/verify_config.py), without a network or a database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from waveline.services.promoter.verify_rules import (
    Measurement,
    RunState,
    advance,
    holds,
    judge_http,
    judge_prometheus,
    verdict,
)
from waveline.shared.config import WavelineConfig
from waveline.shared.verify_config import Condition, Verification


def http(**check: Any) -> Verification:
    extra = {k: check.pop(k) for k in ("attempts", "name") if k in check}
    return Verification.model_validate(
        {"name": "ready", "http": {"url": "http://svc/healthz", **check}, **extra}
    )


def prom(op: str = ">=", value: float = 0.99, **extra: Any) -> Verification:
    query = {"query": "up", "condition": {"op": op, "value": value}}
    query |= {k: extra.pop(k) for k in ("on_empty",) if k in extra}
    return Verification.model_validate(
        {"name": "success-rate", "prometheus": {**query, "server": {"url": "http://p"}}}
        | {"count": 5, **extra}
    )


def vector(*values: str, metric: dict[str, str] | None = None) -> dict[str, Any]:
    result = [{"metric": metric or {"job": "api"}, "value": [1765000000.5, v]} for v in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.mark.parametrize(
    ("seen", "op", "value", "expected"),
    [
        (True, "==", True, True),
        (1, "==", True, False),  # a boolean equals only a boolean
        (False, "!=", True, True),
        (1, "==", 1.0, True),
        ("ok", "==", "ok", True),
        (None, "==", None, True),
        (0.995, ">=", 0.99, True),
        (0.98, ">=", 0.99, False),
        (0.42, "<=", 0.3, False),
        ("0.5", "<", 1, False),  # a string is no number
        (True, ">", 0, False),
        (float("nan"), "<", 1, False),
        (float("inf"), ">", 1e300, True),
    ],
)
def test_conditions(seen: Any, op: str, value: Any, expected: bool) -> None:
    assert holds(seen, Condition.model_validate({"op": op, "value": value})) is expected


def test_orderings_need_a_number() -> None:
    with pytest.raises(ValidationError, match="must be a number"):
        Condition.model_validate({"op": ">", "value": "high"})


def test_http_status_and_field() -> None:
    check = http(field="status.items.1.ready", equals=True).http
    assert check is not None
    body = json.dumps({"status": {"items": [{"ready": False}, {"ready": True}]}}).encode()
    assert judge_http(check, 200, body).outcome == "passed"
    assert judge_http(check, 503, body) == Measurement("failed", "HTTP 503, expected 200")
    bad = json.dumps({"status": {"items": [{}, {"ready": "yes"}]}}).encode()
    assert judge_http(check, 200, bad) == Measurement(
        "failed", 'status.items.1.ready = "yes", not == true'
    )
    assert judge_http(check, 200, b"{}").detail == "status.items.1.ready missing from the response"
    assert judge_http(check, 200, b"<html>").detail == "response body is not JSON"
    assert judge_http(check, 200, None).outcome == "failed"
    plain = http(expect_status=204).http
    assert plain is not None
    assert judge_http(plain, 204, b"").outcome == "passed"


def test_http_config_refusals() -> None:
    with pytest.raises(ValidationError, match="field and condition"):
        http(field="ready")
    with pytest.raises(ValidationError, match="not an environment name"):
        http(secret_headers={"Authorization": "not a name"})
    with pytest.raises(ValidationError, match="exactly one of http, prometheus"):
        Verification.model_validate({"name": "x"})
    with pytest.raises(ValidationError, match="failure_limit must be less than count"):
        prom(count=2, failure_limit=2)


def test_prometheus_vector_each_sample() -> None:
    v = prom()
    assert v.prometheus is not None
    ok = judge_prometheus(v.prometheus, 200, vector("0.999", "1"))
    assert ok.outcome == "passed"
    low = judge_prometheus(v.prometheus, 200, vector("0.999", "0.42", "0.5"))
    assert low.outcome == "failed"
    assert low.detail == '{job="api"} 0.42 not >= 0.99 (and 1 more)'
    assert judge_prometheus(v.prometheus, 200, vector("NaN")).outcome == "failed"


def test_prometheus_scalar_empty_and_errors() -> None:
    v = prom("<=", 0.3)
    assert v.prometheus is not None
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.42"]}}
    assert judge_prometheus(v.prometheus, 200, scalar) == Measurement("failed", "0.42 not <= 0.3")
    assert judge_prometheus(v.prometheus, 200, vector()).outcome == "failed"
    for outcome in ("passed", "error"):
        q = prom(on_empty=outcome).prometheus
        assert q is not None
        assert judge_prometheus(q, 200, vector()).outcome == outcome
    refused = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
    assert judge_prometheus(v.prometheus, 400, refused) == Measurement(
        "failed", "Prometheus bad_data: parse error at char 3"
    )
    slow = {"status": "error", "errorType": "timeout", "error": "query timed out"}
    assert judge_prometheus(v.prometheus, 503, slow).outcome == "error"
    assert judge_prometheus(v.prometheus, 502, None).outcome == "error"
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    assert judge_prometheus(v.prometheus, 200, matrix).outcome == "failed"


def test_http_run_retries_then_fails_or_passes() -> None:
    v = http(attempts=3)
    state = RunState()
    state = advance(v, state, Measurement("error", "unreachable (ClientConnectorError)"))
    state = advance(v, state, Measurement("failed", "HTTP 503, expected 200"))
    assert (state.status, state.measurements) == ("running", 2)
    assert advance(v, state, Measurement("passed", "HTTP 200")).status == "passed"
    failed = advance(v, state, Measurement("failed", "HTTP 500, expected 200"))
    assert failed == RunState("failed", 3, 3, 0, "ready: HTTP 500, expected 200 (after 3 attempts)")
    assert advance(v, failed, Measurement("passed", "HTTP 200")) == failed


def test_prometheus_run_failure_limit_and_count() -> None:
    v = prom(count=3, failure_limit=1)
    state = advance(v, RunState(), Measurement("failed", "0.5 not >= 0.99"))
    state = advance(v, state, Measurement("passed", "1 >= 0.99"))
    assert (state.status, state.measurements, state.failures) == ("running", 2, 1)
    assert advance(v, state, Measurement("passed", "1 >= 0.99")).status == "passed"
    failed = advance(v, state, Measurement("failed", "0.42 not >= 0.99"))
    assert failed.reason == "success-rate: 0.42 not >= 0.99 (2 of 3 failed, limit 1)"


def test_prometheus_errors_do_not_count_but_a_run_of_them_fails() -> None:
    v = prom(count=2, error_limit=2)
    state = advance(v, RunState(), Measurement("error", "no answer within 10s"))
    state = advance(v, state, Measurement("passed", "1 >= 0.99"))
    assert (state.measurements, state.errors) == (1, 0)  # an answer resets the streak
    for _ in range(2):
        state = advance(v, state, Measurement("error", "no answer within 10s"))
    assert state.status == "running"
    state = advance(v, state, Measurement("error", "no answer within 10s"))
    assert state.status == "failed"
    assert state.reason == "success-rate: no answer 3 times in a row: no answer within 10s"


def test_verdict() -> None:
    ready, rate = http(attempts=3), prom()
    both = (ready, rate)
    assert verdict((), {}).passed
    assert verdict(both, {}).reason == "verifying ready 0/3, success-rate 0/5"
    running = {"ready": RunState("passed", 1), "success-rate": RunState("running", 2)}
    assert verdict(both, running).reason == "verifying success-rate 2/5"
    failed = running | {"success-rate": RunState("failed", 3, 1, 0, "success-rate: 0.42")}
    state = verdict(both, failed)
    assert state.failed
    assert state.reason == "failed: success-rate: 0.42"
    passed = running | {"success-rate": RunState("passed", 5)}
    assert verdict(both, passed).passed
    # a run of a verification no longer configured is ignored
    assert verdict((ready,), passed | {"gone": RunState("failed", 1, 1, 0, "x")}).passed


def test_pipeline_config() -> None:
    def config(prometheus: dict[str, Any] | None, verification: dict[str, Any]) -> WavelineConfig:
        wave = {"name": "prod", "targets": ["a"], "verifications": [verification]}
        return WavelineConfig.model_validate(
            {
                "repos": {"cfg": {"url": "file:///tmp/cfg.git"}},
                "pipelines": {"app": {"repo": "cfg", "waves": [wave]}},
                **({"prometheus": prometheus} if prometheus else {}),
            }
        )

    query = {"name": "rate", "prometheus": {"query": "up", "condition": {"op": ">", "value": 0}}}
    with pytest.raises(ValidationError, match="needs a server"):
        config(None, query)
    found = config({"url": "http://prom:9090/", "token_env": "PROM_TOKEN"}, query)
    assert found.prometheus is not None and found.prometheus.url == "http://prom:9090"
    assert "PROM_TOKEN" in found.secret_env_names()
    check = {"name": "ready", "http": {"url": "https://x", "secret_headers": {"X-Key": "K"}}}
    assert "K" in config(None, check).secret_env_names()
    # what a service reads back from a dumped config is the same
    again = WavelineConfig.model_validate(json.loads(json.dumps(found.model_dump(mode="json"))))
    assert again == found

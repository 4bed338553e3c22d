"""The repo-process protocol: ``RepoCalls``, its requests and its two sides agree.

Fails when one side (``RepoHost`` in the child, ``RepoProcess`` in the service) gains,
loses or changes a call the protocol does not list, or a request stops matching its call.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from waveline.services.git_writer import protocol
from waveline.services.git_writer.client import RepoProcess
from waveline.services.git_writer.host import RepoHost
from waveline.services.git_writer.protocol import REQUESTS, Close, RepoCalls, Request, UseToken


def calls() -> dict[str, Callable[..., Any]]:
    return {
        name: fn
        for name, fn in vars(RepoCalls).items()
        if inspect.isfunction(fn) and not name.startswith("_")
    }


def shape(fn: Callable[..., Any]) -> tuple[list[tuple[str, Any]], Any]:
    """Parameters (name, annotation as written) after ``self``, and the return annotation."""
    sig = inspect.signature(fn)
    params = [(p.name, p.annotation) for p in list(sig.parameters.values())[1:]]
    return params, sig.return_annotation


def public_methods(cls: type) -> set[str]:
    return {
        name
        for name, fn in vars(cls).items()
        if inspect.isfunction(fn) and not name.startswith("_")
    }


def test_the_protocol_lists_the_calls_a_repo_process_answers() -> None:
    assert set(calls()) == {"build", "flush", "discard", "settle", "refresh", "use_token", "close"}


def test_the_host_implements_every_call_with_the_protocols_signature() -> None:
    for name, fn in calls().items():
        assert shape(getattr(RepoHost, name)) == shape(fn), name
    # drop_signing_key is the child's own (main calls it when the service is gone).
    assert public_methods(RepoHost) - set(calls()) == {"drop_signing_key"}


def test_the_service_side_offers_every_call_as_a_coroutine_with_the_same_signature() -> None:
    for name, fn in calls().items():
        proxy = getattr(RepoProcess, name)
        assert inspect.iscoroutinefunction(proxy), name
        assert shape(proxy) == shape(fn), name
    # Its other public methods manage the child, not calls on it.
    assert public_methods(RepoProcess) - set(calls()) == {
        "start",
        "call",
        "stuck_for",
        "hand_token",
    }


def test_one_request_per_call_carrying_its_arguments() -> None:
    names = {re.sub(r"(?<!^)([A-Z])", r"_\1", cls.__name__).lower(): cls for cls in REQUESTS}
    assert set(names) == set(calls())
    for name, cls in names.items():
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
        fields = [f.name for f in dataclasses.fields(cls)]
        assert fields == [p for p, _ in shape(calls()[name])[0]], name
        assert "run" in vars(cls), f"{cls.__name__} does not run its call"


class _Recorder:
    """A RepoCalls that records what was called, for ``answer``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def record(*args: Any) -> str:
            self.seen.append((name, args))
            return name

        return record


def test_answer_runs_a_request_and_refuses_anything_else() -> None:
    host: Any = _Recorder()
    assert protocol.answer(host, UseToken("t")) is None
    assert protocol.answer(host, Close()) == "close"
    assert host.seen == [("use_token", ("t",)), ("close", ())]

    class Sneaky(Request[None]):
        def run(self, host: RepoCalls) -> None:
            host.close()

    for bad in ("close", ("close", ()), Sneaky()):
        with pytest.raises(TypeError, match="unknown repo process call"):
            protocol.answer(host, bad)
    assert len(host.seen) == 2


def test_a_token_request_never_shows_its_token() -> None:
    assert "s3cret" not in repr(UseToken("s3cret"))

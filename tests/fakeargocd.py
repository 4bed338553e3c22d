"""A fake Argo CD API server (argocd-server) for ``GET /api/v1/applications/{name}``.

Checks the bearer token as argocd-server does (401 ``no session information`` without one,
401 ``invalid session`` for a wrong one) and answers an ``Application`` in Argo CD's JSON
shape (``metadata``, ``spec``, ``status.sync``, ``status.health``, ``status.operationState``),
or 404 with Argo CD's gRPC-gateway error body for an unknown one. Applications either follow
a branch of a bare repository (``follow``: auto-sync, synced and healthy on its tip, as an
Application with automated sync settles) or have the state a test sets (``set_app``).
Every request is recorded.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygit2
from aiohttp import web


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _App:
    revision: str | None
    sync: str = "Synced"
    health: str = "Healthy"
    phase: str | None = "Succeeded"


@dataclass
class FakeArgoCd:
    """``async with FakeArgoCd(token) as argo: ArgoCdApi(argo.url, token=...)``."""

    token: str
    url: str = ""
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, auth)
    _apps: dict[str, _App] = field(default_factory=dict)
    _following: dict[str, tuple[Path, str]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    def set_app(
        self,
        name: str,
        revision: str | None,
        *,
        sync: str = "Synced",
        health: str = "Healthy",
        phase: str | None = "Succeeded",
    ) -> None:
        """``name`` reports this state (``phase`` None: no operation ran yet)."""
        self._following.pop(name, None)
        self._apps[name] = _App(revision, sync, health, phase)

    def follow(self, names: list[str], remote: Path, branch: str) -> None:
        """``names`` auto-sync ``branch`` of ``remote``: synced and healthy on its tip."""
        for name in names:
            self._apps.pop(name, None)
            self._following[name] = (remote, branch)

    def reads_of(self, name: str) -> int:
        return sum(1 for path, _ in self.requests if path.endswith(f"/{name}"))

    async def __aenter__(self) -> FakeArgoCd:
        app = web.Application()
        app.router.add_get("/api/v1/applications/{name}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _get(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.requests.append((request.path, auth))
        scheme, _, value = (auth or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return _error(401, 16, "no session information")
        if not hmac.compare_digest(value.strip().encode(), self.token.encode()):
            return _error(401, 16, "invalid session: token signature is invalid")
        name = request.match_info["name"]
        state = self._state(name)
        if state is None:
            return _error(404, 5, f'applications.argoproj.io "{name}" not found')
        return web.json_response(self._document(name, state))

    def _state(self, name: str) -> _App | None:
        if name in self._following:
            remote, branch = self._following[name]
            ref = pygit2.Repository(str(remote)).references.get(f"refs/heads/{branch}")
            return _App(str(ref.resolve().target) if ref is not None else None)
        return self._apps.get(name)

    @staticmethod
    def _document(name: str, app: _App) -> dict[str, Any]:
        status: dict[str, Any] = {
            "sync": {
                "status": app.sync,
                "comparedTo": {
                    "source": {"repoURL": "https://git.example.com/cfg.git", "path": name},
                    "destination": {"server": "https://kubernetes.default.svc"},
                },
            },
            "health": {"status": app.health},
            "reconciledAt": _stamp(),
            "sourceType": "Directory",
        }
        if app.revision is not None:
            status["sync"]["revision"] = app.revision
        if app.phase is not None:
            status["operationState"] = {
                "operation": {"sync": {"revision": app.revision}},
                "phase": app.phase,
                "message": "successfully synced (all tasks run)",
                "syncResult": {"revision": app.revision, "resources": []},
                "startedAt": _stamp(),
                "finishedAt": _stamp(),
            }
        return {
            "metadata": {"name": name, "namespace": "argocd", "resourceVersion": "1"},
            "spec": {
                "project": "default",
                "source": {"repoURL": "https://git.example.com/cfg.git", "path": name},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
                "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
            },
            "status": status,
        }


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"error": message, "code": code, "message": message}, status=status)

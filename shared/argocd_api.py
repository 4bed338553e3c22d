"""Argo CD's API (argocd-server), read for one Application at a time: the ``DeploySource``
the reconciler polls when argocd-notifications' report of a target was lost.

``GET /api/v1/applications/{name}`` with the API token as bearer; the Application's
``status.sync.revision``, ``status.sync.status``, ``status.health.status`` and
``status.operationState.phase`` become the ``DeployReported`` the notification template in
``deploy/argocd/`` would have posted. The token travels only in the ``Authorization``
header and never appears in an error.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from waveline.shared.deploy_sources import deploy_report
from waveline.shared.errors import WavelineError
from waveline.shared.models.deploys import DeployReported

logger = logging.getLogger(__name__)

_REVISION = re.compile(r"^[a-f0-9]{40}$")
_FIELD_MAX = 64


class ArgoCdError(WavelineError):
    """Argo CD did not say what a target runs. Retriable when it did not answer or answered
    5xx, 408 or 429; a refusal (401, 403: a wrong token, or an Application the token may
    not see, which Argo CD answers like one that does not exist) or 404 is permanent."""

    code = "argocd_error"

    def __init__(self, message: str, *, status: int | None) -> None:
        retriable = status is None or status >= 500 or status in (408, 429)
        super().__init__(message, retriable=retriable)
        self.status = status


class ArgoCdApi:
    """``DeploySource`` over Argo CD's REST API at ``api_url`` (argocd-server's address)."""

    def __init__(self, api_url: str, *, token: SecretStr, timeout_s: float = 10.0) -> None:
        self._api_url = api_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def read(self, target: str) -> DeployReported | None:
        """The Application named ``target`` as a deploy report; None when it reports no
        single git revision (a multi-source Application, a chart version, nothing synced)."""
        path = f"/api/v1/applications/{quote(target, safe='')}"
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        try:
            async with self._client().get(self._api_url + path, headers=headers) as resp:
                try:
                    doc: Any = await resp.json(content_type=None)
                except ValueError:
                    doc = None
                if resp.status != 200:
                    message = doc.get("message", "") if isinstance(doc, dict) else ""
                    raise ArgoCdError(
                        self._scrub(f"Argo CD GET {path} -> {resp.status}: {message}"[:400]),
                        status=resp.status,
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ArgoCdError(
                self._scrub(f"Argo CD GET {path} got no answer: {type(exc).__name__} {exc}"),
                status=None,
            ) from None
        return application_report(target, doc)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"Accept": "application/json"}
            )
        return self._session

    def _scrub(self, text: str) -> str:
        secret = self._token.get_secret_value()
        return text.replace(secret, "***") if secret else text


def _text(doc: Any, *keys: str) -> str:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc[:_FIELD_MAX] if isinstance(doc, str) else ""


def application_report(target: str, doc: Any) -> DeployReported | None:
    """The report an Application document (``v1alpha1.Application``) amounts to."""
    if not isinstance(doc, dict) or not isinstance(doc.get("status"), dict):
        raise ArgoCdError(
            f"Argo CD answered an Application without status for {target}", status=200
        )
    revision = _text(doc, "status", "sync", "revision")
    if not _REVISION.fullmatch(revision):
        return None
    return deploy_report(
        target,
        revision,
        _text(doc, "status", "operationState", "phase"),
        _text(doc, "status", "health", "status"),
        _text(doc, "status", "sync", "status"),
    )

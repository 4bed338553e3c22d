"""Flux objects read through the Kubernetes API: the ``DeploySource`` the reconciler polls
for Flux targets when the notification-controller's event was lost (docs/flux.md).

``GET /apis/kustomize.toolkit.fluxcd.io/v1/namespaces/{ns}/kustomizations/{name}`` (and
``helm.toolkit.fluxcd.io/v2`` ``helmreleases``) with a bearer token, over TLS verified
against ``WAVELINE_KUBE_API_CA_FILE`` when set. A Kustomization reports the commit of its
latest attempt (``status.lastAttemptedRevision``, else its last applied one) with what its
conditions say of it. A HelmRelease names a chart version, no commit: it reports the commit
its Kustomization (the one whose labels it carries) last applied, read before the
HelmRelease, with the HelmRelease's own conditions, so a report never names a commit newer
than the spec the conditions are about. The token travels only in the ``Authorization``
header and never appears in an error. The rules are in ``flux.py``.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiohttp

from waveline.shared.deploy_sources import deploy_report
from waveline.shared.errors import ConfigError, WavelineError
from waveline.shared.flux import (
    FluxRef,
    is_flux_target,
    kustomization_commit,
    object_state,
    parent_of,
    parse_target,
)
from waveline.shared.flux_config import FluxSettings
from waveline.shared.models.deploys import DeployReported

__all__ = ["FluxSource", "KubeApiError", "is_flux_target", "parse_target"]


class KubeApiError(WavelineError):
    """The Kubernetes API did not say what a Flux object runs. Retriable when it did not
    answer or answered 5xx, 408 or 429; a refusal (401, 403) or 404 is permanent."""

    code = "kube_api_error"

    def __init__(self, message: str, *, status: int | None) -> None:
        retriable = status is None or status >= 500 or status in (408, 429)
        super().__init__(message, retriable=retriable)
        self.status = status


class FluxSource:
    """``DeploySource`` over the Kubernetes API of ``settings`` (``WAVELINE_KUBE_API_*``)."""

    def __init__(self, settings: FluxSettings) -> None:
        if settings.kube_api_url is None or not settings.kube_configured():
            raise ConfigError("Flux objects need WAVELINE_KUBE_API_URL and a token (or its file)")
        self._url = settings.kube_api_url
        self._token = settings.kube_api_token
        self._token_file = settings.kube_api_token_file
        self._ssl: ssl.SSLContext | None = None
        if settings.kube_api_ca_file is not None:
            try:
                self._ssl = ssl.create_default_context(cafile=str(settings.kube_api_ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"WAVELINE_KUBE_API_CA_FILE {settings.kube_api_ca_file}: {exc}"
                ) from None
        self._timeout = aiohttp.ClientTimeout(total=settings.kube_api_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        # Which Kustomization applied each HelmRelease (labels do not change).
        self._parents: dict[str, FluxRef] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def read(self, target: str) -> DeployReported | None:
        """What the Flux object ``target`` runs, as its event would have said it; None for a
        name that is no Flux target, an object that names no git commit (an OCI source
        without origin revision, a HelmRelease not applied by a Kustomization)."""
        ref = parse_target(target)
        if ref is None:
            return None
        if ref.kind == "Kustomization":
            obj = await self._get(ref)
            sha = kustomization_commit(obj, attempted=True)
            state = object_state(obj)
        else:
            parent = self._parents.get(target)
            if parent is None:
                parent = parent_of(await self._get(ref))
                if parent is None:
                    return None
                self._parents[target] = parent
            sha = kustomization_commit(await self._get(parent), attempted=False)
            state = object_state(await self._get(ref))
        if sha is None:
            return None
        return deploy_report(target, sha, state.phase, state.health, state.sync)

    async def _get(self, ref: FluxRef) -> Any:
        path = ref.api_path()
        headers = {"Authorization": f"Bearer {self._bearer()}", "Accept": "application/json"}
        try:
            async with self._client().get(self._url + path, headers=headers, ssl=self._tls()) as r:
                try:
                    doc: Any = await r.json(content_type=None)
                except ValueError:
                    doc = None
                if r.status != 200:
                    # A Kubernetes Status object says why.
                    why = doc.get("message", "") if isinstance(doc, dict) else ""
                    raise KubeApiError(
                        self._scrub(f"Kubernetes GET {path} -> {r.status}: {why}"[:400]),
                        status=r.status,
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeApiError(
                self._scrub(f"Kubernetes GET {path} got no answer: {type(exc).__name__} {exc}"),
                status=None,
            ) from None
        if not isinstance(doc, dict) or doc.get("kind") != ref.kind:
            raise KubeApiError(f"Kubernetes GET {path} answered no {ref.kind}", status=200)
        return doc

    def _bearer(self) -> str:
        if self._token_file is not None:
            try:
                # Read each time: a projected service-account token is rotated in place.
                return Path(self._token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise KubeApiError(
                    f"WAVELINE_KUBE_API_TOKEN_FILE {self._token_file}: {exc.strerror}",
                    status=None,
                ) from None
        assert self._token is not None  # kube_configured()
        return self._token.get_secret_value()

    def _tls(self) -> ssl.SSLContext | bool:
        return self._ssl if self._ssl is not None else True

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _scrub(self, text: str) -> str:
        secret = self._token.get_secret_value() if self._token is not None else ""
        return text.replace(secret, "***") if secret else text

"""Flux's settings (docs/flux.md): the secrets Flux's notification-controller authenticates
with, and the Kubernetes API the deploy reconciler reads Flux objects from.

A settings class of its own, read from the same ``WAVELINE_*`` environment as ``Settings``
(which holds it as ``Settings.flux``); every secret is a ``SecretStr``, never logged.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class FluxSettings(BaseSettings):
    """``WAVELINE_FLUX_*`` and ``WAVELINE_KUBE_API_*``."""

    model_config = SettingsConfigDict(env_prefix="WAVELINE_", frozen=True, extra="ignore")

    # ``POST /v1/webhooks/flux`` takes an event signed with this HMAC key (a generic-hmac
    # Provider's ``token``) or sent with this bearer token (a generic Provider whose secret
    # adds ``Authorization: Bearer …``); neither set: every event is refused.
    flux_webhook_secret: SecretStr | None = None
    flux_token: SecretStr | None = None
    # The Kubernetes API holding the Flux objects (in a cluster:
    # https://kubernetes.default.svc). Its bearer token is ``kube_api_token`` or, read on
    # every request as a projected service-account token rotates, ``kube_api_token_file``;
    # the CA that signed the server's certificate (unset: the system's CAs).
    kube_api_url: str | None = None
    kube_api_token: SecretStr | None = None
    kube_api_token_file: Path | None = None
    kube_api_ca_file: Path | None = None
    kube_api_timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("kube_api_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
            raise ValueError("WAVELINE_KUBE_API_URL must be an https:// or http:// address")
        return url.rstrip("/") if url else None

    def kube_configured(self) -> bool:
        """Whether Flux objects can be read: an address and a token (or its file)."""
        return self.kube_api_url is not None and (
            self.kube_api_token is not None or self.kube_api_token_file is not None
        )

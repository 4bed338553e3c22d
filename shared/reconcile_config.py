"""The reconciler's settings (docs/reconcile.md): when lost webhooks are made up for by
polling the forge and the deployer, how fast, and within which share of the forge's budget.

A settings class of its own, read from the same ``WAVELINE_*`` environment as ``Settings``
(which holds it as ``Settings.reconcile``), so the reconciler's knobs live in one place and
its secret is masked in logs like every ``SecretStr`` of ``Settings``.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReconcileSettings(BaseSettings):
    """``WAVELINE_RECONCILE_*`` and ``WAVELINE_ARGOCD_API_*``."""

    model_config = SettingsConfigDict(env_prefix="WAVELINE_", frozen=True, extra="ignore")

    # A commit of auto still pending this long after it was recorded is polled on the forge.
    reconcile_checks_after_s: float = Field(default=60.0, gt=0, le=86400)
    # A wave whose targets have not all reported the set it holds on watched's tip this
    # long after that tip was recorded has its targets read from the deployer's API.
    reconcile_deploys_after_s: float = Field(default=120.0, gt=0, le=86400)
    # How often the store is scanned for what is due; each item then waits its own
    # backoff: first ``*_after_s``, doubling, capped here.
    reconcile_interval_s: float = Field(default=5.0, gt=0, le=3600)
    reconcile_backoff_cap_s: float = Field(default=600.0, gt=0, le=86400)
    # The share of the forge's rate-limit budget polling may spend: the rest is left for
    # every other user of the same credentials (the notifier's pull requests, people's
    # scripts). GitHub answers a conditional request with 304 free of charge.
    reconcile_budget_share: float = Field(default=0.5, gt=0, le=1)
    # Argo CD's API (argocd-server): with both set, targets are read from it. The token
    # crosses plain http:// only to a loopback address, or with the last setting (an
    # argocd-server run with --insecure behind the cluster's own network).
    argocd_api_url: str | None = None
    argocd_api_token: SecretStr | None = None
    argocd_api_allow_insecure_http: bool = False
    # Per request, to the forge and to the deployers.
    reconcile_timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("argocd_api_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^\s/]+", url):
            raise ValueError("WAVELINE_ARGOCD_API_URL must be an http:// or https:// address")
        return url.rstrip("/") if url else None

    @model_validator(mode="after")
    def _argocd_whole(self) -> ReconcileSettings:
        # A token alone is no mistake: the Secret holding it is shared by every service,
        # while only the reconciler's environment names the address.
        if self.argocd_api_url is not None and self.argocd_api_token is None:
            raise ValueError("WAVELINE_ARGOCD_API_URL needs WAVELINE_ARGOCD_API_TOKEN")
        url = self.argocd_api_url or ""
        clear = url.startswith("http://") and not _loopback(urlsplit(url).hostname or "")
        if clear and not self.argocd_api_allow_insecure_http:
            raise ValueError(
                "WAVELINE_ARGOCD_API_URL is plain http:// to another host: the token would"
                " cross the network in clear; use https:// or set"
                " WAVELINE_ARGOCD_API_ALLOW_INSECURE_HTTP=true"
            )
        return self

    def argocd_configured(self) -> bool:
        return self.argocd_api_url is not None and self.argocd_api_token is not None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""Resolving where each delivery goes, once at start: the webhook strategy of every
pipeline or wave that uses it, and every configured notification.

The non-secret part (``url``, ``headers``) comes from the config file; the secret named by
``secret_env`` (a YAML map of address, proxy, token, headers, as Flux's provider secrets
hold it) completes or overrides it. A missing or invalid secret stops the notifier at start
with the variable's name, never its value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pydantic import ValidationError

from waveline.services.notifier.target import WebhookTarget
from waveline.shared.config import NotificationConfig, Secrets, StrategyConfig, WavelineConfig
from waveline.shared.errors import ConfigError

logger = logging.getLogger(__name__)


def strategy_key(pipeline: str, wave: str) -> str:
    return f"{pipeline}/{wave}"


def notification_key(name: str) -> str:
    return f"notification:{name}"


def _resolve(
    what: str,
    spec: StrategyConfig | NotificationConfig,
    secrets: Secrets,
    timeout_s: float,
) -> WebhookTarget:
    secret = secrets.get(spec.secret_env)
    if spec.secret_env and secret is None:
        raise ConfigError(f"{what}: environment variable {spec.secret_env} is not set")
    try:
        if secret is None:
            # No secret: the file's url and headers alone (an unsigned receiver).
            return WebhookTarget.model_validate(
                {"address": spec.url, "headers": spec.headers, "timeout_s": timeout_s}
            )
        # The secret's own values win over the file's.
        return WebhookTarget.from_secret(
            secret.get_secret_value(), timeout_s=timeout_s, address=spec.url, headers=spec.headers
        )
    except ConfigError as exc:
        raise ConfigError(f"{what} ({spec.secret_env}): {exc}") from None
    except ValidationError:
        raise ConfigError(f"{what}: url or headers are not a valid webhook target") from None


@dataclass
class Targets:
    by_key: dict[str, WebhookTarget] = field(default_factory=dict)

    @classmethod
    def resolve(cls, config: WavelineConfig, secrets: Secrets) -> Targets:
        timeout_s = config.delivery.timeout.total_seconds()
        found: dict[str, WebhookTarget] = {}
        for name, pipeline in config.pipelines.items():
            for wave in pipeline.waves:
                strategy = pipeline.strategy_of(wave.name)
                # repository_dispatch goes through the forge instead (dispatch.py).
                if strategy.kind == "webhook" and strategy.format == "cloudevents":
                    found[strategy_key(name, wave.name)] = _resolve(
                        f"pipelines.{name}.waves.{wave.name}.strategy", strategy, secrets, timeout_s
                    )
        for name, notification in config.notifications.items():
            found[notification_key(name)] = _resolve(
                f"notifications.{name}", notification, secrets, timeout_s
            )
        return cls(found)

    def get(self, key: str) -> WebhookTarget | None:
        return self.by_key.get(key)

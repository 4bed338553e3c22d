"""The one place a forge client is chosen by ``forge.kind`` (``repos.<name>.forge``).

A new forge (Gitea, Bitbucket) is a module implementing ``Forge`` plus one entry in
``_CLIENTS``; the config's ``kind`` literal names it.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

from waveline.shared.config import ForgeConfig
from waveline.shared.errors import ConfigError
from waveline.shared.forge.base import Forge
from waveline.shared.forge.github import GitHubForge
from waveline.shared.forge.gitlab import GitLabForge

_CLIENTS: dict[str, Callable[[str, SecretStr], Forge]] = {
    "github": lambda api_url, token: GitHubForge(api_url, token=token),
    "gitlab": lambda api_url, token: GitLabForge(api_url, token=token),
}


def make_forge(config: ForgeConfig, token: SecretStr) -> Forge:
    """The client for ``config.kind`` at ``config.api_url``, authenticated by ``token``."""
    client = _CLIENTS.get(config.kind)
    if client is None:
        raise ConfigError(f"forge kind {config.kind!r} has no client (known: {sorted(_CLIENTS)})")
    return client(config.api_url, token)

"""Config models for GitHub specifics: App credentials (``repos.<r>.forge.app``) and the
``repository_dispatch`` format of the webhook strategy (``strategy.dispatch``), see
docs/github.md.

Kept apart from shared/config.py, which holds only the fields that use them. No secret is
held here: the App's private key is read from the environment variable ``private_key_env``
names, when a service starts (shared/forge/github_app.py).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

# GitHub's limit on a repository_dispatch event_type.
EVENT_TYPE_MAX = 100
# A GitHub App's numeric app id, or its client id (``Iv1.…``/``Iv23…``), which GitHub
# recommends as the JWT's issuer.
_APP_ID = re.compile(r"^(?:[1-9][0-9]{0,18}|Iv[A-Za-z0-9.]{1,60})$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_FULL_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class GitHubAppConfig(BaseModel):
    """A GitHub App the repo's forge calls and git pushes authenticate as.

    ``app_id`` is the App's id (or client id), the JWT's issuer. ``installation_id`` is the
    App's installation on the repository's owner; unset, it is looked up from the repository
    (``GET /repos/{owner}/{repo}/installation``) on first use. ``private_key_env`` names the
    environment variable holding the App's private key (PEM).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str
    installation_id: int | None = Field(default=None, ge=1)
    private_key_env: str = "WAVELINE_GITHUB_APP_PRIVATE_KEY"

    @field_validator("app_id", mode="before")
    @classmethod
    def _app_id(cls, value: object) -> object:
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or not _APP_ID.fullmatch(text):
            raise ValueError("app_id must be the App's numeric id or its client id (Iv…)")
        return text

    @field_validator("private_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(f"private_key_env {value!r} is not an environment variable name")
        return value


class DispatchConfig(BaseModel):
    """Where a ``repository_dispatch`` promotion goes (the webhook strategy with
    ``format: repository_dispatch``).

    ``repository``: ``owner/name`` of the ops repository whose workflow promotes; unset, the
    pipeline's config repository. The call uses that config repository's ``forge`` (its App
    or token). ``event_type``: the event's type (``on.repository_dispatch.types`` of the
    workflow), where ``{pipeline}`` and ``{wave}`` are replaced; at most 100 characters
    once replaced, as GitHub requires (checked for each wave at load: ``problem``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    repository: str | None = None
    event_type: str = "waveline-promotion"

    @field_validator("repository")
    @classmethod
    def _full_name(cls, value: str | None) -> str | None:
        if value is not None and (not _FULL_NAME.fullmatch(value) or ".." in value):
            raise ValueError(f"repository {value!r} is not owner/name")
        return value

    @field_validator("event_type")
    @classmethod
    def _event_type(cls, value: str) -> str:
        if not value.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("event_type must be a non-empty line of text")
        return value

    def event_type_for(self, pipeline: str, wave: str) -> str:
        return self.event_type.replace("{pipeline}", pipeline).replace("{wave}", wave)

    def problem(self, pipeline: str, wave: str) -> str | None:
        """Why this dispatch cannot serve ``pipeline``'s ``wave``, or None."""
        event_type = self.event_type_for(pipeline, wave)
        if len(event_type) > EVENT_TYPE_MAX:
            return (
                f"event_type {event_type!r} is {len(event_type)} characters; GitHub takes at"
                f" most {EVENT_TYPE_MAX}"
            )
        return None

"""Configuration: process settings from the environment and the pipeline file (DESIGN §3).

Both are frozen and loaded once at start, then passed in. Secrets are ``SecretStr`` read from
environment variables whose names the file may choose; the file never holds a secret.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from waveline.shared.errors import ConfigError
from waveline.shared.names import NAME_PATTERN, check_relative_path

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse ``90s``, ``10m``, ``1h30m`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("duration must not be negative")
        return timedelta(seconds=value)
    match = _DURATION.fullmatch(value.strip())
    if value.strip().startswith("P"):
        # ISO 8601 (what a dumped config holds), e.g. PT10M.
        try:
            return TypeAdapter(timedelta).validate_python(value.strip())
        except ValidationError as exc:
            raise ValueError(f"invalid duration {value!r}") from exc
    if not value.strip() or match is None:
        raise ValueError(f"invalid duration {value!r}: use forms like 90s, 10m, 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Author(_Frozen):
    name: str = "waveline"
    email: str = "waveline@localhost"


class RepoConfig(_Frozen):
    """A config repository Waveline commits to."""

    url: str
    watched_branch: str = "master"
    auto_branch: str = "auto"
    token_env: str | None = None
    ssh_key_env: str | None = None
    author: Author = Author()
    required_checks: tuple[str, ...] = ()
    # "owner/name" on the forge, as GitHub webhooks name it; derived from url when unset.
    forge_name: str | None = None

    def full_name(self) -> str:
        if self.forge_name:
            return self.forge_name
        path = re.split(r"[:/]", self.url.rstrip("/"))
        tail = [p for p in path if p][-2:]
        return "/".join(tail).removesuffix(".git")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not re.match(r"^(https?|ssh|file)://", url) and not re.match(r"^[\w.-]+@[\w.-]+:", url):
            raise ValueError("url must be https://, http://, ssh://, file:// or user@host:path")
        return url

    @field_validator("watched_branch", "auto_branch")
    @classmethod
    def _branch_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", name) or ".." in name:
            raise ValueError(f"invalid branch name {name!r}")
        return name


class LayoutConfig(_Frozen):
    """How an image set lands in the repo (DESIGN §2, file layouts)."""

    kind: Literal["images-json", "tag-file", "yaml-path", "kustomize"]
    path: str = "images/{wave}"
    # yaml-path: dotted key templates; {service} is replaced by each service name.
    tag_key: str = "services.{service}.image.tag"
    digest_key: str | None = "services.{service}.image.digest"
    # tag-file: which service's tag goes in the file when the set has several.
    service: str | None = None

    @field_validator("path")
    @classmethod
    def _confined(cls, path: str) -> str:
        check_relative_path(path.replace("{wave}", "w").replace("{service}", "s"))
        if "{wave}" not in path:
            raise ValueError("path must contain {wave}, so each wave has its own files")
        return path

    @model_validator(mode="after")
    def _fits_kind(self) -> LayoutConfig:
        if self.kind == "yaml-path":
            if not self.path.endswith((".yaml", ".yml")):
                raise ValueError("a yaml-path layout's path names a .yaml file")
            for key in (self.tag_key, self.digest_key):
                if key is not None and key.count("{service}") != 1:
                    raise ValueError(f"key template {key!r} needs exactly one {{service}}")
        return self


class StrategyConfig(_Frozen):
    kind: Literal["commit", "pull-request", "webhook"] = "commit"
    url: str | None = None
    secret_env: str | None = None
    headers: dict[str, str] = {}


class GateConfig(_Frozen):
    bake: timedelta = timedelta(0)
    approval: bool = False

    @field_validator("bake", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class WaveConfig(_Frozen):
    name: Name
    targets: tuple[Name, ...] = Field(min_length=1)
    gate: GateConfig = GateConfig()
    strategy: StrategyConfig | None = None


class PipelineConfig(_Frozen):
    repo: Name
    layout: LayoutConfig = LayoutConfig(kind="images-json")
    strategy: StrategyConfig = StrategyConfig()
    waves: tuple[WaveConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_waves(self) -> PipelineConfig:
        names = [w.name for w in self.waves]
        if len(set(names)) != len(names):
            raise ValueError(f"wave names must be unique, got {names}")
        return self

    def wave(self, name: str) -> WaveConfig | None:
        return next((w for w in self.waves if w.name == name), None)


class AuthConfig(_Frozen):
    """Names of the environment variables that hold the inbound tokens."""

    ci_token_env: str = "WAVELINE_CI_TOKEN"  # noqa: S105 (a variable name)
    github_webhook_secret_env: str = "WAVELINE_GITHUB_WEBHOOK_SECRET"  # noqa: S105 (a variable name)
    argocd_token_env: str = "WAVELINE_ARGOCD_TOKEN"  # noqa: S105 (a variable name)
    operator_token_env: str = "WAVELINE_OPERATOR_TOKEN"  # noqa: S105 (a variable name)


class WavelineConfig(_Frozen):
    """The whole ``WAVELINE_CONFIG`` file."""

    repos: dict[Name, RepoConfig]
    pipelines: dict[Name, PipelineConfig]
    auth: AuthConfig = AuthConfig()

    def repo_by_full_name(self, full_name: str) -> str | None:
        """The config key of the repo GitHub calls ``full_name`` (case-insensitive)."""
        wanted = full_name.lower()
        return next((k for k, r in self.repos.items() if r.full_name().lower() == wanted), None)

    def pipelines_of_target(self, target: str) -> list[tuple[str, str]]:
        """(pipeline, wave) pairs whose wave lists Argo CD application ``target``."""
        return [
            (name, wave.name)
            for name, pipeline in self.pipelines.items()
            for wave in pipeline.waves
            if target in wave.targets
        ]

    @model_validator(mode="after")
    def _repos_exist(self) -> WavelineConfig:
        for name, pipeline in self.pipelines.items():
            if pipeline.repo not in self.repos:
                raise ValueError(
                    f"pipelines.{name}.repo: {pipeline.repo!r} is not under repos: "
                    f"(known: {sorted(self.repos)})"
                )
        return self


class Secrets(BaseModel):
    """Inbound tokens resolved from the environment. Never logged (``SecretStr``)."""

    model_config = ConfigDict(frozen=True)

    ci_token: SecretStr | None = None
    github_webhook_secret: SecretStr | None = None
    argocd_token: SecretStr | None = None
    operator_token: SecretStr | None = None

    @classmethod
    def from_env(cls, auth: AuthConfig, env: dict[str, str] | None = None) -> Secrets:
        source = os.environ if env is None else env

        def get(name: str) -> SecretStr | None:
            value = source.get(name)
            return SecretStr(value) if value else None

        return cls(
            ci_token=get(auth.ci_token_env),
            github_webhook_secret=get(auth.github_webhook_secret_env),
            argocd_token=get(auth.argocd_token_env),
            operator_token=get(auth.operator_token_env),
        )


class Settings(BaseSettings):
    """Process settings from ``WAVELINE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="WAVELINE_", frozen=True, extra="ignore")

    config: Path = Path("waveline.yaml")
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: SecretStr = SecretStr("postgresql://waveline@127.0.0.1:5432/waveline")
    # Each test run gets its own schema, topic prefix and group prefix; production uses the
    # defaults.
    database_schema: str = "waveline"
    topic_prefix: str = ""
    group_prefix: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_max_body: int = 256 * 1024
    data_dir: Path = Path(".run/data")
    publish_timeout_s: float = 5.0
    # git-writer fetches before a batch when its last fetch is older than this (leases make
    # skipping safe; see Applier.refresh_if_stale). 0 fetches before every batch.
    git_fetch_interval_s: float = 1.0
    log_level: str = "INFO"

    @field_validator("database_schema", "topic_prefix", "group_prefix")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value):
            raise ValueError(f"invalid identifier {value!r}")
        return value


def _format_validation(path: Path, error: ValidationError) -> str:
    lines = [f"invalid config {path}:"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def load_config(path: Path) -> WavelineConfig:
    """Load and validate the YAML file. Raises ``ConfigError`` naming the bad field and why."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist (set WAVELINE_CONFIG)") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid config {path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid config {path}: the top level must be a mapping")
    try:
        return WavelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, exc)) from exc


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_format_validation(Path("<environment WAVELINE_*>"), exc)) from exc

"""Configuration: process settings from the environment (docs/configuration.md) and the
pipeline file (README.md, Configuration).

Both are frozen and loaded once at start, then passed in. Secrets are ``SecretStr`` read from
environment variables whose names the file may choose; the file never holds a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
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
from waveline.shared.flux import TargetName
from waveline.shared.flux_config import FluxSettings
from waveline.shared.freeze_config import FreezeWindows, PipelineFreeze
from waveline.shared.gitengine import transport
from waveline.shared.gitengine.signing import SigningConfig
from waveline.shared.github_config import DispatchConfig, GitHubAppConfig
from waveline.shared.names import NAME_PATTERN, check_relative_path
from waveline.shared.quorum import MinHealthy, required_healthy
from waveline.shared.reconcile_config import ReconcileSettings
from waveline.shared.verify_config import (
    PrometheusServer,
    Verification,
    missing_server,
    secret_envs,
    unique_names,
)

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


class ForgeConfig(_Frozen):
    """Where pull requests are opened: GitHub's REST API, or GitLab's v4 (docs/gitlab.md).
    ``api_url`` and ``token_env`` default by ``kind`` (``WAVELINE_GITLAB_TOKEN`` holds a
    GitLab project access token)."""

    kind: Literal["github", "gitlab"] = "github"
    api_url: str = "https://api.github.com"
    token_env: str = "WAVELINE_GITHUB_TOKEN"  # noqa: S105 (a variable name)
    # A GitHub App instead of a token, for the REST API and git over HTTPS (docs/github.md).
    app: GitHubAppConfig | None = None

    @model_validator(mode="after")
    def _app_or_token(self) -> ForgeConfig:
        if self.app is not None and self.kind != "github":
            raise ValueError("app: a GitHub App authenticates to GitHub only (kind: github)")
        default = type(self).model_fields["token_env"].default
        if self.app is not None and self.token_env != default:
            raise ValueError("give app or token_env, not both: the App mints the tokens")
        return self

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "gitlab":
            data = {
                "api_url": "https://gitlab.com/api/v4",
                "token_env": "WAVELINE_GITLAB_TOKEN",
                **data,
            }
        return data


class RequiredCheck(_Frozen):
    """A check context that must be green, and who must report it: ``app`` (a GitHub App's
    slug) or ``user`` (a login); neither: anyone (docs/security.md, Deploy reports, checks,
    approvals). A plain string in the file is a check anyone may report."""

    name: str = Field(min_length=1, max_length=255)
    app: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    user: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\[\]-]{0,99}$")

    @model_validator(mode="after")
    def _one_reporter(self) -> RequiredCheck:
        if self.app is not None and self.user is not None:
            raise ValueError(f"required check {self.name!r}: name an app or a user, not both")
        return self


class RepoConfig(_Frozen):
    """A config repository Waveline commits to."""

    url: str
    watched_branch: str = "master"
    auto_branch: str = "auto"
    token_env: str | None = None
    ssh_key_env: str | None = None
    # Git transport (docs/security.md): a token crosses http:// only with this set; an SSH
    # remote needs the env var holding its known_hosts lines (others' host keys are refused).
    allow_insecure_http: bool = False
    ssh_known_hosts_env: str | None = None
    author: Author = Author()
    required_checks: tuple[RequiredCheck, ...] = ()
    # "owner/name" on the forge, as GitHub webhooks name it ("group/sub/name" on GitLab);
    # derived from url when unset.
    forge_name: str | None = None
    # Needed by pipelines or waves whose strategy is pull-request.
    forge: ForgeConfig | None = None
    # Sign every commit Waveline writes here (docs/security.md, Signed commits).
    signing: SigningConfig | None = None

    def full_name(self) -> str:
        if self.forge_name:
            return self.forge_name
        if self.forge is not None and self.forge.kind == "gitlab":
            # GitLab nests projects in subgroups: the whole path after the host is the name.
            after_host = r"(?:(?:https?|ssh)://[^/]+/|[\w.-]+@[\w.-]+:)/*(.+?)(?:\.git)?/*"
            found = re.fullmatch(after_host, self.url)
            if found:
                return found.group(1)
        path = re.split(r"[:/]", self.url.rstrip("/"))
        tail = [p for p in path if p][-2:]
        return "/".join(tail).removesuffix(".git")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not re.match(r"^(https?|ssh|file)://", url) and not re.match(r"^[\w.-]+@[\w.-]+:", url):
            raise ValueError("url must be https://, http://, ssh://, file:// or user@host:path")
        return url

    @field_validator("required_checks", mode="before")
    @classmethod
    def _check_strings(cls, checks: Any) -> Any:
        """``ci/validate`` is short for ``{name: ci/validate}`` (anyone may report it)."""
        if isinstance(checks, list | tuple):
            return tuple({"name": c} if isinstance(c, str) else c for c in checks)
        return checks

    def required_check_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.required_checks)

    def git_uses_app(self) -> bool:
        """True when git over HTTP(S) authenticates with the forge's GitHub App token (the
        forge names an App and the repo no ``token_env`` of its own)."""
        app = self.forge.app if self.forge is not None else None
        scheme = transport.origin_of(self.url).scheme
        return app is not None and not self.token_env and scheme in ("http", "https")

    @field_validator("watched_branch", "auto_branch")
    @classmethod
    def _branch_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", name) or ".." in name:
            raise ValueError(f"invalid branch name {name!r}")
        return name

    @model_validator(mode="after")
    def _safe_transport(self) -> RepoConfig:
        refusal = transport.config_refusal(
            self.url,
            self.token_env,
            self.allow_insecure_http,
            self.ssh_known_hosts_env,
            app_token=self.git_uses_app(),
        )
        if refusal is not None:
            raise ValueError(refusal)
        return self


class LayoutConfig(_Frozen):
    """How an image set lands in the repo (README.md, Layouts)."""

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


StrategyKind = Literal["commit", "pull-request", "webhook"]


class StrategyConfig(_Frozen):
    """How a promotion reaches the config repo (README.md, Promotion by pull request or webhook).

    ``commit``: git-writer commits on ``auto`` (checks, then fast-forward of ``watched``).
    ``pull-request``: git-writer pushes ``branch`` (built on ``watched``) and Waveline opens or
    updates one pull request into ``base``; merged → done, closed unmerged → cancelled.
    ``webhook``: the notifier POSTs a signed CloudEvent to ``url`` (or the secret's
    ``address``); the receiver reports the result back over HTTP.
    """

    kind: StrategyKind = "commit"
    # webhook: the secret (env var ``secret_env``) is a YAML map with address, proxy, token,
    # headers, as Flux providers take it; ``url`` and ``headers`` here are the non-secret part.
    url: str | None = None
    secret_env: str | None = None
    headers: dict[str, str] = {}
    # webhook: what is sent. ``repository_dispatch`` triggers a GitHub Actions workflow
    # through the repo's forge (App or token) instead (docs/github.md).
    format: Literal["cloudevents", "repository_dispatch"] = "cloudevents"
    dispatch: DispatchConfig = DispatchConfig()
    # pull-request
    branch: str = "waveline/{pipeline}/{wave}"
    base: str | None = None  # default: the repo's watched branch
    auto_merge: bool = False
    merge_method: Literal["merge", "squash", "rebase"] = "merge"
    # GitLab: ask GitLab to merge once the merge request's pipeline succeeds (its auto-merge),
    # instead of Waveline merging when the repo's required checks are green (auto_merge).
    merge_when_pipeline_succeeds: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^\s/]+", url):
            raise ValueError("url must be an http:// or https:// address")
        return url

    @field_validator("branch")
    @classmethod
    def _branch_template(cls, branch: str) -> str:
        sample = branch.replace("{pipeline}", "p").replace("{wave}", "w")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", sample) or ".." in sample:
            raise ValueError(f"invalid branch template {branch!r}")
        if "{wave}" not in branch or "{pipeline}" not in branch:
            raise ValueError(
                "branch must contain {pipeline} and {wave}: one promotion branch per wave"
            )
        return branch

    def branch_for(self, pipeline: str, wave: str) -> str:
        return self.branch.replace("{pipeline}", pipeline).replace("{wave}", wave)


class DeliveryConfig(_Frozen):
    """Retry rules for every outbound HTTP delivery (webhook promotions, notifications)."""

    max_attempts: int = Field(default=6, ge=1, le=50)
    backoff: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=1)
    timeout: timedelta = timedelta(seconds=10)

    @field_validator("backoff", "cap", "timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @model_validator(mode="after")
    def _bounds(self) -> DeliveryConfig:
        if self.backoff <= timedelta(0) or self.timeout <= timedelta(0):
            raise ValueError("backoff and timeout must be greater than zero")
        if self.timeout > timedelta(minutes=5):
            raise ValueError("timeout must be at most 5m")
        if self.cap < self.backoff:
            raise ValueError("cap must be at least backoff")
        return self


NotificationEvent = Literal["evicted", "failed", "degraded", "promotion_done", "dead_letter"]


class NotificationConfig(_Frozen):
    """A generic webhook told about events (CloudEvents JSON, or Slack's ``text``)."""

    format: Literal["cloudevents", "slack"] = "cloudevents"
    url: str | None = None
    secret_env: str | None = None
    headers: dict[str, str] = {}
    events: tuple[NotificationEvent, ...] = (
        "evicted",
        "failed",
        "degraded",
        "promotion_done",
        "dead_letter",
    )
    pipelines: tuple[str, ...] = ()  # empty: every pipeline

    @model_validator(mode="after")
    def _has_address(self) -> NotificationConfig:
        if self.url is None and self.secret_env is None:
            raise ValueError("a notification needs url or secret_env (whose address is used)")
        return self


class GateConfig(_Frozen):
    bake: timedelta = timedelta(0)
    approval: bool = False

    @field_validator("bake", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class WaveConfig(_Frozen):
    name: Name
    # An Argo CD Application's name, or a Flux object's Kustomization/<namespace>/<name>
    # or HelmRelease/<namespace>/<name> (docs/flux.md).
    targets: tuple[TargetName, ...] = Field(min_length=1)
    gate: GateConfig = GateConfig()
    strategy: StrategyConfig | None = None
    # This wave's own freeze windows, besides the pipeline's (docs/gates.md).
    freeze: FreezeWindows = FreezeWindows()
    # Checks after the wave runs a set (docs/gates.md, Verification); a failed one fails
    # the wave, then holds it or rolls it back.
    verifications: tuple[Verification, ...] = ()
    on_failure: Literal["hold", "rollback"] = "hold"
    # A quorum wave (docs/gates.md, Quorum waves): runs a set once this many targets do.
    min_healthy: MinHealthy | None = None
    tolerate_degraded: bool = False

    @model_validator(mode="after")
    def _quorum(self) -> WaveConfig:
        required_healthy(len(self.targets), self.min_healthy)  # raises what is wrong
        return self

    @field_validator("verifications")
    @classmethod
    def _verification_names(cls, found: tuple[Verification, ...]) -> tuple[Verification, ...]:
        return unique_names(found)


class PipelineConfig(_Frozen):
    repo: Name
    layout: LayoutConfig = LayoutConfig(kind="images-json")
    strategy: StrategyConfig = StrategyConfig()
    waves: tuple[WaveConfig, ...] = Field(min_length=1)
    # A token (besides the operator's) allowed to report webhook promotion results.
    result_token_env: str | None = None
    # Image repositories (registry/path, no tag or digest) an announcement may name, as
    # fnmatch globs; empty: any (docs/security.md, Tokens, roles and actors).
    allowed_images: tuple[str, ...] = ()
    # Freeze windows for every wave, and whether they stop introductions (docs/gates.md).
    freeze: PipelineFreeze = PipelineFreeze()

    def strategy_of(self, wave: str) -> StrategyConfig:
        """The wave's own strategy when it overrides the pipeline's."""
        found = self.wave(wave)
        return found.strategy if found is not None and found.strategy else self.strategy

    @field_validator("allowed_images")
    @classmethod
    def _image_patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            if not pattern or "@" in pattern or pattern != pattern.strip():
                raise ValueError(
                    f"invalid allowed_images pattern {pattern!r}: a registry/repository glob,"
                    " without tag or digest"
                )
        return patterns

    @model_validator(mode="after")
    def _unique_waves(self) -> PipelineConfig:
        names = [w.name for w in self.waves]
        if len(set(names)) != len(names):
            raise ValueError(f"wave names must be unique, got {names}")
        return self

    def wave(self, name: str) -> WaveConfig | None:
        return next((w for w in self.waves if w.name == name), None)


TokenRole = Literal["ci", "operator", "result", "argocd"]
# The names the single-token settings go by as actors (shared/auth_rules.py); a result
# token of pipeline P is "result:P", which no token of ``auth.tokens`` can be called.
RESERVED_TOKEN_NAMES = frozenset({"ci", "operator", "argocd"})


class TokenConfig(_Frozen):
    """A named inbound token: its role, the pipelines it may act on (names or fnmatch
    globs) and the environment variable holding it. Its name is the actor it records."""

    name: Name
    role: TokenRole
    pipelines: tuple[str, ...] = Field(min_length=1)
    token_env: str = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_TOKEN_NAMES:
            raise ValueError(f"token name {name!r} is the single-token setting's; choose another")
        return name

    @field_validator("pipelines")
    @classmethod
    def _patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            if not pattern.strip() or pattern != pattern.strip():
                raise ValueError(f"invalid pipeline pattern {pattern!r}")
        return patterns


class AuthConfig(_Frozen):
    """Names of the environment variables that hold the inbound tokens.

    The single-token settings are shorthands: each is a token of its role on every pipeline
    (actor ``ci``, ``operator``, ``argocd``); ``tokens`` adds named, scoped ones. Both count.
    """

    ci_token_env: str = "WAVELINE_CI_TOKEN"  # noqa: S105 (a variable name)
    github_webhook_secret_env: str = "WAVELINE_GITHUB_WEBHOOK_SECRET"  # noqa: S105 (a variable name)
    gitlab_webhook_secret_env: str = "WAVELINE_GITLAB_WEBHOOK_SECRET"  # noqa: S105 (a variable name)
    argocd_token_env: str = "WAVELINE_ARGOCD_TOKEN"  # noqa: S105 (a variable name)
    operator_token_env: str = "WAVELINE_OPERATOR_TOKEN"  # noqa: S105 (a variable name)
    tokens: tuple[TokenConfig, ...] = ()

    @model_validator(mode="after")
    def _unique_tokens(self) -> AuthConfig:
        names = [t.name for t in self.tokens]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"auth.tokens: names must be unique, got {twice} more than once")
        return self


class WavelineConfig(_Frozen):
    """The whole ``WAVELINE_CONFIG`` file."""

    repos: dict[Name, RepoConfig]
    pipelines: dict[Name, PipelineConfig]
    auth: AuthConfig = AuthConfig()
    notifications: dict[Name, NotificationConfig] = {}
    delivery: DeliveryConfig = DeliveryConfig()
    # The Prometheus that wave verifications query unless they name their own server.
    prometheus: PrometheusServer | None = None

    def secret_env_names(self) -> set[str]:
        """Every environment variable the file names for an outbound secret."""
        names: set[str] = set()
        for repo in self.repos.values():
            if repo.forge is not None:
                names.add(repo.forge.token_env)
                if repo.forge.app is not None:
                    names.add(repo.forge.app.private_key_env)
        for pipeline in self.pipelines.values():
            strategies = [pipeline.strategy, *(w.strategy for w in pipeline.waves if w.strategy)]
            names.update(s.secret_env for s in strategies if s.secret_env)
            if pipeline.result_token_env:
                names.add(pipeline.result_token_env)
        names.update(n.secret_env for n in self.notifications.values() if n.secret_env)
        checks = [v for p in self.pipelines.values() for w in p.waves for v in w.verifications]
        names.update(secret_envs(self.prometheus, checks))
        return names

    def _check_dispatch(
        self, where: str, name: str, pipeline: PipelineConfig, wave: WaveConfig | None
    ) -> None:
        forge = self.repos[pipeline.repo].forge
        if forge is None or forge.kind != "github":
            raise ValueError(
                f"{where}.strategy: repository_dispatch needs repos.{pipeline.repo}.forge"
                " (GitHub, with an app or a token)"
            )
        dispatch = pipeline.strategy_of(wave.name).dispatch if wave else pipeline.strategy.dispatch
        for wave_name in [wave.name] if wave else [w.name for w in pipeline.waves]:
            problem = dispatch.problem(name, wave_name)
            if problem is not None:
                raise ValueError(f"{where}.strategy.dispatch: {problem}")

    def repo_by_full_name(self, full_name: str) -> str | None:
        """The config key of the repo GitHub calls ``full_name`` (case-insensitive)."""
        wanted = full_name.lower()
        return next((k for k, r in self.repos.items() if r.full_name().lower() == wanted), None)

    def pipelines_of_target(self, target: str) -> list[tuple[str, str]]:
        """(pipeline, wave) pairs whose wave lists Argo CD application ``target``."""
        # Every deploy report asks: walking every wave's targets each time cost ~2 ms a
        # report with 1,000 pipelines (bench/fleet.py). The config is frozen, so the index
        # is built once, kept beside the fields and rebuilt for a copy with other pipelines
        # (model_copy copies it along).
        built = self.__dict__.get("_waves_by_target")
        if built is None or built[0] is not self.pipelines:
            found: dict[str, list[tuple[str, str]]] = {}
            for name, pipeline in self.pipelines.items():
                for wave in pipeline.waves:
                    for each in dict.fromkeys(wave.targets):
                        found.setdefault(each, []).append((name, wave.name))
            built = (self.pipelines, found)
            self.__dict__["_waves_by_target"] = built
        return list(built[1].get(target, ()))

    @model_validator(mode="after")
    def _repos_exist(self) -> WavelineConfig:
        for name, pipeline in self.pipelines.items():
            if pipeline.repo not in self.repos:
                raise ValueError(
                    f"pipelines.{name}.repo: {pipeline.repo!r} is not under repos: "
                    f"(known: {sorted(self.repos)})"
                )
            for wave in (None, *pipeline.waves):
                where = f"pipelines.{name}" + (f".waves.{wave.name}" if wave else "")
                strategy = pipeline.strategy if wave is None else wave.strategy
                if strategy is None:
                    continue
                if strategy.kind == "pull-request" and self.repos[pipeline.repo].forge is None:
                    raise ValueError(
                        f"{where}.strategy: pull-request needs repos.{pipeline.repo}.forge"
                    )
                forge = self.repos[pipeline.repo].forge
                if strategy.merge_when_pipeline_succeeds and (
                    strategy.auto_merge or forge is None or forge.kind != "gitlab"
                ):
                    raise ValueError(
                        f"{where}.strategy: merge_when_pipeline_succeeds needs a gitlab forge"
                        " and no auto_merge (one of them merges)"
                    )
                if strategy.kind == "webhook" and strategy.format == "repository_dispatch":
                    self._check_dispatch(where, name, pipeline, wave)
                elif strategy.kind == "webhook" and not (strategy.url or strategy.secret_env):
                    raise ValueError(f"{where}.strategy: webhook needs url or secret_env")
            for wave in pipeline.waves:
                where = f"pipelines.{name}.waves.{wave.name}"
                missing_server(self.prometheus, where, wave.verifications)
        for name, notification in self.notifications.items():
            unknown = set(notification.pipelines) - set(self.pipelines)
            if unknown:
                raise ValueError(f"notifications.{name}.pipelines: unknown {sorted(unknown)}")
        for token in self.auth.tokens:
            # A plain name (no glob) is meant to be a pipeline: a typo would scope to nothing.
            unknown = {p for p in token.pipelines if not set(p) & set("*?[")} - set(self.pipelines)
            if unknown:
                raise ValueError(f"auth.tokens.{token.name}.pipelines: unknown {sorted(unknown)}")
        return self


class Secrets(BaseModel):
    """Inbound tokens resolved from the environment. Never logged (``SecretStr``)."""

    model_config = ConfigDict(frozen=True)

    ci_token: SecretStr | None = None
    github_webhook_secret: SecretStr | None = None
    gitlab_webhook_secret: SecretStr | None = None  # X-Gitlab-Token of GitLab's webhooks
    argocd_token: SecretStr | None = None
    operator_token: SecretStr | None = None
    # Secrets by the environment variable the config names (forge tokens, webhook secrets,
    # per-pipeline result tokens, the tokens of ``auth.tokens``).
    named: dict[str, SecretStr] = {}

    def get(self, env_name: str | None) -> SecretStr | None:
        return self.named.get(env_name) if env_name else None

    @classmethod
    def from_env(
        cls,
        auth: AuthConfig,
        env: Mapping[str, str] | None = None,
        names: Iterable[str] = (),
    ) -> Secrets:
        source = os.environ if env is None else env

        def get(name: str) -> SecretStr | None:
            value = source.get(name)
            return SecretStr(value) if value else None

        wanted = {*names, *(t.token_env for t in auth.tokens)}
        named = {n: v for n in wanted if (v := get(n)) is not None}
        return cls(
            ci_token=get(auth.ci_token_env),
            github_webhook_secret=get(auth.github_webhook_secret_env),
            gitlab_webhook_secret=get(auth.gitlab_webhook_secret_env),
            argocd_token=get(auth.argocd_token_env),
            operator_token=get(auth.operator_token_env),
            named=named,
        )


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
# The SASL mechanisms aiokafka speaks without a system library (GSSAPI needs Kerberos).
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


def kafka_security_problems(s: Settings) -> list[str]:
    """What is wrong with the Kafka security settings of ``s`` (empty: nothing): a SASL
    protocol without its mechanism or credentials, a TLS file that is not there, and any
    setting the protocol would never use (a password given for PLAINTEXT is a mistake to
    report, not one to ignore silently)."""

    def env(name: str) -> str:
        return f"WAVELINE_KAFKA_{name.upper()}"

    def given(name: str) -> bool:
        value = getattr(s, f"kafka_{name}")
        return bool(value.get_secret_value() if isinstance(value, SecretStr) else value)

    protocol, mechanism = s.kafka_security_protocol, s.kafka_sasl_mechanism
    problems: list[str] = []
    needed: list[str] = []
    unused = ["sasl_mechanism", "sasl_username", "sasl_password", "sasl_oauth_token"]
    if protocol.startswith("SASL_"):
        unused.remove("sasl_mechanism")
        if mechanism is None:
            problems.append(
                f"{env('sasl_mechanism')} is required with security protocol {protocol} "
                "(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)"
            )
        else:
            needed = (
                ["sasl_oauth_token"]
                if mechanism == "OAUTHBEARER"
                else ["sasl_username", "sasl_password"]
            )
            unused = [n for n in unused if n not in needed and n != "sasl_mechanism"]
    files = ["ssl_cafile", "ssl_certfile", "ssl_keyfile"]
    if not protocol.endswith("SSL"):
        unused += [*files, "ssl_key_password"]
    problems += [
        f"{env(n)} is required with {protocol} and {mechanism}" for n in needed if not given(n)
    ]
    problems += [
        f"{env(n)} is set but security protocol {protocol}"
        + (f" with {mechanism}" if mechanism and protocol.startswith("SASL_") else "")
        + " never uses it"
        for n in unused
        if getattr(s, f"kafka_{n}") is not None
    ]
    if protocol.endswith("SSL"):
        for name in files:
            path = getattr(s, f"kafka_{name}")
            if path is not None and not Path(path).is_file():
                problems.append(f"{env(name)}: {path} is not a file")
        if s.kafka_ssl_keyfile is not None and s.kafka_ssl_certfile is None:
            problems.append(f"{env('ssl_keyfile')} needs {env('ssl_certfile')}")
        if s.kafka_ssl_key_password is not None and s.kafka_ssl_certfile is None:
            problems.append(f"{env('ssl_key_password')} needs {env('ssl_certfile')}")
    return problems


class Settings(BaseSettings):
    """Process settings from ``WAVELINE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="WAVELINE_", frozen=True, extra="ignore")

    config: Path = Path("waveline.yaml")
    kafka_bootstrap: str = "127.0.0.1:9092"
    # How every Kafka client authenticates (shared/kafka_clients.py, docs/security.md): the
    # security protocol; for SASL_* the mechanism and its credentials; for SSL and SASL_SSL
    # the CA that signed the brokers' certificates (unset: the system's CAs), an optional
    # client certificate and key, and whether the broker's name must match its certificate.
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_oauth_token: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True
    database_url: SecretStr = SecretStr("postgresql://waveline@127.0.0.1:5432/waveline")
    # Each test run gets its own schema, topic prefix and group prefix; production uses the
    # defaults.
    database_schema: str = "waveline"
    # Each service's connections to PostgreSQL, all opened at start, before the service
    # says it is ready: one opened on demand (a backend forked and authenticated) cost the
    # first image set after start up to 90 ms (docs/benchmarks.md, Whole path).
    database_pool_min_size: int = Field(default=5, ge=0, le=100)
    database_pool_max_size: int = Field(default=5, ge=1, le=100)
    topic_prefix: str = ""
    group_prefix: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_max_body: int = 256 * 1024
    # The HTTP front door (services/ingest/frontdoor.py, docs/reliability.md): a client has
    # this long to send a request's head (request line and headers), counted from the
    # connection's start or the head's first byte, and this long to send its body; an idle
    # keep-alive connection closes after the idle timeout; past max connections a new one
    # is closed at once.
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    http_body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    http_idle_timeout_s: float = Field(default=75.0, gt=0, le=86400)
    http_max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    data_dir: Path = Path(".run/data")
    publish_timeout_s: float = 5.0
    # The most a producer puts in one batch of a partition (aiokafka's ``max_batch_size``,
    # Kafka's ``batch.size``). aiokafka sends one batch per partition at a time, so while a
    # produce request waits for acks=all, what is published meanwhile gathers in the next
    # batch; at aiokafka's 16 KiB default three 20-service image sets fill it and the
    # fourth publish waits a whole round trip (docs/benchmarks.md, Whole path). Under the
    # brokers' default message.max.bytes (1 MiB).
    kafka_max_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024, le=1024 * 1024)
    # Consumers commit the offsets of handled messages at most this often (see
    # shared/offsets.py); 0 commits after every batch. A crash redelivers at most this much.
    commit_interval_s: float = Field(default=0.5, ge=0)
    # How long consumers off the announce-to-commit path let messages gather per fetch
    # (Runtime.consume's ``batched``).
    batched_fetch_wait_ms: int = Field(default=200, ge=0, le=5000)
    # git-writer fetches before a batch when its last fetch is older than this (leases make
    # skipping safe; see Applier.refresh_if_stale). 0 fetches before every batch.
    git_fetch_interval_s: float = 1.0
    # git-writer: a config-repo file larger than this is refused unread (the command meeting
    # it is rejected), and the objects a repo process holds in memory are packed once they
    # hold this many bytes, besides every 2,000 branch updates (docs/reliability.md).
    git_max_file_bytes: int = Field(default=1024 * 1024, ge=1024)
    git_memory_pack_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    # libgit2's cache of parsed objects in each repo process (its own default is 256 MiB,
    # which a long-running writer fills with trees it will not read again).
    git_object_cache_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    # The git-writer repo processes' interpreter switch interval: how long a build or push
    # may wait for the GIL (held by packing beside it) on each callback into Python
    # (CPython's default is 5 ms).
    gil_switch_interval_ms: float = Field(default=0.5, gt=0, le=100)
    # Replicas of every Waveline topic and the topic config min.insync.replicas: an acks=all
    # publish is acknowledged once that many replicas hold it. 1/1 suits the one-node dev
    # stack; a cluster uses 3/2, so one broker may be down without refusing publishes and no
    # acknowledged record lives on one disk only (docs/reliability.md, Replication).
    topic_replication_factor: int = Field(default=1, ge=1, le=32)
    topic_min_insync_replicas: int = Field(default=1, ge=1, le=32)
    # Retention (shared/retention.py, docs/reliability.md): rows of the tables that grow
    # with traffic older than this go, unless a rule still needs them; per table (by table
    # name) in the JSON map.
    retention_days: float = Field(default=30.0, gt=0)
    retention_days_by_table: dict[str, float] = {}
    # No row goes younger than this, whatever the above say: as long as the Kafka topics
    # keep a record (retention.ms; the broker's default is 7 days), a redelivery or a
    # replay of it needs these rows to stay a no-op.
    retention_redelivery_days: float = Field(default=7.0, ge=0)
    # Each wave's newest runs are kept whatever their age: its rollback targets.
    retention_wave_runs: int = Field(default=10, ge=2)
    # Rows deleted per statement (one short transaction each), and the time between passes.
    retention_batch_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    retention_interval_s: float = Field(default=3600.0, gt=0)
    # A deploy report about a revision not known on the watched branch is held this long
    # for its git event, then dropped and counted as ignored (docs/security.md, Deploy
    # reports, checks, approvals).
    deploy_hold_s: float = Field(default=300.0, gt=0, le=86400)
    log_level: str = "INFO"
    # Consumers waiting out an outage (shared/outage.py): the first and the longest wait
    # between tries; they try again indefinitely.
    retry_backoff_s: float = Field(default=0.2, gt=0, le=60)
    retry_cap_s: float = Field(default=10.0, gt=0, le=600)
    # git-writer: libgit2's connect timeout and read/write timeout for fetches and pushes,
    # and the deadline of every call into a repo process (killed and restarted after it).
    git_connect_timeout_s: float = Field(default=10.0, gt=0, le=600)
    git_io_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    git_call_deadline_s: float = Field(default=120.0, gt=0, le=7200)
    # The consumers' health endpoint (/healthz, /readyz, /metrics); unset: none. Ingest
    # serves the same paths on its own port.
    health_host: str = "127.0.0.1"
    health_port: int | None = Field(default=None, ge=0, le=65535)
    # Dashboard and metrics (docs/security.md): the dashboard needs the operator token
    # unless this is "loopback" (then a request from loopback naming a loopback Host needs
    # none); /metrics (ingest's and the consumers') needs this bearer token when set.
    dashboard_open: Literal["off", "loopback"] = "off"
    metrics_token: SecretStr | None = None
    # The reconciler (docs/reconcile.md): WAVELINE_RECONCILE_*, WAVELINE_ARGOCD_API_*.
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    # Flux (docs/flux.md): WAVELINE_FLUX_* (its webhook's secrets), WAVELINE_KUBE_API_*.
    flux: FluxSettings = Field(default_factory=FluxSettings)

    @field_validator("database_schema", "topic_prefix", "group_prefix")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value):
            raise ValueError(f"invalid identifier {value!r}")
        return value

    @field_validator("retention_days_by_table")
    @classmethod
    def _positive_days(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(table for table, days in value.items() if not days > 0)
        if bad:
            raise ValueError(f"retention days must be greater than zero (tables {bad})")
        return value

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> Settings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"WAVELINE_TOPIC_MIN_INSYNC_REPLICAS ({self.topic_min_insync_replicas}) must not "
                f"exceed WAVELINE_TOPIC_REPLICATION_FACTOR ({self.topic_replication_factor}): "
                "no publish with acks=all could ever be acknowledged"
            )
        return self

    @model_validator(mode="after")
    def _pool_sizes(self) -> Settings:
        if self.database_pool_min_size > self.database_pool_max_size:
            raise ValueError(
                f"WAVELINE_DATABASE_POOL_MIN_SIZE ({self.database_pool_min_size}) must not "
                f"exceed WAVELINE_DATABASE_POOL_MAX_SIZE ({self.database_pool_max_size})"
            )
        return self

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        problems = kafka_security_problems(self)
        if problems:
            raise ValueError("Kafka security settings: " + "; ".join(problems))
        return self


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

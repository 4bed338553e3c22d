"""``waveline publish`` as a Drone/Woodpecker plugin, and straight-to-Kafka publish (README.md,
Operating it).

Plugin mode reads ``PLUGIN_*`` variables — ``GIT_REPO``, ``BRANCH``, ``IMAGE_TAG``,
``DESTINATION_FILE``, ``AUTHOR_NAME``, ``AUTHOR_EMAIL``, ``COMMIT_MESSAGE`` (with ``$VAR``
expansion of the non-secret CI variables in ``SAFE_VARIABLES`` only), ``ACCESS_TOKEN`` and,
to sign the commit as the git-writer signs its own, ``SIGNING_FORMAT`` (ssh or openpgp) with
the key in ``SIGNING_KEY`` (and ``SIGNING_PASSPHRASE`` if it has one) — and commits the
tag into the file on the branch with Waveline's git engine: no working tree, a lease on the
branch, one retry from fresh state if someone pushed in between.
"""

from __future__ import annotations

import json
import re
import string
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from waveline.cli.ops import CliError
from waveline.shared import kafka_clients
from waveline.shared.config import Author, RepoConfig, Settings
from waveline.shared.errors import ConfigError, GitFailure, PushRejected
from waveline.shared.gitengine.repo import ConfigRepo, Credentials
from waveline.shared.gitengine.signing import Signer, SigningConfig
from waveline.shared.names import check_relative_path
from waveline.shared.topics import Topics

DEFAULT_MESSAGE = "[Auto] Automated commit to write $PLUGIN_IMAGE_TAG to $PLUGIN_DESTINATION_FILE"

# What ``PLUGIN_COMMIT_MESSAGE`` may expand: the plugin's own non-secret settings and the
# build facts Drone (``DRONE_*``) and Woodpecker (``CI_*``) set. Any other ``$VAR`` is left as
# written. An allow-list, not a deny-list: CI systems put secrets into the environment under
# any name (``from_secret`` settings become ``PLUGIN_*``, the clone credential is
# ``DRONE_NETRC_PASSWORD``/``CI_NETRC_PASSWORD``), and a commit message is public for ever.
# ``PLUGIN_GIT_REPO`` is left out: its URL may carry credentials.
SAFE_VARIABLES = frozenset(
    {
        "PLUGIN_IMAGE_TAG",
        "PLUGIN_DESTINATION_FILE",
        "PLUGIN_BRANCH",
        "PLUGIN_AUTHOR_NAME",
        "PLUGIN_AUTHOR_EMAIL",
        *(
            f"DRONE_{name}"
            for name in (
                "BUILD_NUMBER",
                "BUILD_LINK",
                "BUILD_EVENT",
                "BRANCH",
                "TAG",
                "COMMIT",
                "COMMIT_SHA",
                "COMMIT_BRANCH",
                "COMMIT_REF",
                "COMMIT_LINK",
                "COMMIT_AUTHOR",
                "COMMIT_MESSAGE",
                "PULL_REQUEST",
                "SOURCE_BRANCH",
                "TARGET_BRANCH",
                "REPO",
                "REPO_NAME",
                "REPO_OWNER",
                "REPO_LINK",
                "STAGE_NAME",
                "STEP_NAME",
            )
        ),
        *(
            f"CI_{name}"
            for name in (
                "PIPELINE_NUMBER",
                "PIPELINE_URL",
                "PIPELINE_EVENT",
                "BUILD_NUMBER",
                "BUILD_LINK",
                "BUILD_EVENT",
                "COMMIT_SHA",
                "COMMIT_BRANCH",
                "COMMIT_REF",
                "COMMIT_TAG",
                "COMMIT_URL",
                "COMMIT_LINK",
                "COMMIT_AUTHOR",
                "COMMIT_MESSAGE",
                "COMMIT_PULL_REQUEST",
                "COMMIT_SOURCE_BRANCH",
                "COMMIT_TARGET_BRANCH",
                "REPO",
                "REPO_NAME",
                "REPO_OWNER",
                "REPO_URL",
                "STEP_NAME",
                "WORKFLOW_NAME",
            )
        ),
    }
)
# Variables whose values are secrets by their name; none of their values may reach a commit
# message, however they got there (a safe variable holding a token, a URL with userinfo).
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|_KEY$|NETRC")
# Shorter values are not credentials, and refusing on them would refuse ordinary words.
_MIN_SECRET = 6


def is_plugin_run(env: Mapping[str, str]) -> bool:
    return "PLUGIN_GIT_REPO" in env and "PLUGIN_IMAGE_TAG" in env


def _need(env: Mapping[str, str], name: str) -> str:
    value = env.get(f"PLUGIN_{name}", "").strip()
    if not value:
        raise CliError(f"PLUGIN_{name} is required")
    return value


def commit_message(env: Mapping[str, str]) -> str:
    """``PLUGIN_COMMIT_MESSAGE`` (or the default) with the ``SAFE_VARIABLES`` in ``env``
    expanded and every other ``$VAR`` left as written. Raises ``CliError`` when the result
    would still hold the value of a secret variable of ``env`` (``PLUGIN_ACCESS_TOKEN``, any
    ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*_KEY``, ``*NETRC*``), never quoting it."""
    safe = {name: value for name, value in env.items() if name in SAFE_VARIABLES}
    template = env.get("PLUGIN_COMMIT_MESSAGE") or DEFAULT_MESSAGE
    message = string.Template(template).safe_substitute(safe)
    for name, value in sorted(env.items()):
        secret = value.strip()
        if _SECRET_NAME.search(name) and len(secret) >= _MIN_SECRET and secret in message:
            raise CliError(
                f"the commit message would contain the value of {name}; refusing to "
                "commit a secret (only the variables in docs/security.md are expanded)"
            )
    return message


def _without_userinfo(url: str) -> str:
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", url, flags=re.IGNORECASE)


def run(env: Mapping[str, str], workdir: Path | None = None) -> str:
    """Commit ``PLUGIN_IMAGE_TAG`` into ``PLUGIN_DESTINATION_FILE``; returns a summary."""
    branch = env.get("PLUGIN_BRANCH", "main") or "main"
    tag = _need(env, "IMAGE_TAG")
    try:
        path = check_relative_path(_need(env, "DESTINATION_FILE"))
        config = RepoConfig(
            url=_need(env, "GIT_REPO"),
            watched_branch=branch,
            auto_branch=branch,
            # Named so the config's transport rule refuses a token over http:// up front
            # (docs/security.md, "Git transport"); PLUGIN_ALLOW_INSECURE_HTTP=true accepts it.
            token_env="PLUGIN_ACCESS_TOKEN" if env.get("PLUGIN_ACCESS_TOKEN") else None,
            allow_insecure_http=env.get("PLUGIN_ALLOW_INSECURE_HTTP", "").lower() == "true",
            author=Author(
                name=env.get("PLUGIN_AUTHOR_NAME") or "waveline",
                email=env.get("PLUGIN_AUTHOR_EMAIL") or "waveline@localhost",
            ),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    message = commit_message(env)
    creds = Credentials(token=env.get("PLUGIN_ACCESS_TOKEN") or None)
    signer = _signer(env)
    try:
        return _commit(config, creds, signer, (branch, path, tag, message), workdir)
    finally:
        if signer is not None:
            signer.close()


def _signer(env: Mapping[str, str]) -> Signer | None:
    """The signer ``PLUGIN_SIGNING_FORMAT`` asks for; ``CliError`` when it cannot sign."""
    fmt = env.get("PLUGIN_SIGNING_FORMAT")
    if not fmt:
        return None
    try:
        signing = SigningConfig.model_validate(
            {
                "format": fmt,
                "key_env": "PLUGIN_SIGNING_KEY",
                "passphrase_env": (
                    "PLUGIN_SIGNING_PASSPHRASE" if env.get("PLUGIN_SIGNING_PASSPHRASE") else None
                ),
            }
        )
        return Signer(signing, "plugin", env=env)
    except (ValueError, ConfigError) as exc:
        raise CliError(f"PLUGIN_SIGNING_*: {exc}") from exc


def _commit(
    config: RepoConfig,
    creds: Credentials,
    signer: Signer | None,
    what: tuple[str, str, str, str],
    workdir: Path | None,
) -> str:
    branch, path, tag, message = what
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        repo = ConfigRepo("plugin", config, Path(tmp) / "repo.git", creds, signer=signer)
        for attempt in (1, 2):
            try:
                repo.fetch()
                tip = repo.remote_ref(branch)
                if tip is None:
                    raise CliError(
                        f"branch {branch!r} does not exist in {_without_userinfo(config.url)}"
                    )
                new = repo.create_commit(tip, {path: (tag + "\n").encode()}, message + "\n")
                if new is None:
                    return f"{path} already holds {tag} on {branch}; nothing to commit"
                repo.push({branch: (tip, new)})
                return f"committed {tag} to {path} on {branch} as {new}"
            except PushRejected:
                if attempt == 2:
                    raise
            except GitFailure as exc:
                raise CliError(str(exc)) from exc
    raise AssertionError("unreachable")


async def produce(settings: Settings, doc: dict[str, Any]) -> None:
    """Produce the image set document to ``waveline.images`` (acks=all)."""
    producer = kafka_clients.producer(settings, acks="all", enable_idempotence=True)
    await kafka_clients.start(producer, settings)
    try:
        await producer.send_and_wait(
            Topics(settings.topic_prefix).images,
            json.dumps(doc).encode(),
            key=str(doc["pipeline"]).encode(),
        )
    finally:
        await producer.stop()

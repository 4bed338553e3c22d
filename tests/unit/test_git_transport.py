"""Git transport rules (shared/gitengine/transport.py) and the callbacks that apply them
(shared/gitengine/remote.py): no token over http:// without the opt-in, credentials only to
the configured origin, SSH host keys checked against configured known-hosts lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pygit2
import pytest

from waveline.shared.config import RepoConfig, WavelineConfig
from waveline.shared.errors import GitFailure
from waveline.shared.gitengine.remote import (
    Callbacks,
    Credentials,
    credentials_from_env,
    use_known_hosts,
)
from waveline.shared.gitengine.transport import (
    Origin,
    config_refusal,
    credential_refusal,
    host_key_refusal,
    origin_of,
)

TOKEN = "ghp_transport_token_0123456789"
KINDS = pygit2.enums.CredentialType


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://github.com/org/cfg.git", Origin("https", "github.com", 443)),
        ("https://GitHub.com:443/org/cfg.git", Origin("https", "github.com", 443)),
        ("https://x:y@git.example.com:8443/cfg.git", Origin("https", "git.example.com", 8443)),
        ("http://127.0.0.1:8080/cfg.git", Origin("http", "127.0.0.1", 8080)),
        ("ssh://git@git.example.com/org/cfg.git", Origin("ssh", "git.example.com", 22)),
        ("ssh://git@[::1]:2222/cfg.git", Origin("ssh", "::1", 2222)),
        ("git@github.com:org/cfg.git", Origin("ssh", "github.com", 22)),
        ("file:///srv/cfg.git", Origin("file", "", None)),
    ],
)
def test_origin_of(url: str, origin: Origin) -> None:
    assert origin_of(url) == origin


def _repo(**fields: Any) -> RepoConfig:
    return RepoConfig.model_validate(fields)


def test_a_token_over_http_is_refused_at_config_load_unless_opted_in() -> None:
    with pytest.raises(ValueError, match="allow_insecure_http: true") as info:
        _repo(url="http://git.example.com/cfg.git", token_env="GIT_TOKEN")
    assert "clear text" in str(info.value)
    assert _repo(url="http://git.example.com/cfg.git", token_env="T", allow_insecure_http=True)
    # No token, nothing to leak; https needs no opt-in.
    assert _repo(url="http://git.example.com/cfg.git")
    assert _repo(url="https://git.example.com/cfg.git", token_env="GIT_TOKEN")


def test_the_refusal_never_quotes_userinfo() -> None:
    refusal = config_refusal("http://u:hunter2-secret@h/c.git", "T", False, None)
    assert refusal is not None and "hunter2-secret" not in refusal


def test_the_whole_file_names_the_repo(tmp_path: Path) -> None:
    from waveline.shared.config import load_config
    from waveline.shared.errors import ConfigError

    path = tmp_path / "waveline.yaml"
    path.write_text(
        "repos:\n  cfg:\n    url: http://git.example.com/cfg.git\n    token_env: T\n"
        "pipelines:\n  app:\n    repo: cfg\n    waves: [{name: s, targets: [t]}]\n"
    )
    with pytest.raises(ConfigError, match=r"repos\.cfg.*allow_insecure_http"):
        load_config(path)


@pytest.mark.parametrize(
    "url", ["ssh://git@git.example.com/org/cfg.git", "git@github.com:org/cfg.git"]
)
def test_an_ssh_remote_needs_known_hosts(url: str) -> None:
    with pytest.raises(ValueError, match="ssh_known_hosts_env"):
        _repo(url=url, ssh_key_env="KEY")
    assert _repo(url=url, ssh_key_env="KEY", ssh_known_hosts_env="KNOWN").ssh_known_hosts_env


@pytest.mark.parametrize(
    ("asked", "allowed"),
    [
        ("https://git.example.com/org/cfg.git", True),
        ("https://git.example.com:443/org/other.git", True),  # same origin, another path
        ("https://evil.example.net/org/cfg.git", False),  # redirected to another host
        ("https://git.example.com:8443/org/cfg.git", False),  # another port
        ("http://git.example.com/org/cfg.git", False),  # downgraded to http
        ("https://git.example.com.evil.net/org/cfg.git", False),
    ],
)
def test_credentials_only_for_the_configured_origin(asked: str, allowed: bool) -> None:
    refusal = credential_refusal("https://git.example.com/org/cfg.git", asked, False)
    assert (refusal is None) is allowed


def test_http_credentials_need_the_opt_in_even_at_the_same_origin() -> None:
    url = "http://127.0.0.1:8080/cfg.git"
    assert credential_refusal(url, url, False) is not None
    assert credential_refusal(url, url, True) is None


def _callbacks(url: str, creds: Credentials, **fields: Any) -> Callbacks:
    config = RepoConfig.model_construct(url=url, **{"allow_insecure_http": False, **fields})
    return Callbacks(config, creds)


def test_the_callback_offers_nothing_to_another_host() -> None:
    cb = _callbacks("https://git.example.com/cfg.git", Credentials(token=TOKEN))
    with pytest.raises(GitFailure, match=r"only to https://git\.example\.com:443") as info:
        cb.credentials("https://evil.example.net/cfg.git", None, KINDS.USERPASS_PLAINTEXT)
    assert not info.value.retriable
    assert TOKEN not in str(info.value)
    # The configured origin still gets the token.
    offered = cb.credentials("https://git.example.com/cfg.git", None, KINDS.USERPASS_PLAINTEXT)
    assert isinstance(offered, pygit2.UserPass)


def test_the_callback_refuses_http_without_the_opt_in() -> None:
    """Defence in depth: a RepoConfig built without validation (the plugin builds its own)
    still sends no token over http://."""
    url = "http://127.0.0.1:9/cfg.git"
    with pytest.raises(GitFailure, match="clear text"):
        _callbacks(url, Credentials(token=TOKEN)).credentials(url, None, KINDS.USERPASS_PLAINTEXT)
    opted = _callbacks(url, Credentials(token=TOKEN), allow_insecure_http=True)
    assert isinstance(opted.credentials(url, None, KINDS.USERPASS_PLAINTEXT), pygit2.UserPass)


def test_host_keys_and_certificates() -> None:
    ssh = "ssh://git@git.example.com/cfg.git"
    assert host_key_refusal(ssh, "git.example.com", True, True) is None
    unknown = host_key_refusal(ssh, "git.example.com", False, True)
    assert unknown is not None and "not among the known-hosts entries" in unknown
    none = host_key_refusal(ssh, "git.example.com", True, False)
    assert none is not None and "cannot be checked" in none
    https = "https://git.example.com/cfg.git"
    assert host_key_refusal(https, "git.example.com", True, False) is None
    assert host_key_refusal(https, "git.example.com", False, False) is not None


def test_the_certificate_callback_refuses_an_unknown_ssh_key() -> None:
    known = _callbacks(
        "ssh://git@h/cfg.git", Credentials(ssh_known_hosts="h ssh-ed25519 AAAA"), ssh_key_env="K"
    )
    assert known.certificate_check(None, True, b"h") is True
    with pytest.raises(GitFailure, match="host key") as info:
        known.certificate_check(None, False, b"h")
    assert not info.value.retriable
    blind = _callbacks("ssh://git@h/cfg.git", Credentials())
    with pytest.raises(GitFailure, match="cannot be checked"):
        blind.certificate_check(None, True, b"h")


def test_known_hosts_are_where_libgit2_reads_them(tmp_path: Path) -> None:
    before = pygit2.settings.homedir
    config = RepoConfig.model_construct(url="ssh://git@h:2222/cfg.git", allow_insecure_http=False)
    lines = "[h]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n"
    try:
        use_known_hosts(tmp_path / "clone.git", config, Credentials(ssh_known_hosts=lines))
        home = Path(str(pygit2.settings.homedir))
        assert home == tmp_path / "clone.git" / "waveline-ssh"
        assert (home / ".ssh" / "known_hosts").read_text() == lines
    finally:
        if before:
            pygit2.settings.homedir = before


def test_credentials_from_env() -> None:
    config = _repo(
        url="ssh://git@h/cfg.git",
        token_env="T",
        ssh_key_env="K",
        ssh_known_hosts_env="KH",
    )
    creds = credentials_from_env(config, {"T": TOKEN, "K": "key", "KH": "h ssh-ed25519 AAAA"})
    assert (creds.token, creds.ssh_private_key) == (TOKEN, "key")
    assert creds.ssh_known_hosts == "h ssh-ed25519 AAAA"
    assert TOKEN not in repr(creds) and "key'" not in repr(creds)
    assert credentials_from_env(config, {"KH": "  \n"}).ssh_known_hosts is None


def test_existing_https_configs_still_load() -> None:
    WavelineConfig.model_validate(
        {
            "repos": {"cfg": {"url": "https://github.com/org/cfg.git", "token_env": "T"}},
            "pipelines": {"app": {"repo": "cfg", "waves": [{"name": "s", "targets": ["t"]}]}},
        }
    )

"""Signed commits (shared/gitengine/signing.py): commits ConfigRepo writes with a signer pass
``git verify-commit``; a key that cannot sign is a ConfigError at start, naming the variable
and never quoting the key; the key's copy goes when the signer closes."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from tests.signing_keys import SigningKey, gpg_key, ssh_key, verify_commit
from tests.support import make_config
from waveline.devstack.demo import seed_repo
from waveline.services.git_writer.host import HostInit, RepoHost
from waveline.services.git_writer.service import GitWriter
from waveline.shared.config import Secrets, Settings, WavelineConfig, load_config
from waveline.shared.errors import ConfigError, GitUnreachable
from waveline.shared.gitengine.repo import ConfigRepo
from waveline.shared.gitengine.signing import (
    Signer,
    SigningConfig,
    SigningFailed,
    signing_fingerprint,
)
from waveline.shared.runtime import bootstrap

pytestmark = pytest.mark.timeout(60)
KEY_ENV = "TEST_SIGNING_KEY"
PASS_ENV = "TEST_SIGNING_PASSPHRASE"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SigningKey]]:
    base = tmp_path_factory.mktemp("keys")
    with gpg_key() as gpg, gpg_key("gpg pass phrase") as gpg_pass:
        yield {
            "ssh": ssh_key(base / "ssh"),
            "ssh-pass": ssh_key(base / "ssh-pass", "ssh pass phrase"),
            "openpgp": gpg,
            "openpgp-pass": gpg_pass,
        }


def env_of(key: SigningKey) -> dict[str, str]:
    env = {KEY_ENV: key.private}
    if key.passphrase is not None:
        env[PASS_ENV] = key.passphrase
    return env


def signing_of(key: SigningKey) -> SigningConfig:
    return SigningConfig.model_validate(
        {
            "format": key.format,
            "key_env": KEY_ENV,
            "passphrase_env": PASS_ENV if key.passphrase is not None else None,
        }
    )


def commit_with(bare: Path, signer: Signer | None) -> str:
    repo = ConfigRepo("cfg-app", make_config(bare.as_uri()).repos["cfg-app"], bare, signer=signer)
    head = repo.repo.references["refs/heads/master"].target
    assert isinstance(head, pygit2.Oid)
    new = repo.create_commit(head, {"images/staging/tags.json": b'{"a": "b"}\n'}, "a commit")
    assert new is not None
    return str(new)


def agents_of(directory: Path) -> list[int]:
    """Processes whose command line names ``directory`` (a gpg-agent started for it)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if pid.isdigit() and str(directory).encode() in cmdline:
            found.append(int(pid))
    return found


@pytest.mark.parametrize("which", ["ssh", "ssh-pass", "openpgp", "openpgp-pass"])
def test_signed_commit_verifies_and_the_key_copy_goes_on_close(
    which: str, keys: dict[str, SigningKey], tmp_path: Path
) -> None:
    key = keys[which]
    bare = tmp_path / "cfg.git"
    seed_repo(bare)
    signer = Signer(signing_of(key), "repos.cfg-app", env_of(key))
    sha = commit_with(bare, signer)
    verified = verify_commit(bare, sha, key)
    assert verified.returncode == 0, verified.stderr
    raw = subprocess.run(
        ["git", f"--git-dir={bare}", "cat-file", "commit", sha],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # git's own form: the signature's lines continued with one space, and the message right
    # after its last line (no continuation line left empty).
    assert raw.startswith("tree ") and "\ngpgsig -----BEGIN " in raw
    assert re.search(r"\n -----END [A-Z ]+-----\n\na commit$", raw)
    # Another key's verifier refuses it: the check above can fail.
    other = keys[which.removesuffix("-pass") if which.endswith("-pass") else f"{which}-pass"]
    assert verify_commit(bare, sha, other).returncode != 0
    copy = signer._dir
    assert copy.exists() and oct(copy.stat().st_mode & 0o777) == "0o700"
    signer.close()
    assert not copy.exists()
    deadline = time.monotonic() + 5
    while agents_of(copy) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert agents_of(copy) == []
    signer.close()  # idempotent


def test_a_deep_tmpdir_still_signs_with_openpgp(
    keys: dict[str, SigningKey], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deeper than the agent's socket path allows (107 bytes): the copy goes under /tmp.
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read once, then cached
    key = keys["openpgp"]
    bare = tmp_path / "cfg.git"
    seed_repo(bare)
    signer = Signer(signing_of(key), "repos.cfg-app", env_of(key))
    try:
        assert signer._dir.parent == Path("/tmp")
        verified = verify_commit(bare, commit_with(bare, signer), key)
        assert verified.returncode == 0, verified.stderr
    finally:
        signer.close()
    ssh = Signer(signing_of(keys["ssh"]), "repos.cfg-app", env_of(keys["ssh"]))
    try:
        assert ssh._dir.parent == deep  # no socket: the copy stays where TMPDIR says
    finally:
        ssh.close()


def test_unsigned_when_no_signing_is_configured(tmp_path: Path) -> None:
    bare = tmp_path / "cfg.git"
    seed_repo(bare)
    commit = pygit2.Repository(str(bare)).get(commit_with(bare, None))
    assert isinstance(commit, pygit2.Commit)
    assert commit.gpg_signature == (None, None)


def test_a_key_removed_from_under_the_signer_is_set_up_again(
    keys: dict[str, SigningKey], tmp_path: Path
) -> None:
    key = keys["ssh"]
    signer = Signer(signing_of(key), "repos.cfg-app", env_of(key))
    try:
        # A cleaner of the temporary directory removed the whole copy.
        for entry in signer._dir.iterdir():
            entry.unlink()
        signer._dir.rmdir()
        bare = tmp_path / "cfg.git"
        seed_repo(bare)
        assert verify_commit(bare, commit_with(bare, signer), key).returncode == 0
    finally:
        signer.close()


def start_error(config: SigningConfig, env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as raised:
        Signer(config, "repos.cfg-app", env)
    return str(raised.value)


def test_a_key_that_cannot_sign_is_a_config_error_naming_why(
    keys: dict[str, SigningKey], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ssh, gpg = signing_of(keys["ssh"]), signing_of(keys["openpgp"])
    ssh_pass = signing_of(keys["ssh-pass"])
    assert start_error(ssh, {}) == (
        f"repos.cfg-app.signing.key_env: environment variable {KEY_ENV} is not set"
    )
    missing_pass = start_error(ssh_pass, {KEY_ENV: keys["ssh-pass"].private})
    assert f"passphrase_env: environment variable {PASS_ENV} is not set" in missing_pass
    wrong = start_error(ssh_pass, {KEY_ENV: keys["ssh-pass"].private, PASS_ENV: "wrong"})
    assert "cannot be decrypted with the passphrase" in wrong
    # An encrypted key without its passphrase fails instead of waiting for a prompt.
    encrypted = start_error(ssh, {KEY_ENV: keys["ssh-pass"].private})
    assert "not a usable OpenSSH private key" in encrypted
    # Each format's key is refused by the other: the key never appears in the error.
    pgp_as_ssh = start_error(ssh, {KEY_ENV: keys["openpgp"].private})
    ssh_as_pgp = start_error(gpg, {KEY_ENV: keys["ssh"].private})
    assert "not a usable OpenSSH private key" in pgp_as_ssh
    assert "not an OpenPGP secret key gpg can import" in ssh_as_pgp
    public = subprocess.run(
        ["gpg", "--armor", "--export"],
        env={**os.environ, "GNUPGHOME": str(keys["openpgp"].verifier)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "holds no OpenPGP secret key that signs" in start_error(gpg, {KEY_ENV: public})
    for message, key in [(pgp_as_ssh, keys["openpgp"]), (ssh_as_pgp, keys["ssh"])]:
        for line in key.private.splitlines():
            if len(line) > 20 and not line.startswith("-----"):
                assert line not in message
    # The tool is missing.
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "needs ssh-keygen on PATH (Debian package openssh-client)" in start_error(
        ssh, env_of(keys["ssh"])
    )
    assert "needs gpg on PATH (Debian package gnupg)" in start_error(gpg, env_of(keys["openpgp"]))


async def test_the_git_writer_checks_the_key_when_it_starts(
    keys: dict[str, SigningKey], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the service's own start (GitWriter.on_started, which serve() runs before
    taking a command): a key that cannot sign stops it with a ConfigError."""
    base = make_config("file:///nowhere/cfg-app.git")
    data = base.model_dump(mode="json", exclude_none=True)
    data["repos"]["cfg-app"]["signing"] = {"format": "openpgp", "key_env": KEY_ENV}
    config = WavelineConfig.model_validate(data)

    async def start() -> GitWriter:
        runtime = bootstrap("git-writer", Settings(data_dir=tmp_path), config, Secrets())
        writer = GitWriter(runtime)
        async with asyncio.timeout(20):
            await writer.on_started()
        return writer

    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"repos.cfg-app.signing.key_env: .*{KEY_ENV}"):
        await start()
    monkeypatch.setenv(KEY_ENV, "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnot a key\n")
    with pytest.raises(ConfigError, match=r"repos\.cfg-app\.signing: not an OpenPGP secret key"):
        await start()
    # With the key it gets past the check (and starts its repo process: a real start with
    # a key is the journey of tests/integration/test_signed_commits.py).
    monkeypatch.setenv(KEY_ENV, keys["openpgp"].private)
    signer = HostInit(
        repo="cfg-app",
        repo_config=config.repos["cfg-app"],
        config=config,
        path=tmp_path / "cfg-app.git",
        log_level="INFO",
        log_secrets=[],
        gil_switch_interval_ms=0.5,
    ).signer()
    assert signer is not None
    signer.close()


def test_the_repo_process_removes_its_key_copy_when_it_closes(
    keys: dict[str, SigningKey], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RepoHost (the repo process's side, here in this process) signs its commits and
    removes the key's copy on close (its end when the service is gone: the journey in
    tests/integration/test_signed_commits.py)."""
    key = keys["openpgp"]
    data = make_config("file:///nowhere/cfg-app.git").model_dump(mode="json", exclude_none=True)
    data["repos"]["cfg-app"]["signing"] = {"format": "openpgp", "key_env": KEY_ENV}
    config = WavelineConfig.model_validate(data)
    monkeypatch.setenv(KEY_ENV, key.private)
    init = HostInit(
        repo="cfg-app",
        repo_config=config.repos["cfg-app"],
        config=config,
        path=tmp_path / "cfg-app.git",
        log_level="INFO",
        log_secrets=[],
        gil_switch_interval_ms=0.5,
    )
    host = RepoHost(init)
    assert host.signer is not None and host.applier.repo.signer is host.signer
    copy = host.signer._dir
    assert (copy / "gnupg").is_dir()
    host.close()
    assert not copy.exists()


def test_signing_config_in_the_file(tmp_path: Path) -> None:
    text = """
repos:
  cfg-app:
    url: https://git.example.com/org/cfg-app.git
    signing: {format: ssh, key_env: WAVELINE_SIGNING_KEY, passphrase_env: WAVELINE_SIGNING_PASS}
pipelines:
  app:
    repo: cfg-app
    waves: [{name: staging, targets: [staging-us]}]
"""
    path = tmp_path / "waveline.yaml"
    path.write_text(text)
    signing = load_config(path).repos["cfg-app"].signing
    assert signing == SigningConfig(
        format="ssh", key_env="WAVELINE_SIGNING_KEY", passphrase_env="WAVELINE_SIGNING_PASS"
    )
    for bad, where in [
        ("{format: x509, key_env: K}", "repos.cfg-app.signing.format"),
        ("{format: ssh}", "repos.cfg-app.signing.key_env"),
        ("{format: ssh, key_env: 'not a name'}", "repos.cfg-app.signing.key_env"),
        ("{format: ssh, key_env: K, key: inline}", "repos.cfg-app.signing.key"),
    ]:
        path.write_text(text.replace(text.splitlines()[4].split(": ", 1)[1], bad))
        with pytest.raises(ConfigError, match=where):
            load_config(path)


def test_a_signing_failure_is_waited_out_like_an_outage() -> None:
    failed = SigningFailed("gpg did not sign")
    assert isinstance(failed, GitUnreachable) and failed.retriable


def test_signing_fingerprint_picks_a_key_that_signs() -> None:
    colons = "\n".join(
        [
            "sec:u:255:22:AAAA:1:::u:::cC:::+:::ed25519:::0:",
            "fpr:::::::::" + "A" * 40 + ":",
            "ssb:u:255:18:BBBB:1::::::e:::+:::cv25519::",
            "fpr:::::::::" + "B" * 40 + ":",
            "sec:u:255:22:CCCC:1:::u:::scSC:::+:::ed25519:::0:",
            "fpr:::::::::" + "C" * 40 + ":",
        ]
    )
    assert signing_fingerprint(colons) == "C" * 40
    assert signing_fingerprint(colons.rsplit("\n", 2)[0]) is None

"""Test signing keys, made fresh per test session, and ``git verify-commit`` with them.

An SSH key by ``ssh-keygen`` (the allowed-signers file git checks SSH signatures against
lists it for the committer's email) and an OpenPGP key by ``gpg --quick-gen-key`` in a GnuPG
home of its own (which ``git verify-commit`` then reads through ``GNUPGHOME``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EMAIL = "waveline@example.com"  # tests.support.make_config's author


@dataclass(frozen=True)
class SigningKey:
    format: str  # "ssh" or "openpgp"
    private: str  # what the signing key's environment variable holds
    passphrase: str | None
    # ssh: the allowed-signers file; openpgp: the GnuPG home holding the public key.
    verifier: Path


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def ssh_key(directory: Path, passphrase: str | None = None) -> SigningKey:
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    _run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-C", "test", "-N", passphrase or "", "-f", str(key)]
    )
    public = (directory / "id_ed25519.pub").read_text(encoding="utf-8").strip()
    allowed = directory / "allowed_signers"
    allowed.write_text(f'{EMAIL} namespaces="git" {public}\n', encoding="utf-8")
    return SigningKey("ssh", key.read_text(encoding="utf-8"), passphrase, allowed)


@contextmanager
def gpg_key(passphrase: str | None = None) -> Iterator[SigningKey]:
    """A GnuPG home with a new signing key (ed25519); its agent stopped and home removed
    on exit. The home is under a short path: the agent's socket path has a length limit."""
    home = Path(tempfile.mkdtemp(prefix="wl-gpg-"))
    env = {**os.environ, "GNUPGHOME": str(home)}
    # The agent's default protection of a key calibrates to ~100 ms a use: seconds a key.
    (home / "gpg-agent.conf").write_text("s2k-count 65536\n", encoding="utf-8")
    try:
        _run(
            [
                "gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase or "",
                "--quick-gen-key", f"Waveline Test <{EMAIL}>", "ed25519", "sign", "never",
            ],
            env=env,
        )  # fmt: skip
        exported = _run(
            [
                "gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase or "",
                "--armor", "--export-secret-keys",
            ],
            env=env,
        )  # fmt: skip
        yield SigningKey("openpgp", exported.stdout, passphrase, home)
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)
        shutil.rmtree(home, ignore_errors=True)


def verify_commit(bare: Path, sha: str, key: SigningKey) -> subprocess.CompletedProcess[str]:
    """``git verify-commit`` of ``sha`` in ``bare``, trusting ``key`` only."""
    env = {**os.environ, "GNUPGHOME": str(key.verifier)}
    if key.format == "ssh":
        env["GNUPGHOME"] = str(bare / "no-gnupg")
    args = ["git", "-c", f"gpg.ssh.allowedSignersFile={key.verifier}", f"--git-dir={bare}"]
    return subprocess.run(
        [*args, "verify-commit", "--raw", sha], capture_output=True, text=True, env=env, check=False
    )

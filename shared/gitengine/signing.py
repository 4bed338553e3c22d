"""Signed commits (docs/security.md, Signed commits): the key a repository's commits are
signed with, and the tool that signs them, run the way git runs it.

``format: ssh`` runs ``ssh-keygen -Y sign -n git -f <key>`` (git's ``gpg.format=ssh``) and
``format: openpgp`` runs ``gpg --detach-sign --armor`` (git's default), each on the bytes of
the commit object; the armored signature becomes the commit's ``gpgsig`` header, so ``git
verify-commit``, GitHub and GitLab check it as they check a person's.

The key comes from the environment variable the config names (never from the file). A
``Signer`` copies it into a private directory of its own (``mkdtemp``, 0700; the SSH key
0600, or a GnuPG home of its own), decrypted there when a passphrase is set, so signing
needs no prompt; ``close`` (and the interpreter's exit) removes the directory and stops the
GnuPG home's agent. The tools run with a minimal environment: the process's secrets stay in
this process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from waveline.shared.errors import ConfigError, GitUnreachable

SigningFormat = Literal["ssh", "openpgp"]
# The tool each format runs, and the Debian package that ships it (named in errors).
TOOLS: dict[str, tuple[str, str]] = {
    "ssh": ("ssh-keygen", "openssh-client"),
    "openpgp": ("gpg", "gnupg"),
}
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# What a test signature at start signs: proof the key and passphrase work.
PROBE = b"waveline signing check\n"


class SigningConfig(BaseModel):
    """``repos.<name>.signing``: sign every commit Waveline writes to the repository."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: SigningFormat
    # The private key's text: an OpenSSH private key (ssh) or an ASCII-armored OpenPGP
    # secret key (openpgp, ``gpg --export-secret-keys --armor``).
    key_env: str = Field(pattern=ENV_NAME)
    passphrase_env: str | None = Field(default=None, pattern=ENV_NAME)


class SigningFailed(GitUnreachable):
    """The signing tool did not sign (it could not start, timed out, or refused the key it
    signed with a moment ago): the environment's fault, not the command's, so it is waited
    out like an unreachable remote and the command is built again later."""

    code = "signing_failed"


def signing_fingerprint(colons: str) -> str | None:
    """The fingerprint of the first secret key able to sign, from ``gpg --with-colons
    --list-secret-keys`` (field 12 of a ``sec`` record holds ``S`` when the key or one of
    its subkeys may sign; the ``fpr`` record after it holds the fingerprint)."""
    wanted = False
    for line in colons.splitlines():
        fields = line.split(":")
        if fields[0] == "sec":
            wanted = len(fields) > 11 and "S" in fields[11]
        elif fields[0] == "fpr" and wanted and len(fields) > 9:
            return fields[9]
        elif fields[0] == "ssb":
            wanted = False
    return None


def _last_line(stderr: bytes) -> str:
    """The tool's last words, short: the reason (never the key; the tools do not echo it)."""
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    return (lines[-1] if lines else "no message")[:200]


def _write_private(path: Path, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(data)


def _remove(directory: Path | None, gnupg_home: Path | None, gpgconf: str | None) -> None:
    """Stop the GnuPG home's agent (it would outlive us), then remove ``directory``."""
    if gnupg_home is not None and gpgconf is not None and gnupg_home.exists():
        subprocess.run(
            [gpgconf, "--homedir", str(gnupg_home), "--kill", "gpg-agent"],
            env=_tool_env(gnupg_home),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


# A Unix socket's path is at most 107 bytes; the GnuPG agent's sockets live in its home
# (``gnupg/S.gpg-agent.browser`` is the longest name), and without /run/user/<uid> GnuPG has
# nowhere else to put them: in a deep TMPDIR the agent cannot listen and no key imports.
_SOCKET_PATH_MAX = 107
_LONGEST_SOCKET = "gnupg/S.gpg-agent.browser"


def _private_dir(fmt: str) -> Path:
    """A new 0700 directory for the key's copy: in TMPDIR, or for OpenPGP under /tmp when
    TMPDIR is too deep for the agent's sockets."""
    made = Path(tempfile.mkdtemp(prefix="waveline-sign-"))
    if fmt == "openpgp" and len(str(made / _LONGEST_SOCKET)) > _SOCKET_PATH_MAX:
        made.rmdir()
        made = Path(tempfile.mkdtemp(prefix="waveline-sign-", dir="/tmp"))
    return made


def _tool_env(gnupg_home: Path | None = None, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C", **extra}
    if gnupg_home is not None:
        env["GNUPGHOME"] = str(gnupg_home)
    return env


class Signer:
    """Signs commit objects with one repository's key. Not thread-safe (one repo process's
    main thread signs)."""

    def __init__(
        self,
        config: SigningConfig,
        where: str,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        """Read the key now and set it up; ``ConfigError`` (naming ``where``, the variable
        and why, never the key) when a variable is unset, the tool is missing, or the key
        or passphrase cannot sign."""
        source = os.environ if env is None else env
        self.format = config.format
        self._where = f"{where}.signing"
        self._timeout_s = timeout_s
        tool, package = TOOLS[config.format]
        found = shutil.which(tool)
        if found is None:
            raise ConfigError(
                f"{self._where}: format {config.format} needs {tool} on PATH "
                f"(Debian package {package})"
            )
        self._tool = found
        self._key = self._read(source, config.key_env, "key_env")
        self._passphrase = (
            self._read(source, config.passphrase_env, "passphrase_env")
            if config.passphrase_env
            else None
        )
        self._gpgconf = shutil.which("gpgconf") if config.format == "openpgp" else None
        self._dir = _private_dir(config.format)
        self._gnupg_home = self._dir / "gnupg" if config.format == "openpgp" else None
        self._args: list[str] = []
        # Also at the interpreter's exit, should close never be called.
        self._cleanup = weakref.finalize(self, _remove, self._dir, self._gnupg_home, self._gpgconf)
        try:
            self._set_up()
            self.sign(PROBE)
        except SigningFailed as exc:
            self.close()
            raise ConfigError(f"{self._where}: the key does not sign: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _read(self, source: Mapping[str, str], name: str, field: str) -> str:
        value = source.get(name, "")
        if not value.strip():
            raise ConfigError(f"{self._where}.{field}: environment variable {name} is not set")
        return value

    def _run(
        self, args: list[str], data: bytes = b"", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        # A session of its own: no terminal to prompt on, so a missing passphrase fails
        # instead of waiting for an answer.
        try:
            return subprocess.run(
                args,
                input=data,
                capture_output=True,
                env=env or _tool_env(self._gnupg_home),
                timeout=self._timeout_s,
                start_new_session=True,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SigningFailed(f"{self._where}: {Path(args[0]).name}: {exc}") from None

    def _refuse(self, what: str, done: subprocess.CompletedProcess[bytes]) -> ConfigError:
        return ConfigError(f"{self._where}: {what} ({_last_line(done.stderr)})")

    def _set_up(self) -> None:
        """Write the key (decrypted) to the private directory and fix the signing command.
        Starts from an empty directory (again, when signing failed)."""
        _remove(None, self._gnupg_home, self._gpgconf)
        if self._dir.exists():
            for entry in self._dir.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        else:
            # Removed by a cleaner of the temporary directory: made again, ours alone (this
            # raises if someone else made one of that name meanwhile).
            self._dir.mkdir(mode=0o700)
        if self.format == "ssh":
            self._set_up_ssh()
        else:
            self._set_up_gpg()

    def _set_up_ssh(self) -> None:
        key = self._dir / "key"
        # ssh-keygen refuses a key whose last line has no newline (a trimmed variable).
        _write_private(key, self._key.replace("\r\n", "\n").strip() + "\n")
        if self._passphrase is not None:
            # Decrypted in place through an askpass helper: on the command line (-P) the
            # passphrase would be in every process listing.
            askpass = self._dir / "askpass"
            _write_private(askpass, '#!/bin/sh\nprintf "%s\\n" "$WAVELINE_SIGNING_PASSPHRASE"\n')
            askpass.chmod(0o700)
            env = _tool_env(
                SSH_ASKPASS=str(askpass),
                SSH_ASKPASS_REQUIRE="force",
                WAVELINE_SIGNING_PASSPHRASE=self._passphrase,
            )
            done = self._run([self._tool, "-p", "-N", "", "-f", str(key)], env=env)
            askpass.unlink()
            if done.returncode != 0:
                raise self._refuse("the key cannot be decrypted with the passphrase", done)
        done = self._run([self._tool, "-y", "-f", str(key)])
        if done.returncode != 0:
            raise self._refuse(
                "not a usable OpenSSH private key (encrypted without passphrase_env?)", done
            )
        self._args = [self._tool, "-Y", "sign", "-n", "git", "-f", str(key)]

    def _set_up_gpg(self) -> None:
        home = self._dir / "gnupg"
        home.mkdir(mode=0o700)
        # The agent protects the key it holds with the passphrase again, calibrated to cost
        # ~100 ms per use of it, and took 2-7 s to import and first sign with it here. In
        # this home that protection guards nothing (the passphrase file lies beside it), so
        # the cheapest derivation is asked for.
        (home / "gpg-agent.conf").write_text("s2k-count 65536\n", encoding="utf-8")
        base = [self._tool, "--homedir", str(home), "--batch", "--no-tty"]
        base += ["--pinentry-mode", "loopback"]
        if self._passphrase is not None:
            _write_private(home / "passphrase", self._passphrase)
            base += ["--passphrase-file", str(home / "passphrase")]
        # Importing a secret key goes through the agent, which gpg starts on demand and
        # waits for only briefly: on a loaded machine the import then fails with "secret
        # keys read: 1" and nothing imported (seen in CI). Started first, and waited for,
        # by gpgconf; one more try after stopping it before calling the key unusable.
        for attempt in (1, 2):
            if self._gpgconf is not None:
                self._run([self._gpgconf, "--homedir", str(home), "--launch", "gpg-agent"])
            done = self._run([*base, "--import"], self._key.encode())
            if done.returncode == 0:
                break
            if attempt == 1:
                _remove(None, home, self._gpgconf)
        else:
            raise self._refuse("not an OpenPGP secret key gpg can import", done)
        listed = self._run([*base, "--with-colons", "--list-secret-keys"])
        fingerprint = signing_fingerprint(listed.stdout.decode(errors="replace"))
        if fingerprint is None:
            raise ConfigError(f"{self._where}: the key holds no OpenPGP secret key that signs")
        self._args = [*base, "--detach-sign", "--armor", "--local-user", fingerprint]

    def sign(self, content: bytes) -> str:
        """The armored signature of ``content`` (without its final newline: git's own form
        of the ``gpgsig`` header). ``SigningFailed`` when the tool does not sign, twice: the
        second try sets the key up again first (a cleaner may have emptied the temporary
        directory, or the GnuPG agent died)."""
        done = self._run(self._args, content)
        if done.returncode != 0:
            try:
                self._set_up()
            except (ConfigError, OSError) as exc:
                raise SigningFailed(f"{self._where}: setting the key up again: {exc}") from None
            done = self._run(self._args, content)
        return self._signature(done)

    def _signature(self, done: subprocess.CompletedProcess[bytes]) -> str:
        text = done.stdout.decode("ascii", errors="replace")
        if done.returncode != 0 or not re.match(r"-----BEGIN [A-Z ]+-----\n", text):
            tool = Path(self._tool).name
            raise SigningFailed(f"{self._where}: {tool} did not sign: {_last_line(done.stderr)}")
        return text.rstrip("\n")

    def close(self) -> None:
        """Remove the key's copy (and stop the GnuPG agent). Idempotent."""
        self._cleanup()

"""libgit2's side of talking to a remote: the credentials Waveline holds for a repo and the
callbacks that hand them out, under the rules of ``transport.py`` (docs/security.md, "Git
transport").

SSH host keys: pygit2 (1.21) hands the certificate callback no host key (``certificate`` is
always None), and its wrapper accepts any SSH key when the callback declines to decide.
libgit2 itself (1.9, libssh2) checks the key against ``$HOME/.ssh/known_hosts``, where its
home is the ``homedir`` option, and passes the verdict as ``valid``. So a repo's known-hosts
lines are written to a directory of its own clone, libgit2's home is pointed there before
every fetch and push, and the callback refuses unless ``valid``. The home is process-wide:
one clone's network calls at a time per process (the git-writer runs one process per repo).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from waveline.shared.config import RepoConfig
from waveline.shared.errors import GitFailure, PushRejected
from waveline.shared.gitengine.transport import credential_refusal, host_key_refusal, is_ssh


class CredentialsRefused(GitFailure):
    """The remote refused the credentials offered (a wrong, revoked or expired token or
    key). Permanent as raised; the git-writer retries once with a new token when the token
    is a GitHub App's (services/git_writer/client.py)."""

    code = "credentials_refused"


@dataclass
class Credentials:
    """Resolved credentials; ``token`` and key never leave this object (nor its repr)."""

    token: str | None = field(default=None, repr=False)
    ssh_private_key: str | None = field(default=None, repr=False)
    ssh_user: str = "git"
    # known_hosts lines for an SSH remote's host (not a secret).
    ssh_known_hosts: str | None = None


class Callbacks(pygit2.RemoteCallbacks):
    """One fetch's or push's callbacks: credentials only where ``transport`` allows them,
    the remote's identity checked, the push's leases enforced."""

    def __init__(
        self,
        config: RepoConfig,
        creds: Credentials,
        leases: Mapping[str, pygit2.Oid] | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._creds = creds
        self._leases = dict(leases or {})
        self.rejected: dict[str, str] = {}
        self.lease_broken: str | None = None
        self._asked = 0

    def certificate_check(self, certificate: None, valid: bool, host: bytes | str) -> bool:
        del certificate  # always None in pygit2 1.21 (see the module's docstring)
        name = host.decode(errors="replace") if isinstance(host, bytes) else host
        refusal = host_key_refusal(
            self._config.url, name, bool(valid), bool(self._creds.ssh_known_hosts)
        )
        if refusal is not None:
            # Raised rather than returned False: the caller sees this class and reason
            # instead of libgit2's generic certificate error, and waiting will not mend it.
            raise GitFailure(f"refused: {refusal}", retriable=False)
        return True

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: pygit2.enums.CredentialType
    ) -> pygit2.UserPass | pygit2.KeypairFromMemory | pygit2.Username:
        kinds = pygit2.enums.CredentialType
        refusal = credential_refusal(self._config.url, url, self._config.allow_insecure_http)
        if refusal is not None:
            raise GitFailure(f"refused to send credentials: {refusal}", retriable=False)
        if allowed_types == kinds.USERNAME:
            # An ssh:// URL without a user: libgit2 asks who we are before asking for a key.
            return pygit2.Username(self._creds.ssh_user)
        self._asked += 1
        if self._asked > 1:
            # libgit2 asks again after a refusal; the same answer would loop forever.
            raise CredentialsRefused("the remote refused Waveline's credentials", retriable=False)
        if allowed_types & kinds.USERPASS_PLAINTEXT and self._creds.token:
            return pygit2.UserPass("x-access-token", self._creds.token)
        if allowed_types & kinds.SSH_KEY and self._creds.ssh_private_key:
            return pygit2.KeypairFromMemory(
                username_from_url or self._creds.ssh_user, None, self._creds.ssh_private_key, ""
            )
        # Raising tells libgit2 to stop asking: no credential we could offer fits.
        raise GitFailure("the remote asked for credentials Waveline does not have", retriable=False)

    def push_negotiation(self, updates: list[pygit2.remotes.PushUpdate]) -> None:
        for update in updates:
            expected = self._leases.get(update.dst_refname)
            if expected is not None and update.src != expected:
                self.lease_broken = (
                    f"{update.dst_refname} is {update.src} on the remote, expected {expected}"
                )
                raise PushRejected(f"lease broken: {self.lease_broken}")

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message is not None:
            self.rejected[refname] = message


def use_known_hosts(clone: Path, config: RepoConfig, creds: Credentials) -> None:
    """Before a fetch or push of an SSH remote: make ``creds.ssh_known_hosts`` the
    known_hosts file libgit2 reads (``<clone>/waveline-ssh/.ssh/known_hosts``, libgit2's
    home pointed at it). Nothing for other remotes. Without entries nothing is written and
    ``Callbacks.certificate_check`` refuses the host."""
    if not is_ssh(config.url) or not creds.ssh_known_hosts:
        return
    home = clone / "waveline-ssh"
    known_hosts = home / ".ssh" / "known_hosts"
    content = creds.ssh_known_hosts.strip() + "\n"
    if not known_hosts.exists() or known_hosts.read_text(encoding="utf-8") != content:
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        known_hosts.write_text(content, encoding="utf-8")
    pygit2.settings.homedir = str(home)


def credentials_from_env(config: RepoConfig, env: Mapping[str, str] | None = None) -> Credentials:
    """The repo's credentials from the variables its config names. An SSH remote whose
    ``ssh_known_hosts_env`` holds nothing gets no entries, and every connection to it is
    refused (``Callbacks.certificate_check``) with that reason."""
    source = os.environ if env is None else env

    def read(name: str | None) -> str | None:
        return (source.get(name) or None) if name else None

    known = read(config.ssh_known_hosts_env)
    return Credentials(
        token=read(config.token_env),
        ssh_private_key=read(config.ssh_key_env),
        ssh_known_hosts=known if known and known.strip() else None,
    )

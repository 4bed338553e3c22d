"""Where Waveline's git credentials may go and how a remote proves who it is (docs/security.md,
"Git transport"). Pure rules on URLs; ``shared/gitengine/remote.py`` applies them in
libgit2's callbacks, ``RepoConfig`` at config load.

- A token never crosses ``http://`` unless the repo says ``allow_insecure_http: true``.
- Credentials go only to the scheme, host and port of the configured URL: a remote that
  redirects elsewhere (libgit2 follows the first redirect and asks for credentials again,
  naming the new URL) gets none.
- An SSH remote needs known-hosts lines for its host (``ssh_known_hosts_env``); a host key
  not among them is refused before any credential is offered.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
# user@host:path, git's scp-like syntax for SSH (no scheme, a colon before any slash).
_SCP = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+):(?!//)")


@dataclass(frozen=True)
class Origin:
    """Scheme, host (lower case, IPv6 without brackets) and port (the scheme's default
    when the URL names none) of a remote URL."""

    scheme: str
    host: str
    port: int | None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port is not None else "")


def origin_of(url: str) -> Origin:
    """The origin of a git remote URL (``scheme://...`` or scp-like ``user@host:path``)."""
    if "://" not in url:
        match = _SCP.match(url)
        if match is not None:
            return Origin("ssh", match["host"].strip("[]").lower(), DEFAULT_PORTS["ssh"])
        return Origin("file", "", None)
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    try:
        port = parsed.port
    except ValueError:  # not a number: never equal to a configured origin
        port = -1
    return Origin(scheme, (parsed.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme))


def is_ssh(url: str) -> bool:
    return origin_of(url).scheme in ("ssh", "ssh+git", "git+ssh")


def config_refusal(
    url: str,
    token_env: str | None,
    allow_insecure_http: bool,
    ssh_known_hosts_env: str | None,
    *,
    app_token: bool = False,
) -> str | None:
    """Why a repo's transport settings are refused at config load, or None. ``app_token``:
    git authenticates with its forge's GitHub App installation token (no ``token_env``)."""
    if (token_env or app_token) and origin_of(url).scheme == "http" and not allow_insecure_http:
        given = "token_env is set" if token_env else "git uses the forge's GitHub App token"
        return (
            f"url {_without_userinfo(url)} is http:// and {given}: the token would "
            "cross the network in clear text. Use https://, or set allow_insecure_http: true "
            "on this repo to accept that (a test server on loopback, say)"
        )
    if is_ssh(url) and not ssh_known_hosts_env:
        return (
            f"url {_without_userinfo(url)} is an SSH remote without ssh_known_hosts_env: set "
            "it to the name of an environment variable holding the remote's known_hosts "
            "lines (ssh-keyscan -p PORT HOST, checked out of band); a host key not among them "
            "is refused"
        )
    return None


def credential_refusal(
    configured_url: str, asked_url: str, allow_insecure_http: bool
) -> str | None:
    """Why no credential may be offered to ``asked_url`` (the URL libgit2 asks credentials
    for, after any redirect) for a repo configured with ``configured_url``, or None."""
    configured, asked = origin_of(configured_url), origin_of(asked_url)
    if asked != configured:
        return (
            f"{asked} asked for credentials, but Waveline offers them only to {configured}, "
            "the repo's configured url (a redirect to another host, port or scheme gets none)"
        )
    if asked.scheme == "http" and not allow_insecure_http:
        return (
            f"{asked} asked for credentials over http://, where they would cross the network "
            "in clear text; the repo does not set allow_insecure_http: true"
        )
    return None


def host_key_refusal(
    configured_url: str, host: str, valid: bool, known_hosts_given: bool
) -> str | None:
    """Why the identity a remote presented (an SSH host key or a TLS certificate) is refused,
    or None. ``valid`` is libgit2's verdict: for SSH, that the key matched an entry of the
    known-hosts file it read (see remote.py); for TLS, that the chain and name verified."""
    if is_ssh(configured_url):
        if not known_hosts_given:
            return (
                f"SSH remote {host}: no known-hosts entries (ssh_known_hosts_env is unset or "
                "empty), so its host key cannot be checked"
            )
        if not valid:
            return (
                f"SSH remote {host}: its host key is not among the known-hosts entries of "
                "ssh_known_hosts_env (an unknown host, or a key that changed)"
            )
        return None
    return None if valid else f"{host}: its TLS certificate did not verify"


def _without_userinfo(url: str) -> str:
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", url, flags=re.IGNORECASE)

"""Git transport attacks through the git-writer's git path (ConfigRepo and Applier) against
real remotes: ``git http-backend`` on loopback, and a private ``sshd`` when openssh-server
is installed.

- A remote that redirects to another host (127.0.0.2 stands for another machine) gets no
  token there; the same redirect with naive callbacks shows the token would have gone.
- A token is not sent over plain http without ``allow_insecure_http``, even when the
  RepoConfig skipped validation (the callbacks check again).
- An https remote whose certificate does not verify is refused before the token goes.
- An SSH remote whose host key is not among the configured known-hosts lines is refused
  before any key is offered; with the right line, a command lands.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pygit2
import pytest

from tests.gitserver import GitHttpServer
from tests.integration.test_gitengine import introduce, push
from tests.kafka_certs import make_authority, make_leaf
from tests.support import branch_log, make_config
from waveline.devstack.demo import seed_repo
from waveline.services.git_writer.apply import Applier
from waveline.shared.config import RepoConfig, WavelineConfig
from waveline.shared.errors import GitFailure
from waveline.shared.gitengine.repo import ConfigRepo, Credentials

TOKEN = "ghp_transport_test_token_13579"


class _Redirect(BaseHTTPRequestHandler):
    """Answers every request with a redirect to the same path on ``server.target``."""

    server: _RedirectServer

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def _redirect(self) -> None:
        self.send_response(301 if self.command == "GET" else 307)
        self.send_header("Location", self.server.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = _redirect
    do_POST = _redirect


class _RedirectServer(ThreadingHTTPServer):
    target: str


@pytest.fixture
def redirected(tmp_path: Path) -> Iterator[tuple[str, GitHttpServer]]:
    """(url of a redirector on 127.0.0.1, the real git server on 127.0.0.2 it points at)."""
    seed_repo(tmp_path / "srv" / "cfg-app.git")
    with GitHttpServer(tmp_path / "srv", TOKEN, host="127.0.0.2") as real:
        redirector = _RedirectServer(("127.0.0.1", 0), _Redirect)
        redirector.target = real.url("").rstrip("/")
        thread = threading.Thread(target=redirector.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{redirector.server_address[1]}/cfg-app.git", real
        finally:
            redirector.shutdown()
            redirector.server_close()


def _writer(url: str, data: Path, creds: Credentials, **fields: Any) -> Applier:
    """The test config's repo at ``url`` with ``fields``, validated as a file would be."""
    doc = make_config("file:///unused").model_dump(mode="json")
    doc["repos"]["cfg-app"].update(url=url, **fields)
    config = WavelineConfig.model_validate(doc)
    return Applier(ConfigRepo("cfg-app", config.repos["cfg-app"], data, creds), config)


class _Naive(pygit2.RemoteCallbacks):
    """What libgit2 callbacks that hand the token to whoever asks do."""

    def credentials(self, url: str, username: str | None, allowed: Any) -> pygit2.UserPass:
        del url, username, allowed
        return pygit2.UserPass("x-access-token", TOKEN)


def test_the_attack_is_real_naive_callbacks_send_the_token_to_the_redirect_target(
    redirected: tuple[str, GitHttpServer], tmp_path: Path
) -> None:
    """The control: without Waveline's rule, libgit2 follows the redirect and the token
    arrives at the other host (so the next test can fail)."""
    url, real = redirected
    repo = pygit2.init_repository(str(tmp_path / "naive.git"), bare=True)
    repo.remotes.create("origin", url).fetch(callbacks=_Naive())
    assert real.credentials_seen >= 1


def test_a_redirect_to_another_host_gets_no_token(
    redirected: tuple[str, GitHttpServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, real = redirected
    srv = tmp_path / "srv" / "cfg-app.git"
    before = {b: [c.id for c in branch_log(str(srv), b)] for b in ("master", "auto")}
    writer = _writer(
        url, tmp_path / "clone.git", Credentials(token=TOKEN), allow_insecure_http=True
    )
    with pytest.raises(GitFailure, match=r"only to http://127\.0\.0\.1") as info:
        writer.refresh()
    assert "http://127.0.0.2" in str(info.value)
    assert not info.value.retriable
    assert real.credentials_seen == 0, "the token reached the redirect target"
    assert TOKEN not in str(info.value) and TOKEN not in caplog.text
    # Nothing was fetched, so nothing can be built or pushed; the remote is as it was.
    assert writer.repo.remote_ref("master") is None
    assert {b: [c.id for c in branch_log(str(srv), b)] for b in before} == before


def test_no_token_over_http_without_the_opt_in(tmp_path: Path) -> None:
    seed_repo(tmp_path / "srv" / "cfg-app.git")
    with GitHttpServer(tmp_path / "srv", TOKEN) as server:
        url = server.url("cfg-app.git")
        with pytest.raises(ValueError, match="allow_insecure_http"):
            RepoConfig.model_validate({"url": url, "token_env": "T"})
        # A config naming no token_env, handed a token anyway (as the plugin's was): the
        # callbacks refuse all the same.
        unchecked = make_config(url).repos["cfg-app"]
        repo = ConfigRepo("cfg-app", unchecked, tmp_path / "clone.git", Credentials(token=TOKEN))
        with pytest.raises(GitFailure, match="clear text") as info:
            repo.fetch()
        assert not info.value.retriable
        assert server.refused >= 1  # it did ask
        assert server.credentials_seen == 0  # and got nothing
        # With the opt-in the same server is usable.
        writer = _writer(
            url, tmp_path / "ok.git", Credentials(token=TOKEN), allow_insecure_http=True
        )
        writer.refresh()
        assert push(writer, introduce()).outcome == "committed"
        assert server.credentials_seen >= 1


def test_an_https_certificate_that_does_not_verify_is_refused(tmp_path: Path) -> None:
    """A server whose certificate chains to no CA this process trusts (a throwaway one):
    refused before the token is sent, and not taken for an outage."""
    ca = make_authority(tmp_path / "certs", "git")
    leaf = make_leaf(ca, tmp_path / "certs", "git-server")
    seed_repo(tmp_path / "srv" / "cfg-app.git")
    server = GitHttpServer(tmp_path / "srv", TOKEN)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf.cert, leaf.key)
    server._server.socket = context.wrap_socket(server._server.socket, server_side=True)
    with server:
        url = server.url("cfg-app.git").replace("http://", "https://")
        writer = _writer(url, tmp_path / "clone.git", Credentials(token=TOKEN), token_env="T")
        with pytest.raises(GitFailure, match="certificate did not verify") as info:
            writer.refresh()
        assert not info.value.retriable
        assert server.credentials_seen == 0


# -- SSH ---------------------------------------------------------------------------------

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass(frozen=True)
class SshRemote:
    url: str
    bare: Path
    known_hosts: str  # the right line for this server
    impostor_known_hosts: str  # another key for the same host and port
    client_key: str
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def ssh_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshRemote]:
    if not Path(SSHD).exists():
        # .ci/run installs it: in CI a missing sshd is a failure, never a silent skip.
        missing = "openssh-server is not installed (apt-get install openssh-server)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    where = tmp_path_factory.mktemp("sshd")
    host_pub = _keygen(where / "host_key")
    impostor_pub = _keygen(where / "impostor_key")
    client_pub = _keygen(where / "client_key")
    (where / "authorized_keys").write_text(client_pub + "\n")
    port = _free_port()
    config = where / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {where / 'host_key'}\n"
        f"PidFile {where / 'sshd.pid'}\nAuthorizedKeysFile {where / 'authorized_keys'}\n"
        "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n"
        "LogLevel VERBOSE\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    log = where / "sshd.log"
    bare = where / "srv" / "cfg-app.git"
    seed_repo(bare)
    with log.open("wb") as out:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=out)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        host_key = " ".join(host_pub.split()[:2])
        impostor_key = " ".join(impostor_pub.split()[:2])
        yield SshRemote(
            url=f"ssh://{getpass.getuser()}@127.0.0.1:{port}{bare}",
            bare=bare,
            known_hosts=f"[127.0.0.1]:{port} {host_key}",
            impostor_known_hosts=f"[127.0.0.1]:{port} {impostor_key}",
            client_key=(where / "client_key").read_text(),
            log=log,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def keep_homedir() -> Iterator[None]:
    """libgit2's home is process-wide; put it back for the tests after these."""
    before = pygit2.settings.homedir
    yield
    if before:
        pygit2.settings.homedir = before


def _ssh_writer(remote: SshRemote, data: Path, known_hosts: str | None) -> Applier:
    creds = Credentials(ssh_private_key=remote.client_key, ssh_known_hosts=known_hosts)
    return _writer(remote.url, data, creds, ssh_key_env="KEY", ssh_known_hosts_env="KNOWN")


def _accepted_keys(remote: SshRemote) -> int:
    return remote.log.read_text(errors="replace").count("Accepted publickey")


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("keep_homedir")
@pytest.mark.parametrize("which", ["impostor key", "unknown host", "no entries"])
def test_an_ssh_host_key_not_configured_is_refused_before_any_key_is_offered(
    ssh_remote: SshRemote, tmp_path: Path, which: str
) -> None:
    known = {
        "impostor key": ssh_remote.impostor_known_hosts,
        "unknown host": ssh_remote.known_hosts.replace("[127.0.0.1]", "[git.example.com]"),
        "no entries": None,
    }[which]
    before = [c.id for c in branch_log(str(ssh_remote.bare), "auto")]
    accepted = _accepted_keys(ssh_remote)
    writer = _ssh_writer(ssh_remote, tmp_path / "clone.git", known)
    with pytest.raises(GitFailure, match=r"host key|cannot be checked") as info:
        writer.refresh()
    assert not info.value.retriable
    time.sleep(0.2)  # sshd writes its log line after the session ends
    assert _accepted_keys(ssh_remote) == accepted, "the client key was used"
    assert [c.id for c in branch_log(str(ssh_remote.bare), "auto")] == before


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("keep_homedir")
def test_the_configured_host_key_lets_a_command_land(ssh_remote: SshRemote, tmp_path: Path) -> None:
    writer = _ssh_writer(ssh_remote, tmp_path / "clone.git", ssh_remote.known_hosts)
    writer.refresh()
    result = push(writer, introduce())
    assert result.outcome == "committed"
    assert str(branch_log(str(ssh_remote.bare), "auto")[0].id) == result.sha
    assert _accepted_keys(ssh_remote) >= 1


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("keep_homedir")
def test_a_hashed_known_hosts_line_works_too(ssh_remote: SshRemote, tmp_path: Path) -> None:
    """``ssh-keygen -H`` hides host names in known_hosts; libssh2 matches such lines."""
    known = tmp_path / "known_hosts"
    known.write_text(ssh_remote.known_hosts + "\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, timeout=30)
    hashed = known.read_text().strip()
    assert hashed.startswith("|1|") and "127.0.0.1" not in hashed
    writer = _ssh_writer(ssh_remote, tmp_path / "clone.git", hashed)
    writer.refresh()
    assert writer.repo.remote_ref("master") is not None

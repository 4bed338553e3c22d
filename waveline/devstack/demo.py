"""The demo config repository and config file that ``make up`` seeds.

A local bare repository (the "remote") with an ``images-json`` layout on ``master``, and a
config whose pipeline walks staging → internal → production.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pygit2

from waveline.devstack.paths import StackPaths

WAVES = ("staging", "internal", "production")
# Settings ``make up`` gives its services besides the tokens (an environment variable set
# by the caller wins): the dashboard opens without a token from this host, when asked for
# as localhost (docs/security.md, Dashboard and metrics); a deployment leaves it unset.
DEMO_ENV = {"WAVELINE_DASHBOARD_OPEN": "loopback"}


def seed_repo(bare: Path) -> bool:
    """Create the bare demo repo with an initial commit on master; False if it exists."""
    if (bare / "HEAD").exists():
        return False
    repo = pygit2.init_repository(str(bare), bare=True, initial_head="master")
    builder = repo.TreeBuilder()
    images = repo.TreeBuilder()
    for wave in WAVES:
        wave_tree = repo.TreeBuilder()
        for name in ("tags.json", "digests.json"):
            wave_tree.insert(name, repo.create_blob(b"{}\n"), pygit2.enums.FileMode.BLOB)
        images.insert(wave, wave_tree.write(), pygit2.enums.FileMode.TREE)
    builder.insert("images", images.write(), pygit2.enums.FileMode.TREE)
    readme = b"# cfg-app (Waveline demo)\n\nArgo CD watches `master`; Waveline writes `auto`.\n"
    builder.insert("README.md", repo.create_blob(readme), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("waveline demo", "demo@waveline.invalid")
    repo.create_commit("refs/heads/master", sig, sig, "initial config", builder.write(), [])
    return True


def write_config(path: Path, repo_url: str) -> None:
    config = {
        "repos": {
            "cfg-app": {
                "url": repo_url,
                "watched_branch": "master",
                "auto_branch": "auto",
                "author": {"name": "waveline", "email": "waveline@example.com"},
                "required_checks": ["ci/validate"],
            }
        },
        "pipelines": {
            "app": {
                "repo": "cfg-app",
                "layout": {"kind": "images-json", "path": "images/{wave}"},
                "strategy": {"kind": "commit"},
                "waves": [
                    {"name": "staging", "targets": ["staging-us", "staging-eu"]},
                    {"name": "internal", "targets": ["internal-us"], "gate": {"bake": "10m"}},
                    {
                        "name": "production",
                        "targets": ["prod-us", "prod-eu"],
                        "gate": {"approval": True},
                    },
                ],
            }
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is YAML; the file is generated, so no comments are lost.
    path.write_text(json.dumps(config, indent=2) + "\n")


def demo_secrets(paths: StackPaths) -> dict[str, str]:
    """Per-checkout random demo tokens, kept in ``.run/demo/secrets.env`` (mode 0600)."""
    env_file = paths.run / "demo" / "secrets.env"
    values: dict[str, str] = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value
    names = (
        "WAVELINE_CI_TOKEN",
        "WAVELINE_GITHUB_WEBHOOK_SECRET",
        "WAVELINE_ARGOCD_TOKEN",
        "WAVELINE_OPERATOR_TOKEN",
    )
    changed = False
    for name in names:
        if name not in values:
            values[name] = secrets.token_urlsafe(24)
            changed = True
    if changed:
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        env_file.chmod(0o600)
    return values

"""What signing costs per commit: ``ConfigRepo.create_commit`` on the demo layout, unsigned,
signed with an SSH key (``ssh-keygen -Y sign``) and with an OpenPGP key (``gpg``), keys made
fresh for the run; objects kept in memory as the git-writer keeps them.

Run: ``.venv/bin/python -m bench.signing [--commits 200]``; a Markdown table on stdout: wall
time and this process's CPU plus its children's (the signing tools) per commit.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pygit2

from tests.signing_keys import gpg_key, ssh_key
from tests.support import make_config
from waveline.devstack.demo import seed_repo
from waveline.shared.gitengine.repo import ConfigRepo
from waveline.shared.gitengine.signing import Signer, SigningConfig
from waveline.shared.gitengine.storage import ObjectStore


def cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(base: Path, name: str, signer: Signer | None, commits: int) -> tuple[float, float]:
    bare = base / f"{name}.git"
    seed_repo(bare)
    repo = ConfigRepo(
        name,
        make_config(bare.as_uri()).repos["cfg-app"],
        bare,
        store=ObjectStore(bare),
        signer=signer,
    )
    tip = repo.repo.references["refs/heads/master"].target
    assert isinstance(tip, pygit2.Oid)
    wall, cpu = time.perf_counter(), cpu_s()
    for i in range(commits):
        new = repo.create_commit(tip, {"images/staging/tags.json": f"{i}\n".encode()}, f"c{i}")
        assert new is not None
        tip = new
    return (time.perf_counter() - wall) * 1000 / commits, (cpu_s() - cpu) * 1000 / commits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=200)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="wl-sign-bench-"))
    try:
        rows = [("unsigned", *run(base, "plain", None, args.commits))]
        ssh = ssh_key(base / "ssh")
        with gpg_key() as gpg:
            for key in (ssh, gpg):
                os.environ["BENCH_SIGNING_KEY"] = key.private
                signer = Signer(
                    SigningConfig(format=key.format, key_env="BENCH_SIGNING_KEY"),
                    "repos.bench",
                )
                try:
                    rows.append((key.format, *run(base, key.format, signer, args.commits)))
                finally:
                    signer.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{args.commits} commits each, {os.cpu_count()} CPUs\n")
    print("| signing | wall ms/commit | CPU ms/commit (with the tool) |")
    print("|---|---|---|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()

"""Keeps the demo "remote" packed, as a git server would.

The demo config repository is a plain bare repository pushed to over ``file://``. libgit2's
local transport stores every push as a new pack and never repacks, so after a few thousand
pushes each push searched thousands of packs (measured: a one-commit push went from 5 ms to
25-37 ms, and the git-writer fell behind at 100 commits/s). A real server keeps its packs
few: GitHub repacks, and ``git receive-pack`` runs ``git gc --auto`` after every push. This
loop does what receive-pack would: ``git gc --auto`` (which only acts past
``gc.autoPackLimit`` packs) every few seconds. Refs are left alone (``gc.packRefs false``)
so a ref update by a push never races a ref pack.

Run by ``waveline dev up`` as ``python -m waveline.devstack.remote_gc <bare repo>``.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def configure(bare: Path) -> None:
    # In the foreground (this loop is the background) and without packing refs.
    for key, value in (("gc.autoDetach", "false"), ("gc.packRefs", "false")):
        subprocess.run(["git", "--git-dir", str(bare), "config", key, value], check=True)


def gc_auto(bare: Path) -> bool:
    """One ``git gc --auto``; False when git failed (logged, tried again next round)."""
    done = subprocess.run(
        ["git", "--git-dir", str(bare), "gc", "--auto", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        logger.warning("git gc --auto in %s failed: %s", bare, done.stderr.strip())
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bare", type=Path)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between rounds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    configure(args.bare)
    logger.info("keeping %s packed (git gc --auto every %.0f s)", args.bare, args.every)
    while True:
        gc_auto(args.bare)
        time.sleep(args.every)


if __name__ == "__main__":
    main()

"""Keeps the demo "remote" packed, as a git server would.

The demo config repository is a plain bare repository pushed to over ``file://``. libgit2's
local transport stores every push as a new pack and never repacks, so after a few thousand
pushes each push searched thousands of packs (measured: a one-commit push went from 5 ms to
25-37 ms, and the git-writer fell behind at 100 commits/s). A real server keeps its packs
few: GitHub repacks, and ``git receive-pack`` runs ``git gc --auto`` after every push. This
loop does that housekeeping every few seconds, the cheap way servers do it today: past
``MAX_PACKS`` packs, ``git repack -d --geometric=2`` merges only the small recent packs
(a whole-repository ``gc`` took about a second of CPU each time at 100 pushes a second, on
the cores the benchmark measures). Refs are never touched, so a push's ref update cannot
race a ref pack.

Run by ``waveline dev up`` as ``python -m waveline.devstack.remote_gc <bare repo>``.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
from pathlib import Path

logger = logging.getLogger(__name__)


MAX_PACKS = 16


def packs(bare: Path) -> int:
    return len(list((bare / "objects" / "pack").glob("pack-*.pack")))


def repack(bare: Path, max_packs: int = MAX_PACKS) -> bool:
    """Merge small packs once more than ``max_packs`` pile up; False when git failed
    (logged, tried again next round)."""
    if packs(bare) <= max_packs:
        return True
    done = subprocess.run(
        ["git", "--git-dir", str(bare), "repack", "-d", "-q", "--geometric=2"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        logger.warning("git repack in %s failed: %s", bare, done.stderr.strip())
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bare", type=Path)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between rounds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logger.info("keeping %s packed (checked every %.0f s)", args.bare, args.every)
    while True:
        repack(args.bare)
        time.sleep(args.every)


if __name__ == "__main__":
    main()

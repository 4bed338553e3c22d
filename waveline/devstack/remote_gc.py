"""Keeps the demo "remote" packed, as a git server would.

The demo config repository is a plain bare repository pushed to over ``file://``. libgit2's
local transport stores every push as a new pack and never repacks, and a push opens the
remote and searches its packs: measured on the demo repository, a push took 2.5 ms with one
pack and 7.5 ms with 200 (25-37 ms with 2,000, where the git-writer fell behind). A real
server keeps its packs few: GitHub repacks, and ``git receive-pack`` runs ``git gc --auto``
after every push.

At 100 image sets a second the writer pushes about 40 times a second, so this has to be
cheap and frequent. ``git repack --geometric=2`` took about 200 ms of CPU even for twenty
one-commit packs (its object enumeration walks history), so checking every 5 s let the count
swing between 3 and 170 and the benchmark's push time with it; merging with libgit2's pack
builder (which recompresses every object) cost 0.15-0.3 of a core. Instead, every half
second, past ``MAX_PACKS`` packs, the small packs are chosen by git's own geometric rule (a
pack survives only when it holds at least twice the objects of all the smaller ones
together), their object ids are read from the ``.idx`` files and handed to ``git
pack-objects``, which copies their compressed data as it is: 5-7 ms of CPU for a few
hundred objects, and the big pack of the history is left alone. The merged pack is in place
before the small ones go, so a reader always finds every object. Refs are never
touched, so a push's ref update cannot race this.

Run by ``waveline dev up`` as ``python -m waveline.devstack.remote_gc <bare repo>``.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
from pathlib import Path

from waveline.shared.gitengine.storage.packfiles import (
    index_ids,
    packs_to_merge,
    remove_packs,
    write_staged,
)

logger = logging.getLogger(__name__)


MAX_PACKS = 8


def packs(bare: Path) -> int:
    return len(list((bare / "objects" / "pack").glob("pack-*.pack")))


def repack(bare: Path, max_packs: int = MAX_PACKS) -> int:
    """Merge small packs once more than ``max_packs`` pile up; returns how many packs were
    merged (0: nothing to do). Raises ``OSError`` (or ``ValueError`` for an index it cannot
    read) when it could not."""
    pack_dir = bare / "objects" / "pack"
    victims = packs_to_merge(pack_dir, over=max_packs)
    if not victims:
        return 0
    ids = "".join(f"{oid}\n" for idx in victims for oid in index_ids(idx))

    def pack_objects(staging: Path) -> None:
        # The ids themselves, no --revs: no history walk, and the objects' compressed data
        # and deltas are copied as they are.
        done = subprocess.run(
            ["git", "--git-dir", str(bare), "pack-objects", "-q", str(staging / "pack")],
            input=ids,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise OSError(f"git pack-objects failed: {done.stderr.strip()}")

    remove_packs(victims, keep=write_staged(pack_dir, pack_objects))
    return len(victims)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bare", type=Path)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between rounds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logger.info("keeping %s packed (checked every %.1f s)", args.bare, args.every)
    while True:
        try:
            repack(args.bare)
        except (OSError, ValueError):
            # Housekeeping: the remote still works with more packs; the next round retries.
            logger.exception("merging packs in %s failed", args.bare)
        time.sleep(args.every)


if __name__ == "__main__":
    main()

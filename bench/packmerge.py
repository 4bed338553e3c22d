"""Pack merge benchmark: what merging a repository's packs costs in time and memory.

Makes a pack directory like the git-writer's clone after a long run: one history pack of N
small blobs, a pack git wrote with deltas (OFS_DELTA), and 14 recent packs of N/40 objects
each, some of them also in the history; then merges them all (``packmerge.merge_packs``, what
the packing process does when the history is rolled up) twice: once for time and the
process's high-water mark, once under tracemalloc for Python's own peak per object.

Run: ``.venv/bin/python -m bench.packmerge [--objects 400000]``. To compare code, run it
from two checkouts (``PYTHONPATH=<checkout>``) on the same machine, one after the other.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pygit2

from waveline.shared.gitengine.storage.packfiles import write_pack
from waveline.shared.gitengine.storage.packmerge import merge_packs


def _blob(rnd: random.Random, n: int) -> tuple[bytes, int, bytes]:
    data = f"image: registry.example.com/svc-{n}@sha256:{rnd.getrandbits(256):064x}\n".encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).digest(), 3, data  # noqa: S324


def _delta_pack(bare: Path) -> None:
    """A pack written by git itself, most of its objects deltas of one another."""
    repo = pygit2.init_repository(str(bare), bare=True)
    sig = pygit2.Signature("b", "b@example.com")
    parent: list[pygit2.Oid] = []
    text = "".join(f"line {k}: value\n" for k in range(300))
    for c in range(300):
        text += f"change {c}\n"
        tree = repo.TreeBuilder()
        tree.insert("values.yaml", repo.create_blob(text.encode()), pygit2.enums.FileMode.BLOB)
        parent = [repo.create_commit(None, sig, sig, f"c{c}", tree.write(), parent)]
    repo.references.create("refs/heads/main", parent[0])
    git = ["git", f"--git-dir={bare}"]
    listed = subprocess.run(
        [*git, "rev-list", "--objects", "--all"], capture_output=True, text=True, check=True
    ).stdout
    ids = "".join(line.split()[0] + "\n" for line in listed.splitlines())
    pack = str(bare / "objects" / "pack" / "pack")
    subprocess.run(
        [*git, "pack-objects", "-q", pack], input=ids, text=True, check=True, capture_output=True
    )
    for loose in (bare / "objects").glob("??/*"):
        loose.unlink()


def make_packs(root: Path, objects: int) -> Path:
    bare = root / "repo.git"
    _delta_pack(bare)
    pack_dir = bare / "objects" / "pack"
    rnd = random.Random(7)
    history = [_blob(rnd, n) for n in range(objects)]
    write_pack(history, pack_dir)
    for p in range(14):
        recent = [_blob(rnd, objects + p * objects + n) for n in range(objects // 40)]
        write_pack([*recent, *rnd.sample(history, objects // 800)], pack_dir)
    return pack_dir


def _high_water_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def merge(pack_dir: Path, *, traced: bool) -> dict[str, float | str]:
    """Merge every pack of ``pack_dir`` aside; run in a fresh process, so its high-water
    mark is the merge's."""
    idxs = sorted(pack_dir.glob("*.idx"), key=lambda idx: idx.stat().st_size)
    into = Path(tempfile.mkdtemp(prefix="merged-", dir=pack_dir.parent))
    if traced:
        tracemalloc.start()
    before = _high_water_mib()
    started = time.perf_counter()
    name, count = merge_packs(idxs, into)
    took = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    shutil.rmtree(into)
    return {
        "packs": len(idxs),
        "objects": count,
        "name": name,
        "seconds": took,
        "grew_mib": _high_water_mib() - before,
        "python_peak": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=400_000, help="the history pack's")
    parser.add_argument("--merge", type=Path, help=argparse.SUPPRESS)  # the child's part
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.merge:
        print(json.dumps(merge(args.merge, traced=args.traced)))
        return
    root = Path(tempfile.mkdtemp(prefix="bench-packmerge-"))
    try:
        pack_dir = make_packs(root, args.objects)
        runs = []
        for traced in (False, True):
            child = [sys.executable, "-m", "bench.packmerge", "--merge", str(pack_dir)]
            done = subprocess.run(
                [*child, *(["--traced"] if traced else [])],
                check=False,
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise SystemExit(done.stderr)
            runs.append(json.loads(done.stdout))
        timed, traced_run = runs
        peak = float(traced_run["python_peak"])
        objects = float(timed["objects"])
        print(
            f"{timed['packs']} packs, {objects:.0f} objects merged into {timed['name']}:"
            f" {float(timed['seconds']):.2f} s; high-water mark +{float(timed['grew_mib']):.0f}"
            f" MiB (with the packs' pages it maps); Python's peak {peak / 2**20:.1f} MiB,"
            f" {peak / objects:.0f} bytes an object"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

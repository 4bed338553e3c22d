"""The repository stands alone: no tracked file points at a design document or source
documents that are not part of it. The contract lives in README.md and docs/ (notably
docs/architecture.md); code, tests and docs point there."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve()

# A pointer outside the repository: a section of the old design document, that document
# itself, or one of the numbered source documents (by number or by file name). Seeding a
# demo repository (seed_repo, `seed-repo`) is not such a pointer.
OUTSIDE = re.compile(
    r"DESIGN\s*(?:§|\.md)"
    r"|\bseeds/"
    r"|\bseeds?\s+0\d\d\b"
    r"|\b00\d_[0-9a-f]{16}\b",
    re.IGNORECASE,
)
SKIP_DIRS = {".git", ".venv", ".run", ".cache", "node_modules", "__pycache__"}


def tracked_files() -> list[Path]:
    """The files git tracks; every file under the root but build and run directories when
    this is not a git checkout (a source archive)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(ROOT):
            dirnames[:] = [
                d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")
            ]
            found.extend(Path(dirpath) / f for f in filenames)
        return found
    return [ROOT / name for name in out.decode().split("\0") if name]


def pointers_outside(text: str) -> list[str]:
    return [m.group(0) for m in OUTSIDE.finditer(text)]


def test_the_pattern_finds_what_it_must_and_only_that() -> None:
    for pointer in (
        "see DESIGN §2",
        "(DESIGN §1, §2)",
        "../shared/DESIGN.md",
        "seed 001's object",
        "Seed 003",
        "seeds 002",
        "the seeds/ folder",
        "001_a9e7bf2167c3cf5d.readable.txt",
    ):
        assert pointers_outside(pointer), pointer
    for fine in (
        "seed_repo(bare)",
        "seeds a demo config repository",
        "service `seed-repo`",
        "Pass a seeded rng",
        'CloudEvents JSON format, §3 "Envelope"',
        "0001_promoter.sql",
        "the design of the git engine",
    ):
        assert not pointers_outside(fine), fine


def test_no_tracked_file_points_outside_the_repository() -> None:
    files = [p for p in tracked_files() if p.resolve() != HERE and p.is_file()]
    assert len(files) > 50, "found too few files to mean anything"
    offenders: list[str] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary: no prose to point anywhere
        for number, line in enumerate(text.splitlines(), 1):
            found = pointers_outside(line)
            if found:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {', '.join(found)}")
    assert not offenders, (
        "point these to README.md or docs/ (docs/architecture.md states the contract):\n"
        + "\n".join(offenders)
    )

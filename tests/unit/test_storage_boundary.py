"""The git rules use the storage package only through its front.

``shared/gitengine/storage/__init__.py`` is the interface (``ObjectStore``,
``BackgroundPacking``); memory.py, packfiles.py, packmerge.py, store.py and background.py
are its internals. This fails when a module outside the package imports one of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STORAGE = "waveline.shared.gitengine.storage"
# A dev tool that keeps the demo remote's packs few, as a git server would: it works on
# pack files themselves, which is what packfiles.py is for.
ALLOWED = {("waveline/devstack/remote_gc.py", f"{STORAGE}.packfiles")}


def storage_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == STORAGE:
                found |= {f"{STORAGE}.{a.name}" for a in node.names if a.name[0].islower()}
            elif node.module.startswith(f"{STORAGE}."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(f"{STORAGE}.")}
    return found


def test_only_the_storage_package_imports_its_internals() -> None:
    sources = [
        path
        for top in ("shared", "services", "waveline/devstack", "waveline/cli")
        for path in (ROOT / top).rglob("*.py")
        if "gitengine/storage" not in path.as_posix()
    ]
    assert len(sources) > 50  # the scan found the code base
    crossing = {
        (path.relative_to(ROOT).as_posix(), name)
        for path in sources
        for name in storage_imports(path)
    }
    assert crossing - ALLOWED == set()


def test_the_git_rules_use_the_front() -> None:
    for rules in ("shared/gitengine/repo.py", "services/git_writer/host.py"):
        assert storage_imports(ROOT / rules) == set(), rules
        assert f"from {STORAGE} import" in (ROOT / rules).read_text(), rules

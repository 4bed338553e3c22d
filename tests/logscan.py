"""Every log line the suite produced, in one place, for the no-secrets-in-logs test.

In-process services log through the root logger: a session handler copies every record
(INFO and up, what production runs at) to ``<basetemp>/suite-logs/inprocess.log``.
Services run as real processes (crash tests, the dev stack) write ``*.log`` files under
their test's ``tmp_path``, which lives under the same base temp directory.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from pathlib import Path

# Modules whose constants are credentials used by the suite, and the names to read.
_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "tests.conftest": ("CI_TOKEN", "OPERATOR_TOKEN", "GITHUB_SECRET", "ARGOCD_TOKEN"),
    "tests.e2e.test_strategies": ("FORGE_TOKEN", "HOOK_TOKEN", "RESULT_TOKEN"),
    "tests.integration.test_git_http": ("TOKEN",),
    "tests.integration.test_forge_github": ("TOKEN", "HOOK_SECRET"),
    "tests.integration.test_webhook_delivery": ("TOKEN", "HEADER_SECRET"),
    "tests.integration.test_notifier": ("HOOK_TOKEN", "EVENTS_TOKEN"),
    "tests.integration.test_auto_merge": ("FORGE_TOKEN",),
}
_LITERALS = ("pat-123456",)  # the Drone plugin test's access token


def known_secrets(base: Path) -> set[str]:
    """The suite's credentials, plus the random ones the dev stack generated."""
    found = set(_LITERALS)
    for module_name, names in _CREDENTIALS.items():
        module = importlib.import_module(module_name)
        found.update(str(getattr(module, name)) for name in names)
    for env_file in base.rglob("secrets.env"):
        for line in env_file.read_text().splitlines():
            _, _, value = line.partition("=")
            if len(value) >= 8:
                found.add(value)
    return found


def log_files(base: Path) -> Iterator[Path]:
    yield from sorted(base.rglob("*.log"))


def capture(base: Path) -> logging.Handler:
    """Attach a root handler copying every INFO+ record to ``base/suite-logs``."""
    path = base / "suite-logs" / "inprocess.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    # aiohttp's access log is written by the tests' own receivers (fake GitHub, webhook
    # receivers, whose URLs may hold a test credential on purpose); Waveline's services do
    # not write one (ingest runs with access_log=None).
    handler.addFilter(lambda record: record.name != "aiohttp.access")
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler

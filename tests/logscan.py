"""Everything the suite wrote that must hold no secret, in one place, for the last test.

- Log lines. In-process services log through the root logger: a session handler copies
  every record (INFO and up, what production runs at) to ``<basetemp>/suite-logs/
  inprocess.log``. Services run as real processes (crash tests, the dev stack) write
  ``*.log`` files under their test's ``tmp_path``, which lives under the same base.
- Dead letters and stored rows. Each test's topics and schema are dropped when the test
  ends (tests/support.py, ``isolated_settings``), so just before that ``keep_leftovers``
  copies every record of the test's ``waveline.dlq`` and every row of every table of its
  schema (the notifier's delivery bodies among them) to ``<basetemp>/suite-leftovers/
  <schema>.leftovers``, as text.

``find_leaks`` scans both kinds of file for the suite's secrets (``known_secrets``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from waveline.shared.config import Settings
from waveline.shared.topics import Topics

# Modules whose constants are credentials used by the suite, and the names to read. Any
# module of the suite imported by the session is searched too (``_constants``).
_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "tests.conftest": ("CI_TOKEN", "OPERATOR_TOKEN", "GITHUB_SECRET", "ARGOCD_TOKEN"),
    "tests.e2e.test_strategies": ("FORGE_TOKEN", "HOOK_TOKEN", "RESULT_TOKEN"),
    "tests.integration.test_git_http": ("TOKEN",),
    "tests.integration.test_forge_github": ("TOKEN", "HOOK_SECRET"),
    "tests.integration.test_webhook_delivery": ("TOKEN", "HEADER_SECRET"),
    "tests.integration.test_notifier": ("HOOK_TOKEN", "EVENTS_TOKEN"),
    "tests.integration.test_notifier_secrets": ("BEARER", "SIGNING_KEY"),
    "tests.integration.test_auto_merge": ("FORGE_TOKEN",),
}
_LITERALS = ("pat-123456",)  # the Drone plugin test's access token
# A module constant whose name says it is a credential: a token, secret, password or key.
_CREDENTIAL_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|KEY|BEARER)(_|$)")
# Shorter values are not credentials (and would match ordinary text).
_MIN_SECRET = 8
LEFTOVERS = "suite-leftovers"
# A leftovers file that could not be written whole says so on a line starting with this;
# the scan reports it, since what it did not copy was not scanned.
UNREAD = "UNREAD "

# Where ``keep_leftovers`` writes: the session's base temp directory, once ``capture`` ran.
_session: dict[str, Path] = {}


def known_secrets(base: Path) -> set[str]:
    """The suite's credentials: the named ones above, every credential-named string
    constant of a test module the session imported, and the random ones the dev stack
    generated (its ``secrets.env`` files)."""
    found = set(_LITERALS)
    for module_name, names in _CREDENTIALS.items():
        module = importlib.import_module(module_name)
        found.update(str(getattr(module, name)) for name in names)
    found.update(_constants(name for name in list(sys.modules) if name.startswith("tests.")))
    for env_file in base.rglob("secrets.env"):
        for line in env_file.read_text().splitlines():
            _, _, value = line.partition("=")
            if len(value) >= _MIN_SECRET:
                found.add(value)
    return {s for s in found if len(s) >= _MIN_SECRET}


def _constants(module_names: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for module_name in module_names:
        module = sys.modules.get(module_name)
        for name, value in vars(module).items() if module is not None else ():
            if name.isupper() and _CREDENTIAL_NAME.search(name) and isinstance(value, str):
                found.add(value)
    return found


def log_files(base: Path) -> Iterator[Path]:
    yield from sorted(base.rglob("*.log"))


def leftover_files(base: Path) -> Iterator[Path]:
    yield from sorted(base.rglob("*.leftovers"))


def find_leaks(base: Path, secrets: Iterable[str]) -> tuple[list[str], int]:
    """Every (file, secret) pair where a log or leftovers file under ``base`` holds one of
    ``secrets`` (shown by its first 4 characters), plus every leftovers file that says part
    of it could not be read; and the number of characters scanned."""
    wanted = sorted(set(secrets))
    leaks: list[str] = []
    scanned = 0
    for path in [*log_files(base), *leftover_files(base)]:
        text = path.read_text(encoding="utf-8", errors="replace")
        scanned += len(text)
        where = path.relative_to(base)
        leaks += [f"{where}: {s[:4]}…" for s in wanted if s in text]
        if path.suffix == ".leftovers":
            leaks += [f"{where}: {line}" for line in text.splitlines() if line.startswith(UNREAD)]
    return leaks, scanned


def capture(base: Path) -> logging.Handler:
    """Attach a root handler copying every INFO+ record to ``base/suite-logs``, and make
    ``keep_leftovers`` write under ``base``."""
    _session["base"] = base
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


async def keep_leftovers(settings: Settings, into: Path | None = None) -> Path | None:
    """Copy the dead letters of ``settings``' topics and every row of its schema to
    ``<into or the session's base>/suite-leftovers/<schema>.leftovers``, as text (bytea as
    UTF-8), before they are dropped. Returns the file (``None`` outside a session that
    called ``capture`` and without ``into``). What cannot be read is recorded as an
    ``UNREAD`` line, never skipped silently."""
    root = into or _session.get("base")
    if root is None:
        return None
    path = root / LEFTOVERS / f"{settings.database_schema}.leftovers"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for what, read in (("dead letters", _dead_letters), ("tables", _tables)):
        try:
            async with asyncio.timeout(20):
                lines += await read(settings)
        except Exception as exc:
            lines.append(f"{UNREAD}{what} of {settings.database_schema}: {type(exc).__name__}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def _dead_letters(settings: Settings) -> list[str]:
    topic = Topics(settings.topic_prefix).dlq
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        # Subscribing to a topic that is not there could have the broker create it.
        if topic not in await consumer.topics():
            return []
        # Without a group, a subscription is assigned every partition at once.
        consumer.subscribe([topic])
        while not consumer.assignment():  # noqa: ASYNC110 (aiokafka offers no event)
            await asyncio.sleep(0.05)
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        lines: list[str] = []
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                lines += [f"{topic}: {_text(r.key)}\t{_text(r.value)}" for r in records]
        return lines
    finally:
        await consumer.stop()


async def _tables(settings: Settings) -> list[str]:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        schema = settings.database_schema
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema
        )
        lines: list[str] = []
        for (table,) in tables:
            quoted = '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
            for row in await conn.fetch(f"SELECT * FROM {quoted}"):  # noqa: S608 (catalog names)
                lines.append(f"{table}: " + "\t".join(f"{k}={_text(v)}" for k, v in row.items()))
        return lines
    finally:
        await conn.close()


def _text(value: Any) -> str:
    """``value`` as text; JSON (a letter, a jsonb column, a delivery body) also with its
    strings unescaped after it, so that a secret JSON escapes is found all the same."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", "replace")
    text = str(value)
    if text[:1] in "{[":
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        return "\t".join([text, *_strings(parsed)])
    return text


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
        if node[:1] in "{[":
            yield _text(node)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _strings(item)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)

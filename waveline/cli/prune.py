"""``waveline prune [--dry-run]``: one retention pass over every service's tables, now
(the services run the same pass on their own tables every ``WAVELINE_RETENTION_INTERVAL_S``;
the rules are in docs/reliability.md, "Retention")."""

from __future__ import annotations

import asyncio

from waveline.shared.config import Settings
from waveline.shared.db import create_pool
from waveline.shared.retention import RULES, check_settings, prune_once, retention_of


def run(settings: Settings, *, dry_run: bool) -> int:
    """Print, per table, the rows deleted (or prunable, with ``dry_run``); 0 on success.
    ``ConfigError`` for a per-table retention naming an unknown table."""
    check_settings(settings)
    counts = asyncio.run(_prune(settings, dry_run))
    verb = "prunable" if dry_run else "deleted"
    print(f"{'table':22} {verb:>10}  older than  kept whatever their age")
    for rule in RULES:
        days = retention_of(settings, rule.table).total_seconds() / 86400
        also = f" (with its {', '.join(rule.with_rows_of)})" if rule.with_rows_of else ""
        print(f"{rule.table:22} {counts[rule.table]:>10}  {days:6g} days  {rule.kept}{also}")
    if dry_run:
        print("dry run: nothing deleted (a pass may delete more: rows freed by earlier tables)")
    return 0


async def _prune(settings: Settings, dry_run: bool) -> dict[str, int]:
    pool = await create_pool(settings, min_size=1, max_size=1)
    counts: dict[str, int] = {}
    try:
        for service in dict.fromkeys(r.service for r in RULES):
            counts.update(await prune_once(pool, settings, service, dry_run=dry_run))
    finally:
        await pool.close()
    return counts

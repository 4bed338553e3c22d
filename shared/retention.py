"""Bounded growth: each table that grows with traffic has a retention, and its owning
service prunes the rows that are older *and* that no rule still needs
(docs/reliability.md, "Retention"; the SQL is in shared/retention_store.py).

A table's retention is ``WAVELINE_RETENTION_DAYS`` (or its entry in
``WAVELINE_RETENTION_DAYS_BY_TABLE``), never less than ``WAVELINE_RETENTION_REDELIVERY_DAYS``:
these rows are also what makes a redelivered or replayed Kafka record (``waveline replay``
reaches back as far as the topics keep records) a no-op, so none may go while its record
can still come back.

Tables that do not grow with traffic are not pruned: ``wave_status``, ``wave_gates`` and
``wave_positions`` (one row per wave) and ``target_deploys`` (one row per Argo CD
application a wave lists: ingest ignores reports about any other). ``held_deploys`` empties
itself (the status-tracker drops a held report after ``WAVELINE_DEPLOY_HOLD_S``).
``freezes``, ``break_glasses`` and ``quarantined_sets`` grow only with operators' actions,
and are kept as the record of them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from waveline.shared.boundary import is_retriable
from waveline.shared.config import Settings
from waveline.shared.errors import ConfigError
from waveline.shared.retention_store import count_prunable, delete_batch

if TYPE_CHECKING:
    import asyncpg

    from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

# Between two batches of one table: the services' statements get the database in between.
BATCH_PAUSE_S = 0.05
# The first pass after a start comes this soon (or after ``interval_s`` if shorter), so a
# service restarted more often than the interval still prunes.
FIRST_PASS_AFTER_S = 60.0


@dataclass(frozen=True)
class Rule:
    """One table's retention: who prunes it, and what is kept whatever its age."""

    table: str
    service: str
    kept: str
    # Rows of these tables go with the rows they reference.
    with_rows_of: tuple[str, ...] = ()


# In pruning order: the promoter's image sets and wave runs are kept while promotions name
# them, so promotions go first.
RULES: tuple[Rule, ...] = (
    Rule(
        "promotions",
        "promoter",
        "the newest promotion into each wave; waiting and blocked ones (the gates read "
        "them); any other unfinished one until a later promotion into its wave is done",
        with_rows_of=("approvals",),
    ),
    Rule(
        "wave_runs",
        "promoter",
        "each wave's newest runs (WAVELINE_RETENTION_WAVE_RUNS: its rollback targets), the "
        "set it runs now, and the runs an unfinished promotion leaves from",
    ),
    Rule(
        "image_sets",
        "promoter",
        "sets a remaining promotion or wave run names, and the sets the waves run now",
    ),
    Rule("operator_actions", "promoter", "none: who did what is history only"),
    Rule(
        "dora_wave_history",
        "promoter",
        "each wave's newest status (the state a DORA window starts from)",
    ),
    Rule("dora_app_commits", "promoter", "the commit times of sets image_sets still keeps"),
    Rule(
        "verification_runs",
        "promoter",
        "runs still running or not yet acted on, and the runs of the set each wave runs now",
    ),
    Rule("git_command_results", "git-writer", "results still 'pushing' (settled on redelivery)"),
    # Retry after eviction reads these; past the retention a re-announcement of the set is
    # a new announcement (its command's result is pruned by then too).
    Rule("evictions", "git-writer", "none: an old eviction is history"),
    Rule("set_attempts", "git-writer", "none: an old attempt is history"),
    Rule(
        "auto_commits",
        "status-tracker",
        "commits still pending on auto, unless a later commit of the repo was green (which "
        "brought them onto the watched branch)",
    ),
    Rule("commit_checks", "status-tracker", "the checks of commits still pending on auto"),
    Rule(
        "commit_waves",
        "status-tracker",
        "commits a target reports, a wave runs or may roll back to, pending commits, and "
        "each repo's newest commit",
    ),
    Rule(
        "watched_commits",
        "status-tracker",
        "commits a target reports, and each repo's newest (what Argo CD may report next)",
    ),
    # Ingest owns no housekeeping; the status-tracker reads the checks these deliveries
    # carried, so it prunes them.
    Rule("github_deliveries", "status-tracker", "none: an older redelivery is handled again"),
    Rule("ignored_deliveries", "status-tracker", "none: an old reason to ignore is history"),
    Rule(
        "deliveries",
        "notifier",
        "deliveries still pending, and finished ones whose follow-up is not yet published",
        with_rows_of=("delivery_attempts",),
    ),
    Rule(
        "pull_requests",
        "notifier",
        "open pull requests, and the newest one per promotion branch (it orders late events)",
    ),
    Rule("pull_request_checks", "notifier", "the checks of open pull requests' heads"),
)
TABLES = tuple(r.table for r in RULES)


def tables_of(service: str) -> tuple[str, ...]:
    """The tables ``service`` prunes, in order (none for ingest, which owns no table)."""
    return tuple(r.table for r in RULES if r.service == service)


def check_settings(settings: Settings) -> None:
    """``ConfigError`` when a per-table retention names a table that is not pruned."""
    unknown = sorted(set(settings.retention_days_by_table) - set(TABLES))
    if unknown:
        raise ConfigError(
            f"WAVELINE_RETENTION_DAYS_BY_TABLE: unknown table(s) {unknown}; known: {list(TABLES)}"
        )


def retention_of(settings: Settings, table: str) -> timedelta:
    """How old a row of ``table`` must be before it may go: its setting, raised to the
    redelivery floor."""
    days = settings.retention_days_by_table.get(table, settings.retention_days)
    return timedelta(days=max(days, settings.retention_redelivery_days))


async def prune_once(
    pool: asyncpg.Pool, settings: Settings, service: str, *, dry_run: bool = False
) -> dict[str, int]:
    """Prune ``service``'s tables in batches of ``settings.retention_batch_rows`` rows
    (each batch its own short transaction); returns the rows deleted per table (dependent
    rows not counted). ``dry_run``: count what is prunable now, delete nothing (a real
    pass may delete more: pruning promotions frees the image sets and runs they named)."""
    check_settings(settings)
    keep = settings.retention_wave_runs
    limit = settings.retention_batch_rows
    deleted: dict[str, int] = {}
    for table in tables_of(service):
        cutoff = retention_of(settings, table)
        if dry_run:
            deleted[table] = await count_prunable(pool, table, cutoff, keep)
            continue
        total = 0
        while True:
            n = await delete_batch(pool, table, cutoff, limit, keep)
            total += n
            if n < limit:
                break
            await asyncio.sleep(BATCH_PAUSE_S)
        deleted[table] = total
    return deleted


async def prune_forever(runtime: Runtime, interval_s: float) -> None:
    """Prune the runtime's service's tables soon after start, then every ``interval_s``,
    until cancelled. A failed pass (the database away, say) is logged and the next one
    comes at the next interval; the service itself is never stopped by housekeeping.
    Returns at once for a service that owns no table, and after one error line when the
    settings name an unknown table."""
    if not tables_of(runtime.service):
        return
    try:
        check_settings(runtime.settings)
    except ConfigError as exc:
        logger.error("%s: retention disabled: %s", runtime.service, exc)
        return
    await asyncio.sleep(min(FIRST_PASS_AFTER_S, interval_s))
    while True:
        try:
            deleted = await prune_once(runtime.pool, runtime.settings, runtime.service)
        except Exception as exc:
            if not is_retriable(exc):
                # A bug, not an outage: loud, but housekeeping must not stop the service.
                logger.exception("%s: retention pass failed", runtime.service)
            else:
                logger.warning(
                    "%s: retention pass failed (%s); next in %.0f s",
                    runtime.service,
                    type(exc).__name__,
                    interval_s,
                )
        else:
            if any(deleted.values()):
                logger.info(
                    "%s: retention deleted %s",
                    runtime.service,
                    ", ".join(f"{t}={n}" for t, n in deleted.items() if n),
                )
        await asyncio.sleep(interval_s)

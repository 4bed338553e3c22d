"""Retention's SQL: for each table that grows with traffic, which rows may go, and the
batched DELETE (shared/retention.py drives it; docs/reliability.md states the rules).

Each ``where`` is a predicate over the table aliased ``t``, with ``{cutoff}`` (an interval:
rows older than ``now() - cutoff``) and, for wave runs, ``{keep}`` (how many of a wave's
newest runs are kept). A row matches only when it is old enough *and* nothing the services
still read needs it.

"Is there a newer row" is written ``x < (SELECT max(...))``, not ``EXISTS``: a scalar
subquery runs once per candidate as a backward index scan that reads one entry, where the
planner turned ``EXISTS`` into a hash join over every row of the group (7 s for a batch of
10,000 promotions out of 200,000, against milliseconds).

A prune deletes at most ``limit`` rows per statement, each its own transaction: the
candidates are locked ``FOR UPDATE SKIP LOCKED`` (a row a service is changing right now is
left for the next pass, and the prune never waits on a service's lock) and deleted by
``ctid``. Rows of dependent tables (``approvals``, ``delivery_attempts``) go in the same
statement as the rows they reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from waveline.shared.models.promotions import TERMINAL

_FINAL = ", ".join(f"'{s}'" for s in sorted(TERMINAL))


@dataclass(frozen=True)
class Prunable:
    table: str
    where: str
    # A statement deleting dependent rows of the doomed ones (CTE ``doomed`` has ``tid``
    # and ``key``), and the column that is ``key``.
    cascade: str | None = None
    key: str | None = None


PRUNABLE: dict[str, Prunable] = {
    p.table: p
    for p in (
        Prunable(
            "promotions",
            "t.created_at < now() - {cutoff} AND t.updated_at < now() - {cutoff}"
            # The newest promotion into each wave stays, whatever its state.
            " AND t.created_at < (SELECT max(n.created_at) FROM promotions n"
            "  WHERE n.pipeline = t.pipeline AND n.wave = t.wave)"
            " AND (t.status IN ({final})"
            # Gates read waiting and blocked ones. Another unfinished one is history once
            # a promotion into the same wave made later is done: the wave moved past it.
            "  OR (t.status NOT IN ('waiting', 'blocked') AND t.created_at < (SELECT"
            "   max(d.created_at) FROM promotions d WHERE d.pipeline = t.pipeline"
            "   AND d.wave = t.wave AND d.status = 'done')))",
            cascade="DELETE FROM approvals a USING doomed d WHERE a.promotion_id = d.key",
            key="promotion_id",
        ),
        Prunable(
            "wave_runs",
            "t.since < now() - {cutoff}"
            # A wave's newest runs are its rollback targets ('previous' is the second).
            " AND t.since < (SELECT n.since FROM wave_runs n WHERE n.pipeline = t.pipeline"
            "  AND n.wave = t.wave ORDER BY n.since DESC OFFSET {keep} - 1 LIMIT 1)"
            # What the wave runs now, and what a promotion still to be sent leaves from.
            " AND NOT EXISTS (SELECT 1 FROM wave_status s WHERE s.pipeline = t.pipeline"
            "  AND s.wave = t.wave AND s.app_sha = t.app_sha)"
            " AND NOT EXISTS (SELECT 1 FROM promotions p WHERE p.pipeline = t.pipeline"
            "  AND p.app_sha = t.app_sha AND p.from_wave = t.wave"
            " AND p.status NOT IN ({final}))",
        ),
        Prunable(
            "image_sets",
            "t.received_at < now() - {cutoff}"
            # Its images are read through promotions, wave runs and what waves run.
            " AND NOT EXISTS (SELECT 1 FROM promotions p WHERE p.pipeline = t.pipeline"
            "  AND p.app_sha = t.app_sha)"
            " AND NOT EXISTS (SELECT 1 FROM wave_runs r WHERE r.pipeline = t.pipeline"
            "  AND r.app_sha = t.app_sha)"
            " AND NOT EXISTS (SELECT 1 FROM wave_status s WHERE s.pipeline = t.pipeline"
            "  AND s.app_sha = t.app_sha)",
        ),
        Prunable(
            "git_command_results",
            # 'pushing': the push's outcome is still to be settled on redelivery.
            "t.finished_at < now() - {cutoff} AND t.state = 'done'",
        ),
        Prunable(
            "auto_commits",
            "t.created_at < now() - {cutoff}"
            " AND (t.state <> 'pending'"
            # A pending commit is on the watched branch once a later one was green.
            "  OR t.created_at < (SELECT max(n.created_at) FROM auto_commits n"
            "   WHERE n.repo = t.repo AND n.state = 'green'))",
        ),
        Prunable(
            "commit_checks",
            "t.reported_at < now() - {cutoff}"
            " AND NOT EXISTS (SELECT 1 FROM auto_commits a WHERE a.repo = t.repo"
            "  AND a.sha = t.sha AND a.state = 'pending')",
        ),
        Prunable(
            "commit_waves",
            "t.recorded_at < now() - {cutoff}"
            # What a target reports, a wave runs or may be rolled back to, a pending commit,
            # and the newest commit of the repo (Argo CD may deploy it yet).
            " AND NOT EXISTS (SELECT 1 FROM target_deploys d WHERE d.revision = t.sha)"
            " AND NOT EXISTS (SELECT 1 FROM wave_status s WHERE s.cfg_sha = t.sha)"
            " AND NOT EXISTS (SELECT 1 FROM wave_runs r WHERE r.cfg_sha = t.sha)"
            " AND NOT EXISTS (SELECT 1 FROM auto_commits a WHERE a.repo = t.repo"
            "  AND a.sha = t.sha AND a.state = 'pending')"
            " AND t.recorded_at < (SELECT max(n.recorded_at) FROM commit_waves n"
            "  WHERE n.repo = t.repo)",
        ),
        Prunable(
            "watched_commits",
            "t.recorded_at < now() - {cutoff}"
            # A target's last report is compared with its position; the newest tip of a
            # repo is what Argo CD may report next.
            " AND NOT EXISTS (SELECT 1 FROM target_deploys d WHERE d.revision = t.sha)"
            " AND t.position < (SELECT max(n.position) FROM watched_commits n"
            "  WHERE n.repo = t.repo)",
        ),
        Prunable("github_deliveries", "t.received_at < now() - {cutoff}"),
        # What ingest last ignored per repository and reason: shown, never read to decide.
        Prunable("ignored_deliveries", "t.at < now() - {cutoff}"),
        # Who did what: history only, nothing reads it to decide.
        Prunable("operator_actions", "t.recorded_at < now() - {cutoff}"),
        # DORA's facts (docs/dora.md): older statuses only move windows that start before
        # the retention; each wave's newest says what it runs when a window starts.
        Prunable(
            "dora_wave_history",
            "t.at < now() - {cutoff}"
            " AND t.at < (SELECT max(n.at) FROM dora_wave_history n"
            "  WHERE n.pipeline = t.pipeline AND n.wave = t.wave)",
        ),
        Prunable(
            "dora_app_commits",
            "t.committed_at < now() - {cutoff}"
            " AND NOT EXISTS (SELECT 1 FROM image_sets i WHERE i.pipeline = t.pipeline"
            "  AND i.app_sha = t.app_sha)",
        ),
        Prunable("evictions", "t.evicted_at < now() - {cutoff}"),
        Prunable("set_attempts", "t.requested_at < now() - {cutoff}"),
        # What the gates read: a run not finished or not yet acted on, and the runs of the
        # set a wave runs now (status and trace show them).
        Prunable(
            "verification_runs",
            "t.started_at < now() - {cutoff} AND t.status <> 'running'"
            " AND (t.handled OR t.status = 'cancelled')"
            " AND NOT EXISTS (SELECT 1 FROM wave_status s WHERE s.pipeline = t.pipeline"
            "  AND s.wave = t.wave AND s.app_sha = t.app_sha)",
        ),
        Prunable(
            "deliveries",
            "t.created_at < now() - {cutoff} AND t.updated_at < now() - {cutoff}"
            # Pending: still to be sent. Unannounced: its follow-up is still to be published.
            " AND t.state <> 'pending' AND t.announced",
            cascade="DELETE FROM delivery_attempts a USING doomed d WHERE a.delivery_id = d.key",
            key="delivery_id",
        ),
        Prunable(
            "pull_requests",
            "t.updated_at < now() - {cutoff} AND t.state <> 'open'"
            # The newest per branch orders late redeliveries (PullRequests._stale).
            " AND t.event_at < (SELECT max(n.event_at) FROM pull_requests n"
            "  WHERE n.repo = t.repo AND n.branch = t.branch)",
        ),
        Prunable(
            "pull_request_checks",
            "t.reported_at < now() - {cutoff}"
            " AND NOT EXISTS (SELECT 1 FROM pull_requests p WHERE p.repo = t.repo"
            "  AND p.head_sha = t.sha AND p.state = 'open')",
        ),
    )
}


def _where(p: Prunable, cutoff: str, keep: str) -> str:
    return p.where.format(cutoff=cutoff, keep=keep, final=_FINAL)


# Statements are joined from the constants above (table names and predicates, never input).
def delete_sql(table: str) -> str:
    """The batched DELETE of ``table``: $1 cutoff (interval), $2 limit, $3 keep (wave runs
    only)."""
    p = PRUNABLE[table]
    doomed = " ".join(
        [
            "SELECT t.ctid AS tid" + (", t." + p.key + " AS key" if p.key else ""),
            "FROM",
            table,
            "t WHERE",
            _where(p, "$1::interval", "$3::int"),
            "LIMIT $2 FOR UPDATE OF t SKIP LOCKED",
        ]
    )
    parts = ["WITH doomed AS (", doomed, ")"]
    if p.cascade:
        parts += [", dependents AS (", p.cascade, ")"]
    parts += [" DELETE FROM ", table, " WHERE ctid IN (SELECT tid FROM doomed)"]
    return "".join(parts)


def count_sql(table: str) -> str:
    """How many rows of ``table`` are prunable now: $1 cutoff, $2 keep (wave runs only)."""
    where = _where(PRUNABLE[table], "$1::interval", "$2::int")
    return " ".join(["SELECT count(*) FROM", table, "t WHERE", where])


def _uses_keep(table: str) -> bool:
    return "{keep}" in PRUNABLE[table].where


async def delete_batch(
    pool: asyncpg.Pool, table: str, cutoff: timedelta, limit: int, keep: int
) -> int:
    """Delete up to ``limit`` prunable rows of ``table``; returns how many went."""
    args: list[object] = [cutoff, limit] + ([keep] if _uses_keep(table) else [])
    status: str = await pool.execute(delete_sql(table), *args)
    # The command tag, e.g. "DELETE 10000".
    return int(status.rsplit(" ", 1)[-1])


async def count_prunable(pool: asyncpg.Pool, table: str, cutoff: timedelta, keep: int) -> int:
    args: list[object] = [cutoff] + ([keep] if _uses_keep(table) else [])
    found = await pool.fetchval(count_sql(table), *args)
    return int(found)

"""``waveline dora [PIPELINE] [--since DURATION|DATE] [--json] [--from-git]``: DORA metrics.

Live numbers come from PostgreSQL (``shared/dora_store.py``); ``--from-git`` rebuilds the
same facts from the config repositories' trailers and the topics (``shared/dora_git.py``):
the two should agree (docs/dora.md says where they may differ by a second or two).
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka.errors import KafkaError

from waveline.cli.ops import CliError
from waveline.shared import dora_git, dora_store
from waveline.shared.config import Settings, WavelineConfig, load_config
from waveline.shared.db import create_pool
from waveline.shared.dora import Durations, Fact, PipelineDora, compute

DEFAULT_SINCE = "30d"
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# The topics are read from their start: a window's numbers depend on what came before it.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_since(value: str, now: datetime) -> datetime:
    """``30d``, ``12h``, ``2w`` … before ``now``, or an ISO 8601 date or time (UTC when it
    names no offset); ``ValueError`` otherwise."""
    match = _DURATION.match(value.strip())
    if match:
        return now - timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _pair(d: Durations) -> str:
    return f"{_duration(d.median_s)} / {_duration(d.p90_s)} (n={d.count})"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def render(numbers: list[PipelineDora]) -> str:
    """The table: one block per pipeline, a row per wave."""
    lines: list[str] = []
    for p in numbers:
        lines.append(
            f"{p.pipeline}  {p.since.isoformat(timespec='seconds')} .. "
            f"{p.until.isoformat(timespec='seconds')}"
        )
        lines.append(
            f"  deployment frequency  {p.deployments_per_day:.2f}/day "
            f"({p.deployments} into {p.waves[-1].wave if p.waves else '-'})"
        )
        lines.append(f"  lead time (median/p90) {_pair(p.lead_time)}")
        lines.append(
            f"  change failure rate   {_rate(p.change_failure_rate)} "
            f"({p.failed_changes} of {p.all_deployments} deployments)"
        )
        lines.append(f"  time to restore       {_pair(p.time_to_restore)}, {p.open_failures} open")
        if p.failures_by_kind:
            kinds = ", ".join(f"{k} {n}" for k, n in p.failures_by_kind.items())
            lines.append(f"  failures              {kinds}")
        lines.append(
            f"  {'wave':16} {'deploys':>7} {'per day':>8} {'failed':>6} {'CFR':>5}  restore"
        )
        for w in p.waves:
            lines.append(
                f"  {w.wave:16} {w.deployments:>7} {w.deployments_per_day:>8.2f} "
                f"{w.failed_changes:>6} {_rate(w.change_failure_rate):>5}  "
                f"{_pair(w.time_to_restore)}"
            )
    return "\n".join(lines)


async def live_facts(settings: Settings, pipelines: list[str], until: datetime) -> list[Fact]:
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        return await dora_store.load_facts(pool, pipelines, until)
    finally:
        await pool.close()


def git_facts(
    settings: Settings,
    config: WavelineConfig,
    pipelines: list[str],
    git_dir: Path | None,
) -> list[Fact]:
    """The facts rebuilt from each repository's clone (the git-writer's under the data dir,
    or ``git_dir`` for a single repository) and the topics."""
    from waveline.cli.trace import collect  # the topic reader of ``waveline trace``

    repos = {config.pipelines[p].repo for p in pipelines}
    if git_dir is not None and len(repos) > 1:
        raise CliError("--git-dir names one repository; choose a pipeline")
    paths = {
        r: git_dir if git_dir is not None else settings.data_dir / "repos" / f"{r}.git"
        for r in repos
    }
    for repo, path in paths.items():
        if not path.exists():
            raise CliError(f"no clone of repository {repo!r} at {path} (use --git-dir)")
    branches = {r: (config.repos[r].watched_branch, config.repos[r].auto_branch) for r in repos}
    try:
        observed = asyncio.run(collect(settings, _EPOCH))
    except (TimeoutError, KafkaError) as exc:
        raise CliError(f"cannot read the topics on {settings.kafka_bootstrap}: {exc!r}") from exc
    return dora_git.rebuild(
        paths, branches, {p: config.pipelines[p].repo for p in pipelines}, observed
    )


def numbers(
    settings: Settings,
    pipeline: str | None,
    since: str,
    *,
    from_git: bool,
    git_dir: Path | None = None,
    now: datetime | None = None,
) -> list[PipelineDora]:
    config = load_config(settings.config)
    if pipeline is not None and pipeline not in config.pipelines:
        raise CliError(f"no pipeline named {pipeline!r}")
    names = [pipeline] if pipeline else sorted(config.pipelines)
    until = now or datetime.now(UTC)
    try:
        start = parse_since(since, until)
    except ValueError as exc:
        raise CliError(f"--since {since!r}: a duration (30d, 12h) or an ISO date") from exc
    if start >= until:
        raise CliError("--since must be in the past")
    if from_git:
        facts = git_facts(settings, config, names, git_dir)
    else:
        facts = asyncio.run(live_facts(settings, names, until))
    waves = {n: [w.name for w in config.pipelines[n].waves] for n in names}
    return compute(facts, waves, start, until)


def run(
    settings: Settings,
    pipeline: str | None,
    *,
    since: str,
    as_json: bool,
    from_git: bool,
    git_dir: Path | None,
) -> int:
    found = numbers(settings, pipeline, since, from_git=from_git, git_dir=git_dir)
    if as_json:
        print(json.dumps([p.to_json() for p in found], indent=2))
    else:
        print(render(found))
    return 0

"""The soak benchmark's samples, verdicts and printed table (pure; bench/soak.py measures).

A series (each process's RSS; the stack's tables, summed) is *flat* when, from the first
sample after the warm-up to the last, it grew by no more than ``rel`` of its post-warm-up
value or ``floor``, whichever is larger: 10% or 16 MiB for RSS (a Python process's RSS steps
up as its allocator takes arenas), 2% or 8 MiB for the tables (PostgreSQL's files grow by
whole pages and segments, and freed space is reused, not returned). Anything more is
*growing*; the slope (least squares over the post-warm-up samples) says how fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

RSS_REL, RSS_FLOOR_MIB = 0.10, 16.0
DB_REL, DB_FLOOR_MIB = 0.02, 8.0
# Consumer lag, in messages: a few seconds of traffic is noise.
LAG_REL, LAG_FLOOR = 0.1, 1000.0
# Series of file-backed pages (bench/soak_measure.rss_mib): shown, never judged.
FILE_BACKED = " file"


@dataclass(frozen=True)
class Sample:
    at_s: float
    rss_mib: dict[str, float]
    db_mib: float
    tables: dict[str, tuple[float, int]] = field(default_factory=dict)  # MiB, live rows
    lag: dict[str, int] = field(default_factory=dict)  # messages behind, per service
    announced: int = 0
    accept_p99_ms: float = float("nan")

    @property
    def schema_mib(self) -> float:
        """The stack's own tables (the database may hold other schemas: test runs)."""
        return sum(mib for mib, _ in self.tables.values())


@dataclass(frozen=True)
class Trend:
    start: float
    baseline: float
    end: float
    slope_per_min: float
    flat: bool

    @property
    def growth(self) -> float:
        return self.end - self.baseline


def trend(points: list[tuple[float, float]], warmup_s: float, rel: float, floor: float) -> Trend:
    """The verdict on one series of (seconds, MiB) points."""
    after = [p for p in points if p[0] >= warmup_s] or points[-1:]
    baseline, end = after[0][1], points[-1][1]
    slope = 0.0
    if len(after) >= 2:
        mt = sum(t for t, _ in after) / len(after)
        mv = sum(v for _, v in after) / len(after)
        var = sum((t - mt) ** 2 for t, _ in after)
        if var > 0:
            slope = sum((t - mt) * (v - mv) for t, v in after) / var * 60
    return Trend(points[0][1], baseline, end, slope, end - baseline <= max(rel * baseline, floor))


def verdicts(samples: list[Sample], warmup_s: float) -> dict[str, Trend]:
    """Each process's RSS and the size of the stack's tables, judged."""
    names = sorted({n for s in samples for n in s.rss_mib if not n.endswith(FILE_BACKED)})
    out = {
        name: trend(
            [(s.at_s, s.rss_mib[name]) for s in samples if name in s.rss_mib],
            warmup_s,
            RSS_REL,
            RSS_FLOOR_MIB,
        )
        for name in names
    }
    out["kafka lag"] = trend(
        [(s.at_s, float(sum(s.lag.values()))) for s in samples], warmup_s, LAG_REL, LAG_FLOOR
    )
    out["tables"] = trend([(s.at_s, s.schema_mib) for s in samples], warmup_s, DB_REL, DB_FLOOR_MIB)
    return out


def _num(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def report(samples: list[Sample], warmup_s: float) -> str:
    """The samples as a table (one row per sample), then a verdict per series and the
    tables' sizes at the start and end."""
    names = sorted({n for s in samples for n in s.rss_mib})
    head = ["min", *names, "tables MiB", "db MiB", "lag", "sets", "p99 ms"]
    rows = [
        [
            f"{s.at_s / 60:.1f}",
            *(_num(s.rss_mib.get(n, float("nan"))) for n in names),
            f"{s.schema_mib:.1f}",
            f"{s.db_mib:.0f}",
            str(sum(s.lag.values())),
            str(s.announced),
            _num(s.accept_p99_ms),
        ]
        for s in samples
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "RSS (MiB: a process's own plus its descendants' private memory; '<name> file': the"
        " file-backed pages they map, not judged), the stack's tables"
        " (MiB, indexes included), the whole database (MiB), the consumers' lag (messages), sets"
        " accepted, accept p99 since the previous sample:"
    ]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *rows]]
    lines += ["", f"verdict (baseline: first sample after {warmup_s / 60:.1f} min of warm-up):"]
    lines.append(
        f"{'series':16} {'start':>8} {'baseline':>9} {'end':>8} {'growth':>8} {'per min':>8}"
        "  (MiB; kafka lag: messages)"
    )
    judged = verdicts(samples, warmup_s)
    for name, t in judged.items():
        lines.append(
            f"{name:16} {t.start:8.1f} {t.baseline:9.1f} {t.end:8.1f} {t.growth:+8.1f}"
            f" {t.slope_per_min:+8.2f}  {'flat' if t.flat else 'GROWING'}"
        )
    first, last = samples[0].tables, samples[-1].tables
    lines += [
        "",
        f"{'table':22} {'MiB start':>10} {'MiB end':>8} {'rows start':>11} {'rows end':>9}",
    ]
    for table in sorted(set(first) | set(last), key=lambda t: -last.get(t, (0.0, 0))[0]):
        a, b = first.get(table, (0.0, 0)), last.get(table, (0.0, 0))
        lines.append(f"{table:22} {a[0]:10.2f} {b[0]:8.2f} {a[1]:11d} {b[1]:9d}")
    lag = ", ".join(f"{k} {v}" for k, v in sorted(samples[-1].lag.items())) or "none"
    lines += ["", f"consumer lag at the end, by service (messages): {lag}"]
    growing = sorted(n for n, t in judged.items() if not t.flat)
    lines += ["", "VERDICT: " + ("flat" if not growing else "growing: " + ", ".join(growing))]
    return "\n".join(lines)

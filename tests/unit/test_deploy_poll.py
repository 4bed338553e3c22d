"""A poll of deploy reports judged together (``decide.poll_fates``) ends where judging
them one at a time would: each applied report is its target's last word for the next."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from waveline.services.status_tracker.decide import ReportFate, poll_fates, report_fate

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_several_reports_per_target_known_and_not_yet_known() -> None:
    current = {"a": (5, at(1))}
    reports = [
        ("a", None, at(2)),  # not known on watched yet
        ("a", 4, at(3)),  # before the target's last revision
        ("a", 6, at(0)),  # a later revision, whenever reported
        ("a", 5, at(3)),  # was the last word before the poll, no longer is
        ("b", 2, at(1)),  # first report of b
        ("b", 2, at(0)),  # same revision, reported before the one just applied
        ("b", 2, at(1)),  # same revision, same time
        ("c", None, at(0)),
        ("a", 6, at(1)),
    ]
    assert poll_fates(reports, current) == [
        "hold",
        "stale",
        "apply",
        "stale",
        "apply",
        "stale",
        "apply",
        "hold",
        "apply",
    ]
    # Judged against the rows before the poll only, the fourth would have moved a back.
    assert report_fate(5, at(3), *current["a"]) == "apply"


def test_a_poll_ends_where_one_by_one_ends() -> None:
    rng = random.Random(18)
    for _ in range(200):
        current: dict[str, tuple[int | None, datetime | None]] = {
            t: (rng.choice([None, rng.randrange(5)]), at(rng.randrange(5)))
            for t in rng.sample("abcd", rng.randrange(5))
        }
        reports = [
            (rng.choice("abcd"), rng.choice([None, *range(6)]), at(rng.randrange(6)))
            for _ in range(rng.randrange(1, 12))
        ]
        # One at a time: each report judged against the row the ones before it left.
        rows = dict(current)
        one_by_one: list[ReportFate] = []
        for target, position, reported_at in reports:
            fate = report_fate(position, reported_at, *rows.get(target, (None, None)))
            if fate == "apply":
                rows[target] = (position, reported_at)
            one_by_one.append(fate)
        assert poll_fates(reports, current) == one_by_one
        # The last applied report per target is the row one by one leaves.
        last = {
            t: (p, r)
            for (t, p, r), fate in zip(reports, one_by_one, strict=True)
            if fate == "apply"
        }
        assert {**current, **last} == rows


def test_an_empty_poll() -> None:
    assert poll_fates([], {"a": (1, T0)}) == []

"""The commits a fast-forward may take as on ``auto`` without asking libgit2."""

from __future__ import annotations

import pygit2

from waveline.services.git_writer.autoline import AutoLine


def oid(n: int) -> pygit2.Oid:
    return pygit2.Oid(hex=f"{n:040x}")


# A line 1 <- 2 <- 3 (first parents), and 9 <- 10 elsewhere.
PARENTS = {oid(2): oid(1), oid(3): oid(2), oid(10): oid(9)}


def first_parent(commit: pygit2.Oid) -> pygit2.Oid | None:
    return PARENTS.get(commit)


def test_commits_made_on_the_line_are_held_while_auto_is_its_tip() -> None:
    line = AutoLine()
    for n in (1, 2, 3):
        line.moved(oid(n), first_parent)
    assert all(line.holds(oid(n), oid(3)) for n in (1, 2, 3))
    # auto elsewhere (a fetch, a dropped batch): nothing is known, the repository decides
    assert not line.holds(oid(2), oid(2))
    assert not line.holds(oid(9), oid(3))


def test_a_jump_off_the_line_starts_it_over() -> None:
    line = AutoLine()
    for n in (1, 2, 3):
        line.moved(oid(n), first_parent)
    line.moved(oid(10), first_parent)  # a replay or an eviction rewrote auto
    assert line.holds(oid(10), oid(10))
    assert not line.holds(oid(2), oid(10))
    assert not line.holds(oid(9), oid(10))  # an ancestor, but not one it saw made


def test_the_oldest_commits_are_forgotten_first_past_the_bound() -> None:
    line = AutoLine(max_remembered=3)
    chain = {oid(n + 1): oid(n) for n in range(1, 10)}
    for n in range(1, 11):
        line.moved(oid(n), chain.get)
    assert len(line.members) == 3
    assert [line.holds(oid(n), oid(10)) for n in (7, 8, 9, 10)] == [False, True, True, True]


def test_places_on_the_line_answer_which_commit_came_first() -> None:
    line = AutoLine(max_remembered=3)
    for n in (1, 2, 3):
        line.moved(oid(n), first_parent)
    assert line.before(oid(1), oid(3)) is True  # watched at 1: 3 follows it
    assert line.before(oid(3), oid(3)) is True
    assert line.before(oid(3), oid(1)) is False  # 3 is not on a branch at 1
    assert line.before(oid(9), oid(3)) is None  # not on the line: ask the repository
    line.moved(oid(10), first_parent)  # started over: the old places mean nothing now
    assert line.before(oid(1), oid(10)) is None

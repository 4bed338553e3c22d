"""git's push protocol as sendpack.py writes and reads it: pkt-lines, the ref advertisement,
the leases checked against it, the commands, the report."""

from __future__ import annotations

import pytest

from waveline.shared.errors import GitFailure, GitUnreachable
from waveline.shared.gitengine import sendpack
from waveline.shared.gitengine.pushwire import local_path, supports

A = "a" * 40
B = "b" * 40
Z = sendpack.ZERO_HEX


def test_pkt_lines_round_trip_with_flushes() -> None:
    data = sendpack.pkt(b"hello\n") + sendpack.FLUSH + sendpack.pkt(b"x")
    assert data[:4] == b"000a"
    assert list(sendpack.pkt_lines(data)) == [b"hello\n", None, b"x"]


@pytest.mark.parametrize(
    "data",
    [b"zzzz", b"0009abc", b"0002", b"00", b"0x06ab", b"0_06ab", b"-001", b" 006ab", b"006 ab"],
)
def test_a_bad_or_truncated_pkt_line_is_malformed(data: bytes) -> None:
    with pytest.raises(GitFailure, match="malformed") as info:
        list(sendpack.pkt_lines(data))
    assert not info.value.retriable


def test_a_pkt_line_over_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        sendpack.pkt(b"x" * sendpack.MAX_PKT)


def test_the_advertisement_gives_refs_and_capabilities() -> None:
    ad = sendpack.parse_advertisement(
        [
            f"{A} refs/heads/master\0report-status atomic delete-refs agent=git/2.43\n".encode(),
            f"{B} refs/heads/auto\n".encode(),
            f"{A} refs/tags/v1^{{}}\n".encode(),
        ]
    )
    assert ad.refs == {"refs/heads/master": A, "refs/heads/auto": B}
    assert {"report-status", "atomic", "agent=git/2.43"} <= ad.capabilities


def test_an_empty_repository_advertises_no_refs() -> None:
    ad = sendpack.parse_advertisement([f"{Z} capabilities^{{}}\0report-status\n".encode()])
    assert ad.refs == {}
    assert ad.capabilities == {"report-status"}


def test_a_garbled_advertisement_is_malformed() -> None:
    with pytest.raises(GitFailure, match="malformed"):
        sendpack.parse_advertisement([b"<html>not git</html>"])


def test_pkt_lengths_are_four_hex_digits_in_either_case() -> None:
    assert sendpack.pkt_length(b"000A") == sendpack.pkt_length(b"000a") == 10
    assert sendpack.pkt_length(b"0000") == 0


@pytest.mark.parametrize(
    ("lines", "why"),
    [
        (
            [f"{A} refs/heads/master\0report-status\n".encode(), f"shallow {B}\n".encode()],
            "shallow",
        ),
        ([f"{'c' * 64} refs/heads/master\0report-status\n".encode()], "sha256"),
        ([f"{A} refs/heads/master\0report-status object-format=sha256\n".encode()], "format"),
    ],
)
def test_what_git_speaks_but_we_do_not_goes_to_libgit2(lines: list[bytes], why: str) -> None:
    with pytest.raises(sendpack.Unsupported, match=why):
        sendpack.parse_advertisement(lines)


def test_have_lines_are_objects_the_remote_has_not_refs() -> None:
    ad = sendpack.parse_advertisement(
        [f"{A} refs/heads/master\0report-status\n".encode(), f"{B} .have\n".encode()]
    )
    assert ad.refs == {"refs/heads/master": A}
    assert ad.haves == {B}


def test_leases_hold_only_when_every_ref_is_as_expected() -> None:
    refs = {"refs/heads/master": A, "refs/heads/auto": B}
    assert sendpack.lease_breaks(refs, {"refs/heads/master": A, "refs/heads/new": Z}) == []
    broken = sendpack.lease_breaks(refs, {"refs/heads/master": B, "refs/heads/auto": Z})
    assert broken == [
        f"refs/heads/master is {A} on the remote, expected {B}",
        f"refs/heads/auto is {B} on the remote, expected absent",
    ]
    assert sendpack.lease_breaks({}, {"refs/heads/auto": B}) == [
        f"refs/heads/auto is absent on the remote, expected {B}"
    ]


def test_several_refs_need_atomic() -> None:
    plain = sendpack.Advertisement({}, frozenset({"report-status"}))
    assert sendpack.capabilities_for(plain, 1) == ["report-status"]
    with pytest.raises(sendpack.Unsupported, match="atomic"):
        sendpack.capabilities_for(plain, 2)
    atomic = sendpack.Advertisement({}, frozenset({"report-status", "atomic", "agent=git/2"}))
    assert sendpack.capabilities_for(atomic, 2) == ["report-status", "atomic", sendpack.AGENT]
    with pytest.raises(sendpack.Unsupported, match="report-status"):
        sendpack.capabilities_for(sendpack.Advertisement({}, frozenset({"atomic"})), 1)


def test_commands_carry_capabilities_on_the_first_line_only() -> None:
    data = sendpack.commands(
        {"refs/heads/master": (A, B), "refs/heads/auto": (Z, A)}, ["report-status", "atomic"]
    )
    assert list(sendpack.pkt_lines(data)) == [
        f"{A} {B} refs/heads/master\0report-status atomic\n".encode(),
        f"{Z} {A} refs/heads/auto\n".encode(),
        None,
    ]


def _report(*lines: str) -> bytes:
    return b"".join(sendpack.pkt(f"{line}\n".encode()) for line in lines) + sendpack.FLUSH


def test_the_report_says_which_refs_moved() -> None:
    report = sendpack.parse_report(
        _report("unpack ok", "ok refs/heads/master", "ng refs/heads/auto pre-receive hook declined")
    )
    assert report.unpack == "ok"
    assert report.refused(["refs/heads/master", "refs/heads/auto", "refs/heads/other"]) == {
        "refs/heads/auto": "pre-receive hook declined",
        "refs/heads/other": "not in the remote's report",
    }
    assert sendpack.parse_report(_report("unpack index-pack abnormal exit")).unpack == (
        "index-pack abnormal exit"
    )


@pytest.mark.parametrize(
    "data", [_report("ok refs/heads/master"), _report("unpack ok", "maybe refs/heads/x")]
)
def test_a_garbled_report_is_malformed(data: bytes) -> None:
    with pytest.raises(GitFailure, match="malformed") as info:
        sendpack.parse_report(data)
    assert not isinstance(info.value, GitUnreachable)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        _report("unpack ok", "ok refs/heads/master")[:-4],
        _report("unpack ok", "ng refs/heads/master hook declined")[:-4],
        _report("unpack ok", "ok refs/heads/master")[:-9],
    ],
)
def test_a_report_cut_short_leaves_the_outcome_unknown(data: bytes) -> None:
    # Not a refusal: the remote may have moved the ref; the retry's leases will tell.
    with pytest.raises(GitUnreachable, match="unknown") as info:
        sendpack.parse_report(data)
    assert info.value.retriable


def test_smart_http_wraps_the_advertisement_in_a_service_line() -> None:
    line = f"{A} refs/heads/master\0report-status\n".encode()
    body = (
        sendpack.pkt(b"# service=git-receive-pack\n")
        + sendpack.FLUSH
        + sendpack.pkt(line)
        + sendpack.FLUSH
    )
    assert sendpack.http_advertisement(body) == [line]
    with pytest.raises(GitFailure, match="malformed"):
        sendpack.http_advertisement(sendpack.pkt(line) + sendpack.FLUSH)
    with pytest.raises(GitFailure, match="malformed"):
        sendpack.http_advertisement(sendpack.pkt(b"# service=git-receive-pack\n") + sendpack.FLUSH)


@pytest.mark.parametrize(
    ("url", "ours"),
    [
        ("file:///srv/git/cfg.git", True),
        ("/srv/git/cfg.git", True),
        ("https://github.com/acme/cfg.git", True),
        ("http://127.0.0.1:8080/cfg.git", True),
        ("https://user:secret@github.com/acme/cfg.git", False),
        ("ssh://git@github.com/acme/cfg.git", False),
        ("git@github.com:acme/cfg.git", False),
        ("file://otherhost/srv/cfg.git", False),
    ],
)
def test_which_remotes_get_our_push(url: str, ours: bool) -> None:
    assert supports(url) is ours


def test_a_file_url_names_a_local_path() -> None:
    assert local_path("file:///srv/a%20b/cfg.git") == "/srv/a b/cfg.git"
    assert local_path("/srv/cfg.git") == "/srv/cfg.git"

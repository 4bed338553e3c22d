"""git's push protocol, the client's side (gitprotocol-pack(5) "Pushing Data To a Server",
gitprotocol-common(5) pkt-lines, gitprotocol-capabilities(5)): pure encoding and parsing,
no I/O. The transports that carry it are in pushwire.py.

receive-pack advertises its refs and capabilities; the client sends one command per ref
(``<old> <new> <ref>``, old the value it expects, the zero id to create), its capabilities
after the first, a flush, then the pack; receive-pack answers (``report-status``) with
``unpack ok`` and ``ok <ref>`` or ``ng <ref> <reason>`` per command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from waveline.shared.errors import GitFailure, GitUnreachable

ZERO_HEX = "0" * 40
FLUSH = b"0000"
# The most a pkt-line may hold, its 4-byte length included.
MAX_PKT = 65520
AGENT = "agent=waveline"
_HEX = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True)
class Timeouts:
    """A push's network timeouts: ``connect_s`` to connect; ``io_s`` the deadline of one
    whole exchange (a request sent and its answer read, however the server paces its
    bytes), not of each read."""

    connect_s: float
    io_s: float


class Unsupported(GitFailure):
    """This push cannot be done here (the server lacks a capability it needs, or the
    objects to send could not be chosen cheaply): the caller pushes another way. Raised
    before anything is sent."""


def malformed(what: str) -> GitFailure:
    """The remote answered something that is not git's protocol: not an outage to wait out
    (it does not mend by itself), so permanent."""
    return GitFailure(f"malformed answer from the remote: {what}", retriable=False)


def pkt(data: bytes) -> bytes:
    """One pkt-line holding ``data``."""
    if len(data) + 4 > MAX_PKT:
        raise ValueError(f"pkt-line of {len(data)} bytes is over the limit")
    return b"%04x" % (len(data) + 4) + data


def pkt_length(head: bytes) -> int:
    """A pkt-line's length from its 4-byte head: exactly four hex digits (``int`` alone
    would take ``0x06``, ``0_06``, ``-001`` or spaces), 0 for a flush, at least 4 otherwise;
    ``malformed`` for anything else."""
    if len(head) != 4 or not _HEX.issuperset(head):
        raise malformed(f"bad pkt-line length {head!r}")
    size = int(head, 16)
    if 0 < size < 4:
        raise malformed(f"bad pkt-line length {head!r}")
    return size


def pkt_lines(
    data: bytes, at: int = 0, cut: Callable[[str], GitFailure] | None = None
) -> Iterator[bytes | None]:
    """The pkt-lines of ``data`` from offset ``at``: each payload, None for a flush.
    ``malformed`` for a bad length; for a truncated line too, or ``cut``'s error."""
    while at < len(data):
        if len(data) - at < 4:
            raise (cut or malformed)(f"truncated pkt-line length {data[at:]!r}")
        size = pkt_length(data[at : at + 4])
        if size == 0:
            yield None
            at += 4
            continue
        if at + size > len(data):
            raise (cut or malformed)(f"truncated pkt-line (length {size})")
        yield data[at + 4 : at + size]
        at += size


@dataclass(frozen=True)
class Advertisement:
    """receive-pack's refs (name → hex id) and capabilities; ``haves``: commits the remote
    has without a ref of its own (``.have`` lines, from its alternates)."""

    refs: Mapping[str, str]
    capabilities: frozenset[str]
    haves: frozenset[str] = frozenset()


def _is_hex(text: str, size: int) -> bool:
    return len(text) == size and all(c in "0123456789abcdef" for c in text)


def parse_advertisement(lines: list[bytes]) -> Advertisement:
    """The advertisement from its pkt-line payloads (up to the flush). An empty repository
    advertises ``<zero> capabilities^{}`` and no refs. ``Unsupported`` for what this client
    does not speak but git does (a shallow remote, sha256 ids): libgit2 pushes instead;
    ``malformed`` for anything else that is not an advertisement."""
    refs: dict[str, str] = {}
    haves: set[str] = set()
    caps: frozenset[str] = frozenset()
    for n, raw in enumerate(lines):
        line = raw.rstrip(b"\n")
        if n == 0:
            line, _, cap_text = line.partition(b"\0")
            caps = frozenset(cap_text.decode("utf-8", "replace").split())
            if {c for c in caps if c.startswith("object-format=")} - {"object-format=sha1"}:
                raise Unsupported("the remote's object format is not sha1")
        oid, sep, name = line.decode("utf-8", "replace").partition(" ")
        if oid == "shallow":
            raise Unsupported("the remote is a shallow repository")
        if sep and _is_hex(oid, 64):
            raise Unsupported("the remote's object ids are sha256")
        if not sep or not _is_hex(oid, 40):
            raise malformed(f"ref advertisement line {raw[:120]!r}")
        if name == ".have":
            haves.add(oid)
        elif name == "capabilities^{}" or name.endswith("^{}"):
            continue  # the empty repository's placeholder, or a peeled tag
        else:
            refs[name] = oid
    return Advertisement(refs, caps, frozenset(haves))


def lease_breaks(refs: Mapping[str, str], expected: Mapping[str, str]) -> list[str]:
    """Each ref whose advertised value is not the one expected (``ZERO_HEX``: absent)."""
    return [
        f"{ref} is {refs.get(ref, 'absent')} on the remote, expected "
        f"{'absent' if old == ZERO_HEX else old}"
        for ref, old in expected.items()
        if refs.get(ref, ZERO_HEX) != old
    ]


def capabilities_for(ad: Advertisement, ref_count: int) -> list[str]:
    """The capabilities to ask for; ``Unsupported`` when the server lacks one this push
    needs: the report (to know each ref's fate) and, for several refs, ``atomic``."""
    if "report-status" not in ad.capabilities:
        raise Unsupported("the remote does not offer report-status")
    wanted = ["report-status"]
    if ref_count > 1:
        if "atomic" not in ad.capabilities:
            raise Unsupported("the remote does not offer atomic pushes of several refs")
        wanted.append("atomic")
    if "agent" in {c.partition("=")[0] for c in ad.capabilities}:
        wanted.append(AGENT)
    return wanted


def commands(updates: Mapping[str, tuple[str, str]], capabilities: list[str]) -> bytes:
    """The command pkt-lines for ``{ref: (old hex, new hex)}`` and the flush after them."""
    out = bytearray()
    for n, (ref, (old, new)) in enumerate(updates.items()):
        line = f"{old} {new} {ref}".encode()
        if n == 0:
            line += b"\0" + " ".join(capabilities).encode()
        out += pkt(line + b"\n")
    return bytes(out + FLUSH)


@dataclass(frozen=True)
class Report:
    """receive-pack's answer: the unpack status (``ok`` or the error) and each ref's
    (None: updated; otherwise the reason it was refused)."""

    unpack: str
    refs: Mapping[str, str | None]

    def refused(self, wanted: list[str]) -> dict[str, str]:
        """The refs of ``wanted`` not updated, with why (a ref the report does not name
        was not updated either)."""
        return {
            ref: reason
            for ref in wanted
            if (reason := self.refs.get(ref, "not in the remote's report")) is not None
        }


def _outcome_unknown(what: str) -> GitFailure:
    return GitUnreachable(
        f"the remote's report ended early ({what}): the push's outcome is unknown"
    )


def parse_report(data: bytes) -> Report:
    """The report-status answer (pkt-lines up to a flush); ``malformed`` otherwise. A report
    cut short (no closing flush) is ``GitUnreachable``: the remote may have applied the
    push or not, so it is not a refusal; the retry's leases tell."""
    unpack: str | None = None
    refs: dict[str, str | None] = {}
    flushed = False
    for line in pkt_lines(data, cut=_outcome_unknown):
        if line is None:
            flushed = True
            break
        text = line.rstrip(b"\n").decode("utf-8", "replace")
        if unpack is None:
            if not text.startswith("unpack "):
                raise malformed(f"report starting {text[:120]!r}")
            unpack = text[len("unpack ") :]
            continue
        status, _, rest = text.partition(" ")
        if status == "ok" and rest:
            refs[rest] = None
        elif status == "ng" and rest:
            ref, _, reason = rest.partition(" ")
            refs[ref] = reason or "refused"
        else:
            raise malformed(f"report line {text[:120]!r}")
    if unpack is None and not data:
        raise _outcome_unknown("no report at all")
    if unpack is None:
        raise malformed("no report from the remote")
    if not flushed:
        raise _outcome_unknown("no flush after it")
    return Report(unpack, refs)


def http_advertisement(body: bytes) -> list[bytes]:
    """The advertisement's pkt-lines from a smart HTTP ``info/refs`` answer: a
    ``# service=git-receive-pack`` line and a flush before them."""
    lines = pkt_lines(body)
    first = next(lines, None)
    if first is None or first.rstrip(b"\n") != b"# service=git-receive-pack":
        raise malformed("info/refs is not a git-receive-pack advertisement")
    if next(lines, b"") is not None:
        raise malformed("no flush after the service line")
    out: list[bytes] = []
    for line in lines:
        if line is None:
            return out
        out.append(line)
    raise malformed("advertisement without a flush")

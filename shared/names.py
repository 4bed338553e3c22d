"""Strict validation of names, tags, digests and paths that come from outside.

Anything that may end up in a git path or a ref passes through here first, so no input can
escape a layout's directory (docs/architecture.md, Layouts).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
# Docker reference grammar, reduced: registry[:port]/path components, lower-case.
_REPOSITORY = re.compile(
    r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_APP_SHA = re.compile(r"^[a-f0-9]{7,64}$")


def check_name(value: str, what: str = "name") -> str:
    if not _NAME.fullmatch(value) or value in {".", ".."}:
        raise ValueError(
            f"invalid {what} {value!r}: 1-63 characters of letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return value


def check_app_sha(value: str) -> str:
    if not _APP_SHA.fullmatch(value):
        raise ValueError(f"invalid app_sha {value!r}: 7 to 64 lower-case hex characters")
    return value


def split_tag_ref(value: str) -> tuple[str, str]:
    """Split ``registry/repo:tag`` into (repository, tag); both validated."""
    repository, sep, tag = value.rpartition(":")
    if not sep or "/" in tag or not repository:
        raise ValueError(f"invalid image tag {value!r}: expected repository:tag")
    if not _REPOSITORY.fullmatch(repository):
        raise ValueError(f"invalid image repository {repository!r} in {value!r}")
    if not _TAG.fullmatch(tag):
        raise ValueError(f"invalid tag {tag!r} in {value!r}")
    return repository, tag


def split_digest_ref(value: str) -> tuple[str | None, str]:
    """Split ``registry/repo@sha256:…`` (or a bare ``sha256:…``) into (repository, digest)."""
    repository, sep, digest = value.rpartition("@")
    if not sep:
        repository, digest = "", value
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"invalid digest {digest!r}: expected sha256: and 64 lower-case hex")
    if repository and not _REPOSITORY.fullmatch(repository):
        raise ValueError(f"invalid image repository {repository!r} in {value!r}")
    return (repository or None), digest


def check_relative_path(value: str) -> str:
    """A repo-relative POSIX path that stays inside the repository and outside ``.git``."""
    if not value or value.startswith("/") or "\\" in value or "\x00" in value:
        raise ValueError(f"path {value!r} must be relative, POSIX and non-empty")
    parts = PurePosixPath(value).parts
    if any(p in {"..", "."} for p in parts) or any(p.lower() == ".git" for p in parts):
        raise ValueError(f"path {value!r} must not contain '..', '.' or '.git' components")
    return value

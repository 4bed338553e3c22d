"""How an image set becomes files for one wave (DESIGN §2, file layouts).

A layout renders ``{repo path: bytes}`` for a wave from an image set, and lists the paths a
wave owns, so promotion can copy exactly those paths from a deployed commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from waveline.shared.config import LayoutConfig
from waveline.shared.errors import PreconditionFailed
from waveline.shared.models.images import ImageRef
from waveline.shared.names import check_name, check_relative_path

# Reads a file of the current tree (None when absent); layouts that edit in place need it.
ReadFile = Callable[[str], bytes | None]


def wave_dir(layout: LayoutConfig, wave: str) -> str:
    check_name(wave, "wave name")
    return check_relative_path(layout.path.replace("{wave}", wave))


def wave_paths(layout: LayoutConfig, wave: str) -> list[str]:
    """The files that hold ``wave``'s image set."""
    base = wave_dir(layout, wave)
    if layout.kind == "images-json":
        return [f"{base}/tags.json", f"{base}/digests.json"]
    if layout.kind == "tag-file":
        return [base]
    raise PreconditionFailed(f"unknown layout kind {layout.kind!r}")


def _json_bytes(data: Mapping[str, str]) -> bytes:
    return (json.dumps(dict(sorted(data.items())), indent=2) + "\n").encode()


def render(
    layout: LayoutConfig, wave: str, images: Mapping[str, ImageRef], read: ReadFile
) -> dict[str, bytes]:
    """Files to write so that ``wave`` names exactly ``images``."""
    del read  # whole-file layouts ignore the current content
    paths = wave_paths(layout, wave)
    if layout.kind == "images-json":
        tags = {svc: ref.tag for svc, ref in images.items()}
        digests = {svc: ref.digest for svc, ref in images.items()}
        return {paths[0]: _json_bytes(tags), paths[1]: _json_bytes(digests)}
    if layout.kind == "tag-file":
        service = layout.service or (next(iter(images)) if len(images) == 1 else None)
        if service is None or service not in images:
            raise PreconditionFailed(
                f"tag-file layout needs exactly one service or layout.service; got {sorted(images)}"
            )
        return {paths[0]: (images[service].bare_tag + "\n").encode()}
    raise PreconditionFailed(f"unknown layout kind {layout.kind!r}")

"""Quorum waves: how many of a wave's targets must run a set before the wave runs it.

A wave's ``min_healthy`` is a count (``4``) or a share of its targets (``"95%"``, rounded
up, so 95% of 200 is 190 and of 5 is 5); unset means every target. Pure: the config
models and the status-tracker's wave verdict (services/status_tracker/decide.py) use it.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import Field

_SHARE = re.compile(r"^(100|[1-9][0-9]?)(\.[0-9]+)?%$")

MinHealthy = Annotated[
    int | str,
    Field(description="targets that must run the set: a count (4) or a share ('95%', rounded up)"),
]


def required_healthy(targets: int, min_healthy: int | str | None) -> int:
    """How many of ``targets`` must be healthy on one set. Raises ValueError for a spec
    that is not a positive count or a share in (0, 100]%, or a count above ``targets``."""
    if min_healthy is None:
        return targets
    if isinstance(min_healthy, bool):
        raise ValueError("min_healthy must be a count or a share such as '95%', not a boolean")
    if isinstance(min_healthy, int):
        if not 1 <= min_healthy <= targets:
            raise ValueError(
                f"min_healthy {min_healthy} must be between 1 and the wave's {targets} targets"
            )
        return min_healthy
    match = _SHARE.match(min_healthy.strip())
    if match is None or float(min_healthy.strip()[:-1]) <= 0:
        raise ValueError(f"min_healthy {min_healthy!r} must be a count or a share such as '95%'")
    share = float(min_healthy.strip()[:-1])
    # Exact for shares like 95% of 200 (190, not 190.00000000000003 rounded up to 191).
    return max(1, math.ceil(round(targets * share / 100, 9)))

"""faststream's private names (faststream 0.7).

``faststream._internal.context.Context``: the class behind the public ``faststream.Context()``
(only the function is public). A handler's message is resolved through it; the stock class
is a synchronous dependency, which fast_depends runs in a worker thread: a thread hop (and
two GIL hand-offs) for every batch every consumer handles, measured at ~5% of a service's
CPU. ``MessageNow`` subclasses it to resolve on the event loop instead. Not reported upstream
as far as we found; tests/unit/test_upstream_private.py fails when the class moves or its
``use`` stops being the synchronous method this overrides.
"""

from __future__ import annotations

from typing import Any

from faststream._internal.context import Context


class MessageNow(Context):
    """faststream's ``Context`` resolved on the event loop (see the module's docstring)."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        resolved: dict[str, Any] = super().use(**kwargs)
        return resolved

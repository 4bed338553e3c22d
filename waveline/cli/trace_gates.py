"""What ``waveline trace`` adds to the topics' story: why the set's promotions wait *now*.

A gate that stays shut (a hold, a freeze, a verification running, a bake, an approval, a
quarantine) is no event on any topic, so the journey read from the topics ends at the last
thing that happened. This reads the promoter's state the way ``GET /v1/pipelines/{p}`` does
(``pipeline_view.pipeline_snapshot``: the promoter's rules decide, nothing is re-derived)
and keeps the waves where a promotion of the set waits, with their closed gates.
"""

from __future__ import annotations

from typing import Any

from waveline.services.ingest.pipeline_view import pipeline_snapshot
from waveline.shared.config import Settings, WavelineConfig
from waveline.shared.db import create_pool


async def gates_now(
    settings: Settings, config: WavelineConfig, app_sha: str, pipeline: str | None = None
) -> list[dict[str, Any]]:
    """``[{"pipeline", "wave", "gates": [verdict JSON, ...]}]`` for each wave where a
    promotion of ``app_sha`` waits (of ``pipeline`` only, when given)."""
    pool = await create_pool(settings)
    try:
        found: list[dict[str, Any]] = []
        for name, config_of in config.pipelines.items():
            if pipeline is not None and name != pipeline:
                continue
            snapshot = await pipeline_snapshot(pool, name, config_of)
            for wave in snapshot["waves"]:
                if any(
                    p["app_sha"] == app_sha and p["status"] == "waiting" for p in wave["promotions"]
                ):
                    found.append(
                        {"pipeline": name, "wave": wave["name"], "gates": wave["gate"]["verdicts"]}
                    )
        return found
    finally:
        await pool.close()


def render_gates(waiting: list[dict[str, Any]]) -> str:
    """The text lines trace prints after the journey (none when nothing waits)."""
    lines = []
    for w in waiting:
        lines.append(f"waiting now at {w['pipeline']}/{w['wave']}:")
        for g in w["gates"] or [{"waiting_for": "nothing", "reason": "the gate is open"}]:
            until = f" (until {g['until']})" if g.get("until") else ""
            lines.append(f"  {g['waiting_for']}: {g['reason']}{until}")
    return "\n".join(lines)

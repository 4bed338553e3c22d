"""The announce path's PostgreSQL reads alone, for first announcements (sets never
recorded), interleaved in one run: main's two before 1fe5fe9 (``quarantine_store.in_force``
then ``retry_store.known_set``, a pool connection each) against the one statement
(``announce_store.announce_facts``).

Run against a stack's database (``waveline dev up``): ``.venv/bin/python -m
bench.announce_reads`` (``WAVELINE_DATABASE_URL``, default the dev stack's; schema
``waveline``)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import asyncpg

from bench.common import pct
from waveline.services.ingest import announce_store, retry_store
from waveline.shared import quarantine_store


async def main(blocks: int = 40, per_block: int = 100) -> None:
    url = os.environ.get("WAVELINE_DATABASE_URL", "postgresql://waveline@127.0.0.1:55432/waveline")
    pool = await asyncpg.create_pool(
        url, min_size=2, max_size=10, server_settings={"search_path": "waveline"}
    )
    two: list[float] = []
    one: list[float] = []
    try:
        for _ in range(blocks):
            for _ in range(per_block):
                sha = uuid.uuid4().hex
                started = time.perf_counter()
                await quarantine_store.in_force(pool, "app", [sha])
                await retry_store.known_set(
                    pool, "cfg-app", "app", "staging", sha, strategy="commit"
                )
                two.append(time.perf_counter() - started)
                started = time.perf_counter()
                await announce_store.announce_facts(pool, "app", sha)
                one.append(time.perf_counter() - started)
    finally:
        await pool.close()
    for name, values in (("in_force + known_set", two), ("announce_facts", one)):
        print(
            f"{name}: n={len(values)} p50 {pct(values, 50) * 1000:.2f} ms"
            f" p99 {pct(values, 99) * 1000:.2f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())

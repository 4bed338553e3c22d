"""The dashboard in a real headless browser (Debian's Chromium, driven over the DevTools
protocol on a websocket): served by ingest on real PostgreSQL rows, at desktop (1280 px)
and phone (390 px) widths, the stages, sets and gate reasons are on the page and nothing
runs off the screen at 390 px. Screenshots are kept under ``.run/``.

Skipped only when Chromium is absent and ``CI`` is not set; under CI it must run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import OPERATOR_TOKEN
from tests.integration.test_dashboard import CFG_SHA, PENDING_SHA, pool_of, seed
from tests.support import APP_SHA

pytestmark = pytest.mark.timeout(60)
EVICTED = "e" * 40
RUN = Path(__file__).resolve().parents[2] / ".run"
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
if CHROMIUM is None and os.environ.get("CI", "").lower() not in {"1", "true", "yes"}:
    pytest.skip(
        "Chromium is not installed (apt-get install chromium); required under CI",
        allow_module_level=True,
    )

# What the page says about each part, read back as the browser lays it out.
LAYOUT = (
    "JSON.stringify({scroll: document.documentElement.scrollWidth, inner: innerWidth,"
    " text: document.body.innerText,"
    " titles: [...document.querySelectorAll('time[title]')].map(t => t.title),"
    " stages: [...document.querySelectorAll('.stage h4')].map(h => h.textContent)})"
)


class Page:
    """One tab of a headless Chromium, over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send ``method`` and return its result (events before it are dropped)."""
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == call_id:
                assert "error" not in msg, msg
                result: dict[str, Any] = msg["result"]
                return result

    async def open(self, url: str, width: int) -> dict[str, Any]:
        """Load ``url`` at ``width`` px and return the layout facts (``LAYOUT``)."""
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=900,
            deviceScaleFactor=1,
            mobile=width < 600,
        )
        await self.call("Page.navigate", url=url)
        while True:  # the load event of this navigation
            msg = await self.ws.receive_json()
            if msg.get("method") == "Page.loadEventFired":
                break
        answer = await self.call("Runtime.evaluate", expression=LAYOUT, returnByValue=True)
        facts: dict[str, Any] = json.loads(answer["result"]["value"])
        return facts

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Page]:
    assert CHROMIUM is not None, "CI=true: the browser test must run (apt-get install chromium)"
    profile = tempfile.mkdtemp(prefix="waveline-chromium-")
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stderr.readline()).decode()
                assert line, "Chromium exited before its DevTools endpoint was up"
                found = re.search(r"ws://127\.0\.0\.1:(\d+)/", line)
                if found:
                    break
        async with aiohttp.ClientSession() as http:
            targets = await (await http.get(f"http://127.0.0.1:{found[1]}/json/list")).json()
            page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(page_url, max_msg_size=0) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                # The page needs the operator token: the browser sends it as a client would.
                await page.call(
                    "Network.setExtraHTTPHeaders",
                    headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                )
                await page.call("Network.enable")
                yield page
    finally:
        proc.terminate()
        await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def test_dashboard_at_desktop_and_phone_width(client: TestClient[Any, Any]) -> None:
    pool = pool_of(client)
    await seed(pool)
    await pool.execute(
        "INSERT INTO freezes (freeze_id, scope, pipeline, wave, reason, actor)"
        " VALUES ($1, 'wave', 'app', 'production', 'release weekend', 'ops')",
        uuid.uuid4(),
    )
    await pool.execute(
        "INSERT INTO evictions (repo, sha, pipeline, app_sha, wave, attempt)"
        " VALUES ('cfg-app', $1, 'app', $2, 'staging', 1)",
        EVICTED,
        APP_SHA,
    )
    url = str(client.make_url("/"))
    await asyncio.to_thread(RUN.mkdir, exist_ok=True)
    async with asyncio.timeout(40), chromium() as page:
        for width in (1280, 390):
            facts = await page.open(url, width)
            await page.screenshot(RUN / f"dashboard-{width}.png")
            text = facts["text"]
            # Each pipeline's waves as stages, in order.
            assert facts["stages"][:3] == ["staging", "internal", "production"]
            assert APP_SHA[:12] in text and CFG_SHA[:12] in text  # the set and its commit
            assert "internal is held" in text  # the hold, as the promoter's rules say it
            assert "awaiting approval of" in text  # production's gate
            assert "frozen by ops: release weekend" in text  # and its freeze
            assert f"evicted {EVICTED[:12]}" in text and "not retried" in text
            assert "deployments per day" in text and "change failure rate" in text  # DORA
            assert PENDING_SHA[:12] in text and "ci/validate: pending" in text
            assert "3 min ago" in text  # staging running since 3 min, relative
            assert facts["titles"] and all(
                re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", t) for t in facts["titles"]
            ), facts["titles"]
            assert facts["inner"] == width
            assert facts["scroll"] <= facts["inner"], f"runs off the screen at {width} px"

"""The wallboard in a real headless Chromium, driven over the DevTools protocol (CDP).

The page loads from the node, connects to the CTI WebSocket with the token in its URL, and shows
a caller waiting within a second of them joining a queue; a screenshot is saved for people to see.
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
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.nodes import running_node
from tests.peers import free_port
from tests.test_api_common import TOKENS, api_node, auth
from tests.test_campaigns_sipp import CARRIER_IP, SUPERVISOR, campaign_config, create_campaign, numbers_csv

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--window-size=1920,1080",
]


def require_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path is not None:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (Debian package chromium); scripts/bootstrap.sh installs it")
    pytest.skip("chromium is not installed (Debian package chromium)")


class Cdp:
    """A minimal CDP client over one page's WebSocket: send a command, await its result."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        mid = next(self.ids)
        await self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        async with asyncio.timeout(10):
            while True:
                msg = json.loads(await self.ws.recv())
                if msg.get("id") == mid:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})

    async def eval(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Cdp]:
    """A fresh headless Chromium (own profile); yields a CDP client for its first page."""
    proc = await asyncio.create_subprocess_exec(
        require_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stderr is not None
        port = None
        async with asyncio.timeout(30):
            while port is None:
                line = (await proc.stderr.readline()).decode(errors="replace")
                if not line:
                    raise RuntimeError("chromium exited before DevTools was listening")
                m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
                if m:
                    port = int(m.group(1))
        # Keep reading stderr so chromium never blocks on a full pipe.
        drain = asyncio.ensure_future(proc.stderr.read())
        async with httpx.AsyncClient() as http:
            pages = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
        page = next(p for p in pages if p["type"] == "page")
        async with connect(page["webSocketDebuggerUrl"], max_size=50_000_000) as ws:
            yield Cdp(ws)
        drain.cancel()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wait_for(cdp: Cdp, expression: str, timeout: float) -> Any:
    """Poll a JavaScript expression until it is truthy; its value, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await cdp.eval(expression)
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02)


WAITING = "(document.querySelector('[data-queue=\"support\"] .v.waiting') || {}).textContent"


async def test_wallboard_shows_a_waiting_caller_within_a_second_and_a_screenshot_is_saved(tmp_path):
    require_chromium()
    async with api_node(tmp_path) as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        r = await http.put("/api/agents/u0001/state", json={"state": "paused", "reason": "lunch"},
                           headers=auth("supervisor"))
        assert r.status_code == 200, r.text
        async with chromium(tmp_path / "profile") as cdp:
            await cdp.call("Page.enable")
            await cdp.call("Emulation.setDeviceMetricsOverride", width=1920, height=1080, deviceScaleFactor=1,
                           mobile=False)
            await cdp.call("Page.navigate", url=f"{api.url}/wallboard?token={TOKENS['supervisor']}")
            assert await wait_for(cdp, WAITING, 10.0) == "0"
            assert await cdp.eval("document.getElementById('status').className") == "live"
            text = await cdp.eval("document.body.innerText")
            for label in ("待ち呼", "Waiting", "最長待ち", "Longest wait", "応答率", "Service level",
                          "放棄呼", "Abandoned", "離席", "Paused"):
                assert label in text, label
            paused = "document.querySelector('[data-queue=\"support\"] [data-state=\"paused\"] .n').textContent"
            assert await cdp.eval(paused) == "1"

            centre.enqueue("call-wb", "support", "0312345678")
            joined = time.monotonic()
            shown = await wait_for(cdp, f"{WAITING} === '1'", 1.0)
            assert shown, f"still {await cdp.eval(WAITING)!r} one second after the caller joined"
            print(f"wallboard showed the waiting caller after {time.monotonic() - joined:.3f} s")
            assert await cdp.eval("document.querySelectorAll('[data-queue=\"support\"] .caller').length") == 1

            # The agent answers that caller and a second caller gives up: today's figures follow.
            await http.post("/api/agents/u0000/login", headers=auth("agent"))
            centre.answered("call-wb", "u0000")
            centre.enqueue("call-gone", "support", "0311112222")
            await asyncio.sleep(0.05)
            centre.left("call-gone")
            card = "document.querySelector('[data-queue=\"support\"] .v.{}').textContent"
            assert await wait_for(cdp, card.format("abandoned") + " === '1'", 3.0)
            assert await cdp.eval(card.format("sl")) == "50%"  # 1 answered in time of 2 (answered + abandoned)
            assert await cdp.eval(card.format("waiting")) == "0"
            on_call = "document.querySelector('[data-queue=\"support\"] [data-state=\"on_call\"] .n').textContent"
            assert await cdp.eval(on_call) == "1"

            shot = await cdp.call("Page.captureScreenshot", format="png")
            png = base64.b64decode(shot["data"])
            path = tmp_path / "wallboard.png"
            path.write_bytes(png)
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
            print(f"screenshot: {path}")


async def test_wallboard_shows_a_started_campaigns_progress(tmp_path):
    require_chromium()
    config = campaign_config(tmp_path, ["2001"], free_port(CARRIER_IP))
    async with running_node(config) as node:
        url = f"http://{config.api.host}:{node.api.port}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await create_campaign(http, "dec", "predictive", name="年末フォロー")
            await http.post("/api/campaigns/dec/records", json={"csv": numbers_csv(3)}, headers=SUPERVISOR)
            await create_campaign(http, "draft", "preview")  # not started: not on the wall
            await http.put("/api/campaigns/dec/state", json={"state": "running"}, headers=SUPERVISOR)
        async with chromium(tmp_path / "profile") as cdp:
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=f"{url}/wallboard?token=supervisor-token")
            card = "document.querySelector('[data-campaign=\"dec\"]')"
            assert await wait_for(cdp, f"{card} !== null", 10.0)
            text = await cdp.eval(f"{card}.innerText")
            assert "年末フォロー" in text and "プレディクティブ" in text and "発信中 Dialling" in text, text
            assert await cdp.eval(f"{card}.querySelector('.v.remaining').textContent") == "3"
            assert await cdp.eval(f"{card}.querySelector('.progress').textContent") == "0 / 3 件完了 records done"
            assert await cdp.eval("document.querySelector('[data-campaign=\"draft\"]')") is None

"""The uniapp demo (sdk/uniapp-demo, its H5 build by `uni build -p h5`) in Debian's Chromium,
driven by playwright-core, against a real xmppd started here: two users chat, correct and retract; a lucky red packet
in a room opened by two; a room member who was away finds the messages unread; a visitor waits in line, reaches an agent and rates; an admin mutes a
member who sees the banner. The demo is installed (npm ci) and built when stale; each test serves
the build over HTTP (aiohttp) and runs one scenario of sdk/uniapp-demo/e2e/run.mjs, which prints
what the pages showed as JSON lines and writes screenshots under the test's output directory
(UNIAPP_E2E_SHOTS, else pytest's tmp_path): their paths are printed."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ..helpers import PASSWORD, add_user, free_port, running_server
from .jsclients import JS_DIR, ensure_chromium, ensure_node_modules
from .test_sdk_js import ensure_sdk_built

# the first test may install and build the demo (npm ci + uni build: about 1.5 minutes on a busy
# machine) when scripts/test has not done it already
pytestmark = [pytest.mark.interop, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "sdk" / "uniapp-demo"
BUILD = DEMO / "dist" / "build" / "h5"
_built: list[bool] = []


def _newest(*paths: Path) -> float:
    return max(p.stat().st_mtime for path in paths for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())


def ensure_demo_built() -> str:
    """The node binary, after `npm ci` (lock newer than node_modules) and `uni build -p h5`
    (sources, the SDK's build or the lock newer than the build) in sdk/uniapp-demo."""
    node = ensure_sdk_built()
    ensure_node_modules()
    ensure_chromium()
    if _built:
        return node
    npm = shutil.which("npm")
    steps = []
    installed = DEMO / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (DEMO / "package-lock.json").stat().st_mtime:
        steps.append(([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], "npm ci"))
    index = BUILD / "index.html"
    inputs = (DEMO / "src", DEMO / "index.html", DEMO / "vite.config.js", DEMO / "package-lock.json", ROOT / "sdk" / "js" / "dist")
    if steps or not index.exists() or index.stat().st_mtime < _newest(*inputs):
        steps.append(([npm, "run", "build:h5", "--silent"], "uni build -p h5"))
    for cmd, what in steps:
        t0 = time.monotonic()
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=str(DEMO))
        if result.returncode != 0:
            pytest.fail(f"{what} in sdk/uniapp-demo failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        print(f"sdk/uniapp-demo: {what} took {time.monotonic() - t0:.1f} s")
    _built.append(True)
    return node


class StaticSite:
    """The H5 build over HTTP on a free loopback port (aiohttp)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.runner: web.AppRunner | None = None

    async def __aenter__(self) -> "StaticSite":
        app = web.Application()

        async def index(_: web.Request) -> web.FileResponse:
            return web.FileResponse(BUILD / "index.html")

        app.router.add_get("/", index)
        app.router.add_static("/", BUILD)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def shots_dir(tmp_path: Path) -> Path:
    base = os.environ.get("UNIAPP_E2E_SHOTS")
    return Path(base) if base else tmp_path / "screenshots"


async def run_demo(server: Any, site: StaticSite, scenario: str, shots: Path, timeout: float = 150) -> dict[str, dict[str, Any]]:
    node = ensure_demo_built()
    ws = f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket"
    env = {**os.environ, "PLAYWRIGHT_CORE": str(JS_DIR / "node_modules" / "playwright-core"), "CHROMIUM": ensure_chromium()}
    proc = await asyncio.create_subprocess_exec(
        node, str(DEMO / "e2e" / "run.mjs"), scenario, site.url, ws, server.domain, PASSWORD, str(shots),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(DEMO), env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"demo scenario {scenario} did not end within {timeout} s") from None
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip().startswith("{")]
    events: dict[str, dict[str, Any]] = {}
    for e in lines:
        events.setdefault(e["event"], e)
        if e["event"] == "screenshot":
            print(f"screenshot: {e['path']}")
    assert "error" not in events and proc.returncode == 0 and "done" in events, (
        f"demo scenario {scenario} failed (exit {proc.returncode}):\n" + "\n".join(json.dumps(e, ensure_ascii=False) for e in lines) + "\n" + err.decode()[-4000:]
    )
    shots_taken = [Path(e["path"]) for e in lines if e["event"] == "screenshot"]
    assert shots_taken and all(p.stat().st_size > 1000 for p in shots_taken)
    return events


def demo_server(tmp_path: Path, site: StaticSite, *overrides: str):
    origin = site.url.rstrip("/")
    return running_server(tmp_path, "listen.http=127.0.0.1:0", "c2s.require_tls=false", f'http.cors_origins=["{origin}"]', *overrides)


async def test_two_browser_users_chat_with_unread_counts(tmp_path):
    async with StaticSite() as site, demo_server(tmp_path, site) as server:
        for name in ("alice", "bob"):
            await add_user(server, name)
        ev = await run_demo(server, site, "chat", shots_dir(tmp_path))
    assert ev["unread"] == {"event": "unread", "n": 2, "preview": "alice：在吗？"}
    assert ev["chat"]["bob"] == ["你好 Bob", "在吗？"]
    assert ev["chat"]["alice"] == ["你好 Bob", "在吗？", "在的，Alice"]
    assert ev["corrected"]["bob"] == ["你好呀 Bob", "在吗？", "在的，Alice"]
    assert ev["retracted"]["bob"] == ["你好呀 Bob", "撤回了一条消息", "在的，Alice"]
    assert ev["retracted"]["alice"] == ["你好呀 Bob", "撤回了一条消息"]
    assert ev["read"]["unread"] == 0


async def test_a_lucky_red_packet_opened_by_two_browsers_adds_up(tmp_path):
    async with StaticSite() as site, demo_server(tmp_path, site) as server:
        for name in ("alice", "bob", "carol"):
            await add_user(server, name)
        feat = server.features["redpacket"]
        await feat.repo.topup("alice@localhost", 1000, feat.now())
        ev = await run_demo(server, site, "redpacket", shots_dir(tmp_path))
        balance = await feat.repo.balance("alice@localhost")
    p = ev["packet"]
    amounts = p["amounts"]
    assert set(amounts) == {"bob", "carol"} and all(a >= 1 for a in amounts.values())
    assert sum(amounts.values()) == 300  # 3.00 yuan in two lucky shares
    assert sorted((g["by"], g["amount"]) for g in p["grabs"]) == sorted((f"{n}@localhost", a) for n, a in amounts.items())
    best = [g for g in p["grabs"] if g["best"]]
    assert len(best) == 1 and best[0]["amount"] == max(amounts.values())
    assert "2/2" in p["summary"] and "3.00/3.00" in p["summary"]
    assert p["card"] == f"已领取 {amounts['bob'] / 100:.2f} 元"
    best_by = best[0]["by"].split("@")[0]
    assert sorted(ev["sender"]["lines"]) == sorted(["bob 领取了你的红包", "carol 领取了你的红包", f"红包已被领完，{best_by} 手气最佳"])
    assert balance == 700


async def test_a_room_member_who_was_away_finds_what_was_said_unread(tmp_path):
    """MUC/Sub through the demo: joining a room also subscribes, so a closed app gets the room's
    messages from offline storage at the next login, counted unread in the chat list."""
    async with StaticSite() as site, demo_server(tmp_path, site) as server:
        for name in ("alice", "bob"):
            await add_user(server, name)
        ev = await run_demo(server, site, "roomoffline", shots_dir(tmp_path))
    assert ev["list"] == {"event": "list", "unread": 1, "preview": "alice：你不在的时候说的话"}
    assert ev["room"]["bob"] == ["bob 在吗", "你不在的时候说的话", "我回来了"]  # in time order, each once


async def test_a_visitor_waits_in_line_reaches_an_agent_and_rates(tmp_path):
    async with StaticSite() as site, demo_server(tmp_path, site, "server.admins=['boss@localhost']") as server:
        for name in ("boss", "alice", "walter", "vera"):
            await add_user(server, name)
        ev = await run_demo(server, site, "cs", shots_dir(tmp_path))
        rows = await server.features["cs"].repo.sessions("support", "vera@localhost", limit=10)
    assert "第 1 位" in ev["position"]["text"]
    assert ev["agent"]["text"] == "客服 小美 为您服务"
    assert ev["reply"]["text"] == "小美: 您好，我来查一下"
    assert ev["rated"]["text"] == "感谢您的评价：★★★★"
    assert [(r.rating, r.comment, r.close_reason) for r in rows] == [(4, "很快", "visitor")]
    assert ev["history"]["sessions"] == [["vera@localhost", "closed", 4, "很快"], ["walter@localhost", "closed", None, None]]


async def test_an_admin_mutes_a_member_who_sees_the_banner_and_cannot_send(tmp_path):
    async with StaticSite() as site, demo_server(tmp_path, site) as server:
        for name in ("alice", "bob"):
            await add_user(server, name)
        ev = await run_demo(server, site, "mute", shots_dir(tmp_path))
    assert "Mute a member" in ev["commands"]["text"]
    assert "bob@localhost is muted for" in ev["admin"]["note"]
    assert any("bob" in m for m in ev["admin"]["muted"])
    b = ev["banner"]
    assert b["text"].startswith("你已被禁言，剩余 ") and "（刷屏）" in b["text"]
    minutes = int(b["text"].split("剩余 ")[1][:2])
    assert minutes in (9, 10)  # 10 minutes, counting down
    assert b["disabled"] is True


async def test_an_image_and_a_file_sent_in_a_chat_and_a_room_are_seen_by_thumbnail_and_card(tmp_path):
    """XEP-0363 through the demo: alice picks an image in the browser's file chooser; bob sees the
    server's thumbnail and, on a tap, the full image; a text file is a card that saves under its
    name; a file over upload.max_size fails in alice's bubble with the server's limit."""
    async with StaticSite() as site, demo_server(tmp_path, site, "upload.max_size=100000") as server:
        for name in ("alice", "bob"):
            await add_user(server, name)
        ev = await run_demo(server, site, "files", shots_dir(tmp_path))
    files = f"http://localhost:{server.ports['http']}/upload/"
    img = ev["image"]
    assert img["mine"]["src"].startswith(files + "thumbs/")
    assert img["preview"] == "alice：[图片]"
    t = img["thumb"]
    assert t["src"].startswith(files + "thumbs/") and max(t["width"], t["height"]) == 256  # upload.thumbnail_size
    f = img["full"]
    assert f["src"].startswith(files) and f["src"].endswith("/%E9%A3%8E%E6%99%AF.png") and (f["width"], f["height"]) == (640, 480)
    assert img["fullSrcIsFile"]
    assert ev["file"] == {"event": "file", "name": "纪要.txt", "size": "34 B", "saved": "纪要.txt", "same": True}
    assert ev["too-large"]["text"] == "发送失败：文件太大（最大 0.1 MB）"
    r = ev["room"]
    assert r["thumb"]["src"].startswith(files + "thumbs/") and r["from"] == "alice"

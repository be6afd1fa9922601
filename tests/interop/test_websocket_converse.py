"""RFC 7395 in a real browser: Converse.js in headless Chromium logs in over WebSocket and
chats with a slixmpp client on TCP; the Converse UI shows the message, a screenshot is kept."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import web

from xmppd.jid import JID

from ..helpers import PASSWORD, add_user, running_server, slix, slix_close
from .jsclients import JS_DIR, NodeClient, ensure_chromium, ensure_node_modules, file_size, wait_until

pytestmark = pytest.mark.interop

ARTIFACT = Path(__file__).resolve().parent.parent / "artifacts" / "converse.png"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xmppd + Converse.js</title>
<link rel="stylesheet" href="/dist/converse.min.css">
<script type="module" src="/dist/converse.min.js"></script></head>
<body class="converse-fullscreen">
<script type="module">
// A probe plugin only observes (the test drives Converse through its UI).
converse.plugins.add("xmppd-probe", {
  initialize() {
    const api = this._converse.api;
    window.xmppdProbe = { jid: null, disconnected: false, logout: () => api.user.logout() };
    api.listen.on("connected", () => { window.xmppdProbe.jid = api.connection.get().jid; });
    api.listen.on("disconnected", () => { window.xmppdProbe.disconnected = true; });
  },
});
converse.initialize(Object.assign(%s, {
  auto_login: true,
  discover_connection_methods: false,
  allow_non_roster_messaging: true,
  view_mode: "fullscreen",
  assets_path: "/dist/",
  play_sounds: false,
  show_desktop_notifications: false,
  whitelisted_plugins: ["xmppd-probe"],
  loglevel: "info",
}));
</script></body></html>
"""


async def _serve_page(settings: dict[str, str]) -> tuple[web.AppRunner, int]:
    """Converse's dist from node_modules and a page that configures it, on a free port."""

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE % json.dumps(settings), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/dist/", JS_DIR / "node_modules" / "converse.js" / "dist")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def test_converse_in_chromium_chats_with_slixmpp_over_websocket(tmp_path, capsys):
    ensure_chromium()
    ensure_node_modules()
    settings: dict[str, str] = {}
    page_runner, page_port = await _serve_page(settings)
    origin = f"http://127.0.0.1:{page_port}"
    try:
        # Only the page's own origin may open WebSockets: the browser's Origin header must pass.
        async with running_server(
            tmp_path, "listen.http=127.0.0.1:0", "c2s.require_tls=false", f'http.cors_origins=["{origin}"]'
        ) as server:
            alice = await add_user(server, "alice")
            settings.update(websocket_url=f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket", jid=alice, password=PASSWORD)
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            ARTIFACT.unlink(missing_ok=True)
            browser = await NodeClient.start("converse_browser.mjs", f"{origin}/", str(ARTIFACT))
            try:
                online = await browser.expect("online", timeout=60)
                full = JID.parse(online["jid"])
                assert full.bare == JID.parse(alice)
                session = server.sessions.get(full)
                assert session is not None and session.websocket

                bob = await slix(server, await add_user(server, "bob"))
                try:
                    inbox: asyncio.Queue = asyncio.Queue()
                    bob.add_event_handler("message", lambda m: inbox.put_nowait(m))
                    bob.send_presence()
                    bob.send_message(mto=str(full), mbody="Hello Converse, this is slixmpp on TCP", mtype="chat")
                    await browser.command("wait-message", **{"from": "bob@localhost", "body": "Hello Converse, this is slixmpp on TCP"})
                    await browser.expect("message-shown", timeout=30)
                    await browser.command("reply", to="bob@localhost", body="Hi slixmpp, Converse here over WebSocket", id="r1")
                    await browser.expect("sent", id="r1", timeout=30)
                    while True:
                        reply = await asyncio.wait_for(inbox.get(), 15)
                        if reply["body"]:  # chat states arrive too, without a body
                            break
                    assert reply["body"] == "Hi slixmpp, Converse here over WebSocket"
                    assert JID.parse(str(reply["from"])).bare == JID.parse(alice)
                    await browser.command("screenshot")
                    shot = await browser.expect("screenshot", timeout=20)
                finally:
                    await slix_close(bob)
                assert file_size(shot["path"]) > 10_000
                with capsys.disabled():
                    print(f"\nConverse.js screenshot: {ARTIFACT}")
                # a proper logout (<close/>), as the user's "Log out" does
                await browser.command("logout")
                await browser.expect("logged-out", timeout=20)
            finally:
                await browser.quit()
            await wait_until(lambda: not server.live, 15, "the browser's session gone")
            assert server.connections.total() == 0
    finally:
        await page_runner.cleanup()

"""After the client's close the server sends its own close and nothing else (RFC 6120 §4.4,
RFC 7395 §3.6), over TCP and WebSocket, with raw sockets and with xmpp.js.

Each test holds the closing client's last stanza in a STANZA_IN hook (as a slow archive write
would), so that a contact's message reaches the server after the client's close and before
the session's cleanup: that message must not be written behind the close, and is not lost
either: it goes where it goes for an unavailable resource (here offline storage).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lxml import etree

from xmppd.core import hooks as H
from xmppd.core.hooks import Flow
from xmppd.jid import JID
from xmppd.protocol.c2s import State

from ..helpers import PASSWORD, RawClient, add_user, running_server, slix, slix_close
from .jsclients import NodeClient, ensure_chromium, ensure_node_modules, wait_until
from .test_websocket import CLOSE, FRAMING, Ws

pytestmark = pytest.mark.interop

LAST = "last words before closing"
LATE = "a message that arrives while the stream closes"


class Hold:
    """Holds the processing of one stanza (by body) until released."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, r: Any) -> Flow:
        if r.stanza.findtext("{jabber:client}body") == self.body:
            self.held.set()
            await self.release.wait()
        return Flow.CONTINUE


@contextlib.asynccontextmanager
async def holding(server: Any, body: str) -> AsyncIterator[Hold]:
    hold = Hold(body)
    remove = server.hooks.add(H.STANZA_IN, hold, priority=10_000)
    try:
        yield hold
    finally:
        hold.release.set()
        remove()


async def contact_sends_late_message(server: Any, to: str) -> None:
    """bob sends ``LATE`` to ``to``; when his ping comes back the server has routed it."""
    bob = await slix(server, "bob@localhost", plugins=("xep_0199",))
    try:
        bob.send_message(mto=to, mbody=LATE, mtype="chat")
        await bob.plugin["xep_0199"].send_ping("localhost", timeout=10)
    finally:
        await slix_close(bob)


async def offline_delivery(server: Any, jid: str) -> str:
    """Log ``jid`` in again, send initial presence and return the first body it receives
    (offline storage delivers on initial presence, XEP-0160)."""
    client = await slix(server, jid)
    try:
        inbox: asyncio.Queue = asyncio.Queue()
        client.add_event_handler("message", lambda m: inbox.put_nowait(str(m["body"])))
        client.send_presence()
        return await asyncio.wait_for(inbox.get(), 10)
    finally:
        await slix_close(client)


async def test_tcp_login_without_starttls_ends_with_a_stream_error_saying_why(tmp_path, caplog):
    """c2s.require_tls (the default): a client that skips the required STARTTLS and sends PLAIN
    gets encryption-required, then policy-violation with a text and the close, at once (not
    silence until the authentication deadline); the server logs why and the remedy."""
    caplog.set_level(logging.INFO, logger="xmppd.core.session")
    async with running_server(tmp_path) as server:
        await add_user(server, "alice")
        raw = await RawClient.connect(server)
        features = await raw.open_stream()
        assert b"<required/>" in features and b"<mechanisms" not in features
        raw.buffer = b""
        token = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
        await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        data = await raw.read_all()
        raw.close()
        assert b"<encryption-required/>" in data
        assert b'<policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>' in data and b"negotiate STARTTLS" in data
        assert data.endswith(b"</stream:stream>")
        assert not server.sessions.of(JID.parse("alice@localhost"))
    [line] = [r.getMessage() for r in caplog.records if "require_tls" in r.getMessage()]
    assert "STARTTLS" in line and "127.0.0.1" in line


async def test_tcp_client_that_never_starts_tls_is_told_why_at_the_deadline(tmp_path):
    async with running_server(tmp_path, "c2s.auth_timeout=0.3") as server:
        raw = await RawClient.connect(server)
        await raw.open_stream()
        data = await raw.read_all()
        raw.close()
        assert b"<connection-timeout" in data and b"negotiate STARTTLS" in data
        assert data.endswith(b"</stream:stream>")


async def test_tcp_after_the_clients_close_only_the_servers_close_is_written(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false") as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        raw = await RawClient.connect(server)
        await raw.plain_login("alice", resource="raw")
        await raw.send("<presence/>")
        async with holding(server, LAST) as hold:
            await raw.send(f"<message to='bob@localhost' type='chat'><body>{LAST}</body></message></stream:stream>")
            await asyncio.wait_for(hold.held.wait(), 5)
            await raw.read_until(b"</stream:stream>")
            await contact_sends_late_message(server, "alice@localhost/raw")
            hold.release.set()
            data = await raw.read_all()
        raw.close()
        after = data.split(b"</stream:stream>", 1)[1]
        assert after == b"", f"written after the server's </stream:stream>: {after!r}"
        await wait_until(lambda: not server.live, 10, "alice's session gone")
        assert await offline_delivery(server, "alice@localhost") == LATE


async def test_offline_messages_stay_stored_when_the_stream_closes_with_initial_presence(tmp_path):
    """Initial presence and </stream:stream> in one write: the presence is processed after the
    close went out, so offline storage must not hand its messages to the closing session (they
    would follow the close, and be deleted as delivered); they wait for the next login."""
    async with running_server(tmp_path, "c2s.require_tls=false") as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        await contact_sends_late_message(server, "alice@localhost")  # alice is offline: stored
        raw = await RawClient.connect(server)
        await raw.plain_login("alice")
        await raw.send("<presence/></stream:stream>")
        data = await raw.read_all()
        raw.close()
        assert data.split(b"</stream:stream>", 1)[1] == b"", data
        assert LATE.encode() not in data
        await wait_until(lambda: not server.live, 10, "alice's session gone")
        assert await offline_delivery(server, "alice@localhost") == LATE


async def test_websocket_after_the_clients_close_only_the_servers_close_is_written(tmp_path):
    # The default configuration: a WebSocket client on this machine logs in without TLS.
    async with running_server(tmp_path, "listen.http=127.0.0.1:0") as server:
        alice = await add_user(server, "alice")
        await add_user(server, "bob")
        c = await Ws.connect(server)
        full = await c.login(alice, resource="ws")
        await c.send("<presence xmlns='jabber:client'/>")
        async with holding(server, LAST) as hold:
            await c.send(f"<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>{LAST}</body></message>")
            await c.send(CLOSE)
            await asyncio.wait_for(hold.held.wait(), 5)
            while True:  # until the server's <close/>; presence echoes may come first
                if etree.fromstring(await c.recv()).tag == f"{{{FRAMING}}}close":
                    break
            await contact_sends_late_message(server, full)
            hold.release.set()
            texts, code = await c.until_closed()
        await c.close()
        assert texts == [], f"written after the server's <close/>: {texts}"
        assert code == 1000
        await wait_until(lambda: not server.live, 10, "alice's session gone")
        assert await offline_delivery(server, "alice@localhost") == LATE


async def test_xmppjs_logs_in_chats_and_stops_cleanly_with_the_default_config(tmp_path):
    """The README's path for a JavaScript app: xmpp.js in Node on ws://127.0.0.1:<port> with
    the default c2s.require_tls logs in and chats; stop() while a contact's message arrives
    (its close reaching the server 300 ms later, as from a phone) raises nothing in the client
    and nothing follows the server's <close/>."""
    async with running_server(tmp_path, "listen.http=127.0.0.1:0") as server:
        assert server.config.c2s.require_tls
        alice = await add_user(server, "alice")
        await add_user(server, "bob")
        url = f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket"
        client = await NodeClient.start("xmppjs_client.mjs", url, alice, PASSWORD, env={"XMPPJS_CLOSE_DELAY_MS": "300"})
        try:
            full = (await client.expect("online"))["jid"]
            [session] = server.sessions.of(JID.parse(alice))
            bob = await slix(server, "bob@localhost")
            try:
                inbox: asyncio.Queue = asyncio.Queue()
                bob.add_event_handler("message", lambda m: inbox.put_nowait(str(m["body"])))
                await client.command("message", to=bob.boundjid.full, body="hello from xmpp.js", id="m1")
                assert await asyncio.wait_for(inbox.get(), 10) == "hello from xmpp.js"
                bob.send_message(mto=full, mbody="hello from slixmpp", mtype="chat")
                await client.expect("message", body="hello from slixmpp")
            finally:
                await slix_close(bob)
            async with holding(server, LAST) as hold:
                await client.command("last-and-stop", to="bob@localhost", body=LAST, id="m2")
                await asyncio.wait_for(hold.held.wait(), 10)
                await wait_until(lambda: session.stream.state is State.CLOSED, 10, "the client's <close/> received")
                await contact_sends_late_message(server, full)
                hold.release.set()
                await client.expect("stopped-clean", timeout=20)
        finally:
            await client.quit()
        bad = [e for e in client.events if e["event"] in ("uncaught", "client-error", "frame-after-close", "error")]
        assert bad == [], bad
        await wait_until(lambda: not server.live, 10, "the session gone")
        assert await offline_delivery(server, alice) == LATE


STROPHE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xmppd + strophe.js</title><link rel="icon" href="data:,">
<script>
// Observe the page's WebSocket: the frames after the server's <close/>; and close it
// CLOSE_DELAY ms late, as a client far away does.
const CLOSE_DELAY = %(delay)d;
const Native = window.WebSocket;
window.xmppdProbe = { jid: null, failed: null, messages: [], framesAfterClose: [], disconnected: false, socketClosed: false, condition: null };
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    let closed = false;
    this.addEventListener("message", ({ data }) => {
      if (closed) window.xmppdProbe.framesAfterClose.push(String(data));
      else if (/^<close[\\s/>]/.test(String(data))) closed = true;
    });
    this.addEventListener("close", () => { window.xmppdProbe.socketClosed = true; });
  }
  close(...args) { setTimeout(() => super.close(...args), CLOSE_DELAY); }
};
</script>
<script src="/strophe.js"></script>
<script>
const cfg = %(cfg)s;
const probe = window.xmppdProbe;
const conn = new Strophe.Connection(cfg.url);
conn.addHandler((el) => {
  const body = el.getElementsByTagName("body")[0];
  if (body) probe.messages.push(Strophe.getText(body));
  return true;
}, null, "message");
conn.connect(cfg.jid + "/strophe", cfg.password, (status, condition) => {
  if (status === Strophe.Status.CONNECTED) {
    conn.send($pres());
    probe.jid = conn.jid;
  } else if (status === Strophe.Status.DISCONNECTED) {
    probe.disconnected = true;
    probe.condition = condition || null;
  } else if ([Strophe.Status.AUTHFAIL, Strophe.Status.CONNFAIL, Strophe.Status.ERROR].includes(status)) {
    probe.failed = probe.failed || `status ${status} ${condition || ""}`;
  }
});
probe.message = (to, body) => conn.send($msg({ to, type: "chat" }).c("body").t(body));
probe.lastAndDisconnect = (to, body) => { probe.message(to, body); conn.flush(); conn.disconnect("bye"); };
</script></head><body></body></html>
"""


@contextlib.asynccontextmanager
async def strophe_page(settings: dict[str, str], delay_ms: int) -> AsyncIterator[str]:
    """A page on its own origin that runs strophe.js (its UMD build from node_modules)."""
    from aiohttp import web

    from .jsclients import JS_DIR

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=STROPHE_PAGE % {"delay": delay_ms, "cfg": json.dumps(settings)}, content_type="text/html")

    async def strophe(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(JS_DIR / "node_modules" / "strophe.js" / "dist" / "strophe.umd.min.js")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/strophe.js", strophe)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


async def test_strophe_in_chromium_logs_in_chats_and_disconnects_cleanly_with_the_default_config(tmp_path):
    """The README's ws:// URL from a web page: strophe.js in Chromium logs in with the default
    c2s.require_tls, chats, and disconnect() while a contact's message arrives leaves no page
    error and nothing after the server's <close/>."""
    ensure_chromium()
    ensure_node_modules()
    async with running_server(tmp_path, "listen.http=127.0.0.1:0") as server:
        assert server.config.c2s.require_tls
        alice = await add_user(server, "alice")
        await add_user(server, "bob")
        settings = {"url": f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket", "jid": alice, "password": PASSWORD}
        async with strophe_page(settings, delay_ms=300) as page_url:
            browser = await NodeClient.start("strophe_browser.mjs", page_url)
            try:
                full = (await browser.expect("online", timeout=60))["jid"]
                [session] = server.sessions.of(JID.parse(alice))
                bob = await slix(server, "bob@localhost")
                try:
                    inbox: asyncio.Queue = asyncio.Queue()
                    bob.add_event_handler("message", lambda m: inbox.put_nowait(str(m["body"])))
                    await browser.command("message", to=bob.boundjid.full, body="hello from strophe.js", id="m1")
                    assert await asyncio.wait_for(inbox.get(), 10) == "hello from strophe.js"
                    bob.send_message(mto=full, mbody="hello from slixmpp", mtype="chat")
                    await browser.command("wait-message", body="hello from slixmpp")
                    await browser.expect("message", body="hello from slixmpp")
                finally:
                    await slix_close(bob)
                async with holding(server, LAST) as hold:
                    await browser.command("last-and-disconnect", to="bob@localhost", body=LAST)
                    await asyncio.wait_for(hold.held.wait(), 10)
                    await wait_until(lambda: session.stream.state is State.CLOSED, 10, "the page's <close/> received")
                    await contact_sends_late_message(server, full)
                    hold.release.set()
                    await browser.expect("disconnected", timeout=30)
            finally:
                await browser.quit()
        bad = [e for e in browser.events if e["event"] in ("page-error", "console-error", "frame-after-close", "error")]
        assert bad == [], bad
        await wait_until(lambda: not server.live, 10, "the session gone")
        assert await offline_delivery(server, alice) == LATE

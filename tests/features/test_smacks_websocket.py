"""XEP-0198 over RFC 7395 WebSocket: a WebSocket that vanishes without <close/> hibernates the
session, and a new WebSocket resumes it; every message arrives exactly once."""
from __future__ import annotations

import asyncio
import base64
from collections import Counter

import aiohttp
import pytest
from lxml import etree

from xmppd.jid import JID

from ..helpers import PASSWORD, add_user, running_server, slix, slix_close

pytestmark = pytest.mark.interop

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SM = "urn:xmpp:sm:3"
C = "{jabber:client}"


class WsSm:
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http, self.ws = http, ws
        self.received = 0

    @classmethod
    async def login(cls, server, user: str) -> "WsSm":
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(f"http://127.0.0.1:{server.ports['http']}/xmpp-websocket", protocols=("xmpp",))
        c = cls(http, ws)
        await c.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
        await c.until(lambda e: e.tag.endswith("features"))
        token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        await c.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        await c.until(lambda e: e.tag.endswith("success"))
        await c.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
        features = await c.until(lambda e: e.tag.endswith("features"))
        assert features.find(f"{{{SM}}}sm") is not None
        return c

    async def send(self, xml: str) -> None:
        await self.ws.send_str(xml)

    async def next(self, timeout: float = 5) -> etree._Element:
        msg = await self.ws.receive(timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        el = etree.fromstring(msg.data.encode())
        if el.tag in (f"{C}message", f"{C}presence", f"{C}iq"):
            self.received += 1
        return el

    async def until(self, pred, timeout: float = 5) -> etree._Element:
        while True:
            el = await self.next(timeout)
            if pred(el):
                return el

    async def bodies(self, n: int) -> list[str]:
        out = []
        while len(out) < n:
            el = await self.next()
            if el.tag == f"{C}message":
                out.append(el.findtext(f"{C}body"))
        return out

    async def cut(self) -> None:
        await self.http.close()  # the connection goes away: no <close/>, no close frame

    async def close(self) -> None:
        await self.send(f"<close xmlns='{FRAMING}'/>")
        await self.ws.close()
        await self.http.close()


async def test_websocket_cut_and_resume_exactly_once(tmp_path):
    async with running_server(tmp_path, "listen.http=127.0.0.1:0", "c2s.require_tls=false", "smacks.request_every=0") as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        alice = await slix(srv, "alice@localhost")
        bob = await WsSm.login(srv, "bob")
        await bob.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>")
        await bob.until(lambda e: e.get("id") == "b")
        await bob.send(f"<enable xmlns='{SM}' resume='true'/>")
        enabled = await bob.until(lambda e: e.tag == f"{{{SM}}}enabled")
        bob.received = 0
        seen: list[str] = []
        try:
            for i in range(3):
                alice.send_message(mto="bob@localhost/web", mbody=f"before{i}", mtype="chat")
            seen += await bob.bodies(3)
            await bob.send(f"<a xmlns='{SM}' h='1'/>")
            h = bob.received
            session = srv.sessions.get(JID.parse("bob@localhost/web"))
            await bob.cut()
            for _ in range(200):
                if session.hibernating:
                    break
                await asyncio.sleep(0.01)
            assert session.hibernating and session.available is False  # never sent presence
            for i in range(4):
                alice.send_message(mto="bob@localhost/web", mbody=f"during{i}", mtype="chat")
            await asyncio.sleep(0.2)
            bob2 = await WsSm.login(srv, "bob")
            await bob2.send(f"<resume xmlns='{SM}' previd='{enabled.get('id')}' h='{h}'/>")
            resumed = await bob2.until(lambda e: e.tag in (f"{{{SM}}}resumed", f"{{{SM}}}failed"))
            assert resumed.tag == f"{{{SM}}}resumed"
            seen += await bob2.bodies(4)
            counts = Counter(seen)
            assert sorted(counts) == sorted([f"before{i}" for i in range(3)] + [f"during{i}" for i in range(4)])
            assert set(counts.values()) == {1}
            with pytest.raises(asyncio.TimeoutError):
                await bob2.until(lambda e: e.tag == f"{C}message", timeout=0.3)
            await bob2.close()
        finally:
            await slix_close(alice)

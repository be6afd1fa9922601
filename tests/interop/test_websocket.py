"""RFC 7395 and XEP-0156 on the wire with aiohttp's WebSocket client: framing, the handshake's
rules (subprotocol, Origin), proxies, host-meta, keep-alive, hostile input and shutdown."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from lxml import etree

from xmppd.core import hooks as H
from xmppd.core.hooks import Flow, SessionEvent
from xmppd.jid import JID

from ..helpers import PASSWORD, add_user, running_server

pytestmark = pytest.mark.interop

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
CLOSE = f"<close xmlns='{FRAMING}'/>"
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
WS = "127.0.0.1:0"


@contextlib.asynccontextmanager
async def ws_server(tmp_path, *overrides: str) -> AsyncIterator[Any]:
    async with running_server(tmp_path, f"listen.http={WS}", *overrides) as server:
        yield server


def url(server, path: str = "/xmpp-websocket") -> str:
    return f"http://127.0.0.1:{server.ports['http']}{path}"


class Ws:
    """One aiohttp WebSocket client speaking RFC 7395 by hand."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws

    @classmethod
    async def connect(cls, server, *, protocols: tuple[str, ...] = ("xmpp",), headers: dict[str, str] | None = None, **kw: Any) -> "Ws":
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url(server), protocols=protocols, headers=headers, **kw)
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    async def recv(self, timeout: float = 5) -> str:
        msg = await self.ws.receive(timeout)
        assert msg.type is WSMsgType.TEXT, f"expected a text message, got {msg.type} {msg.data!r} {msg.extra!r}"
        return msg.data

    async def recv_el(self, timeout: float = 5) -> etree._Element:
        return etree.fromstring(await self.recv(timeout))

    async def until_closed(self, timeout: float = 5) -> tuple[list[str], int | None]:
        """Every text message until the server closes, and its close code."""
        texts: list[str] = []
        while True:
            msg = await self.ws.receive(timeout)
            if msg.type is WSMsgType.TEXT:
                texts.append(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return texts, self.ws.close_code

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def open(self) -> etree._Element:
        await self.send(OPEN)
        opened = await self.recv_el()
        assert opened.tag == f"{{{FRAMING}}}open" and opened.get("from") == "localhost" and opened.get("version") == "1.0"
        assert opened.get("id")
        features = await self.recv_el()
        assert features.tag == "{http://etherx.jabber.org/streams}features"
        return features

    async def login(self, jid: str, password: str = PASSWORD, resource: str = "ws") -> str:
        features = await self.open()
        mechs = [m.text for m in features.iter("{urn:ietf:params:xml:ns:xmpp-sasl}mechanism")]
        assert "PLAIN" in mechs, etree.tostring(features)
        user = jid.split("@")[0]
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        assert (await self.recv_el()).tag == "{urn:ietf:params:xml:ns:xmpp-sasl}success"
        features = await self.open()
        assert features.find("{urn:ietf:params:xml:ns:xmpp-bind}bind") is not None
        await self.send(f"<iq type='set' id='b' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>")
        bound = await self.recv_el()
        return bound.findtext(".//{urn:ietf:params:xml:ns:xmpp-bind}jid")

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


def stream_error(texts: list[str]) -> str | None:
    for t in texts:
        el = etree.fromstring(t)
        if el.tag == "{http://etherx.jabber.org/streams}error":
            return etree.QName(el[0]).localname
    return None


async def settle(server, before: set[asyncio.Task], timeout: float = 5) -> None:
    """No session, no counted connection and no task of ours is left."""
    me = asyncio.current_task()

    def ours(t: asyncio.Task) -> bool:
        # sessions, transports, features' per-session work and aiohttp's handlers; a feature's
        # own periodic timers (a fresh wait task each round) are not this connection's
        code = getattr(t.get_coro(), "cr_code", None)
        name = code.co_filename if code is not None else ""
        return "/xmppd/" in name or "/aiohttp/" in name

    def leftovers() -> set[asyncio.Task]:
        return {t for t in asyncio.all_tasks() if not t.done() and ours(t)} - before - {me}

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while server.live or server.connections.total() or leftovers():
        if loop.time() > deadline:
            import io
            buf = io.StringIO()
            for t in leftovers():
                t.print_stack(file=buf)
            raise AssertionError(f"left behind: live={server.live} counted={server.connections.total()} tasks={leftovers()}\n{buf.getvalue()}")
        await asyncio.sleep(0.02)


def tasks_now() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if not t.done()}


# ------------------------------------------------------------------------------ framing


async def test_framing_open_features_stanza_per_message_and_close(tmp_path):
    async with ws_server(tmp_path, "c2s.require_tls=false") as server:
        before = tasks_now()
        alice = await add_user(server, "alice")
        c = await Ws.connect(server)
        assert c.ws.protocol == "xmpp"
        full = await c.login(alice)
        assert full == "alice@localhost/ws"
        session = next(iter(server.live))
        assert session.websocket and session.peer == "127.0.0.1"
        # two stanzas to ourselves come back as two messages, each one complete element
        await c.send(f"<message xmlns='jabber:client' to='{full}' type='chat' id='1'><body>one</body></message>")
        await c.send("<iq xmlns='jabber:client' type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        first, second = await c.recv_el(), await c.recv_el()
        assert first.tag == "{jabber:client}message" and first.findtext("{jabber:client}body") == "one"
        assert first.get("from") == full
        assert second.tag == "{jabber:client}iq" and second.get("type") == "result" and second.get("id") == "p"
        # client-initiated close: <close/> answered with <close/>, then a normal WebSocket close
        await c.send(CLOSE)
        texts, code = await c.until_closed()
        assert [etree.fromstring(t).tag for t in texts] == [f"{{{FRAMING}}}close"]
        assert code == 1000
        await c.close()
        await settle(server, before)


async def test_two_elements_in_one_message_is_not_well_formed(tmp_path):
    async with ws_server(tmp_path, "c2s.require_tls=false") as server:
        before = tasks_now()
        c = await Ws.connect(server)
        await c.open()
        await c.send("<iq xmlns='jabber:client' type='get' id='a'/><iq xmlns='jabber:client' type='get' id='b'/>")
        texts, code = await c.until_closed()
        assert stream_error(texts) == "not-well-formed"
        assert etree.fromstring(texts[-1]).tag == f"{{{FRAMING}}}close" and code == 1000
        await c.close()
        await settle(server, before)


async def test_tcp_stream_header_over_websocket_is_refused(tmp_path):
    async with ws_server(tmp_path, "c2s.require_tls=false") as server:
        c = await Ws.connect(server)
        await c.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
        texts, _ = await c.until_closed()
        assert etree.fromstring(texts[0]).tag == f"{{{FRAMING}}}open"
        assert stream_error(texts) == "invalid-namespace"
        await c.close()


async def test_starttls_is_not_offered_and_refused_over_websocket(tmp_path):
    async with ws_server(tmp_path, "c2s.require_tls=false") as server:
        c = await Ws.connect(server)
        features = await c.open()
        assert features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is None
        await c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        texts, _ = await c.until_closed()
        assert etree.fromstring(texts[0]).tag == "{urn:ietf:params:xml:ns:xmpp-tls}failure"
        await c.close()


async def test_default_config_local_ws_client_logs_in_without_tls(tmp_path):
    """The README's ws://127.0.0.1:5280/xmpp-websocket with the default c2s.require_tls: a
    client on this machine talking to the listener directly counts as secure (nothing crosses
    a network), as browsers treat http://localhost; PLAIN and SCRAM are offered."""
    async with ws_server(tmp_path) as server:
        assert server.config.c2s.require_tls
        alice = await add_user(server, "alice")
        page = {"Origin": f"http://localhost:{server.ports['http']}"}
        for headers in ({}, page, {"Origin": "null"}, {"Host": "localhost"}, {"Host": "[::1]:5280"}):
            c = await Ws.connect(server, headers=headers)
            assert await c.login(alice) == "alice@localhost/ws"
            await c.send(CLOSE)
            await c.until_closed()
            await c.close()


# A request as a remote client's would arrive: through a proxy listed in http.trusted_proxies
# that names the client's address, without saying it used https.
REMOTE_VIA_PROXY = {"X-Forwarded-For": "203.0.113.7"}


@pytest.mark.parametrize("overrides, headers, why", [
    (['http.trusted_proxies=["127.0.0.1"]'], REMOTE_VIA_PROXY, "X-Forwarded-Proto"),
    (['http.trusted_proxies=["127.0.0.1"]'], {**REMOTE_VIA_PROXY, "X-Forwarded-Proto": "http"}, "X-Forwarded-Proto"),
    # an undeclared proxy on this machine: its loopback address proves nothing
    ([], REMOTE_VIA_PROXY, "X-Forwarded-For"),
    ([], {"Forwarded": "for=203.0.113.7;proto=http"}, "Forwarded"),
    ([], {"Origin": "http://chat.example.com"}, "Origin"),  # a page from elsewhere, through some local relay
    ([], {"Host": "chat.example.com"}, "Host"),
], ids=["trusted-proxy-no-proto", "trusted-proxy-http", "undeclared-proxy", "forwarded", "remote-origin", "public-host"])
async def test_remote_plain_ws_gets_a_stream_error_saying_why_instead_of_silence(tmp_path, caplog, overrides, headers, why):
    """ws:// from elsewhere is not secure: with c2s.require_tls on there is no mechanism to
    offer, so instead of empty features and silence the stream ends with policy-violation and
    a text, and the server logs why and what to change."""
    caplog.set_level(logging.INFO, logger="xmppd.core.session")
    async with ws_server(tmp_path, *overrides) as server:
        c = await Ws.connect(server, headers=headers)
        await c.send(OPEN)
        texts, code = await c.until_closed()
        els = [etree.fromstring(t) for t in texts]
        assert [e.tag for e in els] == [f"{{{FRAMING}}}open", "{http://etherx.jabber.org/streams}error", f"{{{FRAMING}}}close"]
        error = els[1]
        assert error.find(f"{{{STREAMS}}}policy-violation") is not None
        assert "wss://" in error.findtext(f"{{{STREAMS}}}text")
        assert code == 1008  # RFC 6455 policy violation, with the stream error
        assert not any(e.find(".//{urn:ietf:params:xml:ns:xmpp-sasl}mechanism") is not None for e in els)
        await c.close()
        await wait_closed(server)
    [line] = [r.getMessage() for r in caplog.records if "require_tls" in r.getMessage()]
    assert why in line and "http.trusted_proxies" in line and "http.consider_websocket_secure" in line


async def test_remote_plain_ws_cannot_authenticate_even_when_it_tries(tmp_path):
    """A client that ignores the stream error and sends PLAIN anyway gets nothing: the stream
    is already closed (no session, no credential check)."""
    async with ws_server(tmp_path, 'http.trusted_proxies=["127.0.0.1"]') as server:
        alice = await add_user(server, "alice")
        c = await Ws.connect(server, headers=REMOTE_VIA_PROXY)
        token = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
        await c.send(OPEN)
        await c.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        texts, _ = await c.until_closed()
        assert stream_error(texts) == "policy-violation"
        assert not any("success" in t for t in texts)
        assert not server.sessions.of(JID.parse(alice))
        await c.close()


@pytest.mark.parametrize("overrides, headers", [
    (["http.consider_websocket_secure=true"], REMOTE_VIA_PROXY),
    (['http.trusted_proxies=["127.0.0.1"]'], {**REMOTE_VIA_PROXY, "X-Forwarded-Proto": "https"}),
], ids=["consider_websocket_secure", "trusted-proxy-https"])
async def test_secure_websocket_by_configuration(tmp_path, overrides, headers):
    async with ws_server(tmp_path, *overrides) as server:
        alice = await add_user(server, "alice")
        c = await Ws.connect(server, headers=headers)
        assert await c.login(alice) == "alice@localhost/ws"
        await c.close()


async def wait_closed(server, timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while server.live:
        assert loop.time() < deadline, "sessions left"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------ handshake


@pytest.mark.parametrize("protocols", [(), ("chat",)])
async def test_handshake_without_xmpp_subprotocol_is_refused(tmp_path, protocols):
    async with ws_server(tmp_path) as server:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await Ws.connect(server, protocols=protocols)
        assert info.value.status == 400
        assert not server.live


async def test_origin_policy(tmp_path):
    async with ws_server(tmp_path, "c2s.require_tls=false", 'http.cors_origins=["https://app.example.com"]') as server:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await Ws.connect(server, headers={"Origin": "https://evil.example.net"})
        assert info.value.status == 403
        assert not server.live
        ok = await Ws.connect(server, headers={"Origin": "https://app.example.com"})
        await ok.open()
        await ok.close()
        no_origin = await Ws.connect(server)  # apps and bots send none
        await no_origin.open()
        await no_origin.close()
        async with aiohttp.ClientSession() as http:
            async with http.get(url(server, "/.well-known/host-meta.json"), headers={"Origin": "https://app.example.com"}) as r:
                assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
            async with http.get(url(server, "/.well-known/host-meta.json"), headers={"Origin": "https://evil.example.net"}) as r:
                assert "Access-Control-Allow-Origin" not in r.headers


async def test_forwarded_headers_count_only_from_trusted_proxies(tmp_path):
    headers = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7", "X-Forwarded-Proto": "https"}
    async with ws_server(tmp_path, 'http.trusted_proxies=["127.0.0.0/8"]') as server:
        alice = await add_user(server, "alice")
        c = await Ws.connect(server, headers=headers)
        # https at the proxy counts as TLS: PLAIN is offered although c2s.require_tls is on
        assert await c.login(alice) == "alice@localhost/ws"
        [session] = server.live
        assert session.peer == "203.0.113.7" and session.stream.tls
        assert server.connections.total() == 1
        await c.close()
    async with ws_server(tmp_path, 'http.trusted_proxies=["192.0.2.1"]') as server:
        # Not from a trusted proxy: its headers are not believed, and a request that carries
        # them came through some proxy, so its loopback address proves nothing either.
        c = await Ws.connect(server, headers=headers)
        await c.send(OPEN)
        texts, _ = await c.until_closed()
        assert stream_error(texts) == "policy-violation"
        await c.close()


# ------------------------------------------------------------------------------ discovery


async def test_host_meta_xml_and_json_advertise_the_websocket_endpoint(tmp_path):
    async with ws_server(tmp_path) as server:
        port = server.ports["http"]
        async with aiohttp.ClientSession() as http:
            async with http.get(url(server, "/.well-known/host-meta")) as r:
                assert r.status == 200 and r.content_type == "application/xrd+xml"
                assert r.headers["Access-Control-Allow-Origin"] == "*"
                xrd = etree.fromstring(await r.read())
            async with http.get(url(server, "/.well-known/host-meta.json")) as r:
                assert r.status == 200 and r.content_type == "application/json"
                assert r.headers["Access-Control-Allow-Origin"] == "*"
                jrd = json.loads(await r.text())
        [link] = xrd.findall("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")
        assert link.get("rel") == "urn:xmpp:alt-connections:websocket"
        assert link.get("href") == f"ws://127.0.0.1:{port}/xmpp-websocket"
        assert jrd == {"links": [{"rel": "urn:xmpp:alt-connections:websocket", "href": f"ws://127.0.0.1:{port}/xmpp-websocket"}]}


async def test_host_meta_uses_public_url_and_proxy_scheme(tmp_path):
    async with ws_server(tmp_path, "http.public_url=wss://chat.example.com/xmpp-websocket") as server:
        async with aiohttp.ClientSession() as http:
            async with http.get(url(server, "/.well-known/host-meta.json")) as r:
                assert (await r.json())["links"][0]["href"] == "wss://chat.example.com/xmpp-websocket"
    async with ws_server(tmp_path, 'http.trusted_proxies=["127.0.0.1"]') as server:
        async with aiohttp.ClientSession() as http:
            hdrs = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "im.example.org"}
            async with http.get(url(server, "/.well-known/host-meta"), headers=hdrs) as r:
                assert 'href="wss://im.example.org/xmpp-websocket"' in await r.text()


# ------------------------------------------------------------------------------ keep-alive


async def test_dead_client_is_detected_by_ping_timeout_and_its_session_ends(tmp_path):
    async with ws_server(tmp_path, "c2s.require_tls=false", "http.ws_ping_interval=0.2", "http.ws_ping_timeout=0.3") as server:
        closed: list[str | None] = []

        async def on_closed(e: SessionEvent) -> Flow:
            closed.append(e.reason)
            return Flow.CONTINUE

        server.hooks.add(H.SESSION_CLOSED, on_closed)
        before = tasks_now()
        alice = await add_user(server, "alice")
        # autoping off and nothing read: the client never answers the server's pings
        c = await Ws.connect(server, autoping=False)
        await c.login(alice)
        assert len(server.sessions) == 1
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while server.live:
            await asyncio.sleep(0.02)
            assert loop.time() - t0 < 10, "the dead client was not dropped"  # (~0.5 s; slack for a loaded CI host)
        assert closed and len(server.sessions) == 0
        await c.close()
        await settle(server, before)


async def test_answering_pings_keeps_an_idle_client_connected(tmp_path):
    async with ws_server(tmp_path, "c2s.require_tls=false", "http.ws_ping_interval=0.1", "http.ws_ping_timeout=0.2") as server:
        alice = await add_user(server, "alice")
        c = await Ws.connect(server)  # aiohttp answers pings while receive() runs
        await c.login(alice)
        reading = asyncio.ensure_future(c.ws.receive())
        await asyncio.sleep(1.0)  # idle for several ping intervals
        assert not reading.done() and len(server.sessions) == 1
        await c.close()
        assert (await reading).type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)


# ------------------------------------------------------------------------------ hostile input


async def test_text_that_is_not_xmpp(tmp_path):
    async with ws_server(tmp_path, "c2s.require_tls=false") as server:
        before = tasks_now()
        c = await Ws.connect(server)
        await c.send("GET / HTTP/1.1 hello")
        texts, code = await c.until_closed()
        assert etree.fromstring(texts[0]).tag == f"{{{FRAMING}}}open"  # the header comes first
        assert stream_error(texts) == "not-well-formed"
        assert etree.fromstring(texts[-1]).tag == f"{{{FRAMING}}}close" and code == 1000
        await c.close()
        await settle(server, before)


async def test_binary_frame_gets_a_stream_error_and_close_1003(tmp_path):
    async with ws_server(tmp_path, "c2s.require_tls=false") as server:
        before = tasks_now()
        c = await Ws.connect(server)
        await c.open()
        await c.ws.send_bytes(OPEN.encode())
        texts, code = await c.until_closed()
        assert stream_error(texts) == "unsupported-encoding"
        assert etree.fromstring(texts[-1]).tag == f"{{{FRAMING}}}close"
        assert code == 1003
        await c.close()
        await settle(server, before)


async def test_oversized_message_gets_policy_violation_and_close_1009(tmp_path):
    async with ws_server(tmp_path, "c2s.require_tls=false", "http.max_message_size=2000") as server:
        before = tasks_now()
        c = await Ws.connect(server)
        await c.open()
        await c.send("<message xmlns='jabber:client'><body>" + "x" * 2500 + "</body></message>")
        texts, code = await c.until_closed()
        assert stream_error(texts) == "policy-violation" and code == 1009
        await c.close()
        # far over the limit: refused unread by the WebSocket layer, still 1009
        c = await Ws.connect(server)
        await c.open()
        await c.send("<message xmlns='jabber:client'><body>" + "x" * 9000 + "</body></message>")
        _, code = await c.until_closed()
        assert code == 1009
        await c.close()
        await settle(server, before)


async def test_client_that_never_opens_the_stream_is_timed_out(tmp_path):
    async with ws_server(tmp_path, "c2s.auth_timeout=0.3") as server:
        before = tasks_now()
        c = await Ws.connect(server)
        texts, code = await c.until_closed(timeout=5)
        assert stream_error(texts) == "connection-timeout"
        assert etree.fromstring(texts[-1]).tag == f"{{{FRAMING}}}close" and code == 1000
        await c.close()
        await settle(server, before)


async def test_connection_flood_from_one_address_is_refused_with_policy_violation(tmp_path):
    async with ws_server(tmp_path, "c2s.max_connections_per_ip=2", "c2s.require_tls=false") as server:
        before = tasks_now()
        a, b = await Ws.connect(server), await Ws.connect(server)
        await a.open()
        await b.open()
        assert server.connections.total() == 2
        extra = await Ws.connect(server)
        texts, code = await extra.until_closed()
        assert stream_error(texts) == "policy-violation" and code == 1008
        assert server.connections.total() == 2
        for c in (extra, a, b):
            await c.close()
        await settle(server, before)


# ------------------------------------------------------------------------------ shutdown


async def test_server_stop_closes_websocket_sessions_with_system_shutdown(tmp_path):
    async with ws_server(tmp_path, "c2s.require_tls=false") as server:
        alice = await add_user(server, "alice")
        c = await Ws.connect(server)
        await c.login(alice)
        texts_task = asyncio.ensure_future(c.until_closed())
        await server.stop()
        texts, code = await texts_task
        assert stream_error(texts) == "system-shutdown"
        assert etree.fromstring(texts[-1]).tag == f"{{{FRAMING}}}close"
        assert code == 1001
        assert not server.live and server.connections.total() == 0
        await c.close()

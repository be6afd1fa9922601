"""A lean raw XMPP client for load generation: RFC 6120 over TCP (plain, STARTTLS, direct TLS) and RFC 7395 WebSocket.

Two receive modes. *Parse mode* (logins, joins, presence) runs an lxml pull parser and hands
complete top-level elements to ``recv()`` or to an ``on_element`` callback. *Count mode* (message
floods) skips XML parsing altogether: it counts ``<message`` start tags in the raw bytes and calls
``on_count`` synchronously, so a scenario can send the next stanza from inside the callback. Sends
are synchronous writes; nothing here creates a task per stanza. Works against any server.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import os
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from .scram import ScramClient

NS_CLIENT = "jabber:client"
NS_STREAM = "http://etherx.jabber.org/streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
NS_REGISTER = "jabber:iq:register"

_FEATURES = f"{{{NS_STREAM}}}features"
_ERROR = f"{{{NS_STREAM}}}error"
_MARK = b"<message"
_ids = itertools.count()


class XmppError(Exception):
    pass


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;").replace('"', "&quot;")


def new_id() -> str:
    return f"b{next(_ids)}"


class _TcpProto(asyncio.Protocol):
    __slots__ = ("client", "transport")

    def __init__(self, client: "Client") -> None:
        self.client = client
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client._feed(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(exc)


class _WsProto(asyncio.Protocol):
    """RFC 6455 client framing, just enough for RFC 7395: text frames, ping/pong, close."""

    __slots__ = ("client", "transport", "_buf", "_handshake", "_frag", "handshake_done")

    def __init__(self, client: "Client") -> None:
        self.client = client
        self.transport: Any = None
        self._buf = b""
        self._handshake = True
        self._frag: list[bytes] = []
        self.handshake_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if self._handshake:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            head = buf[:end].decode("latin-1")
            buf = buf[end + 4 :]
            self._handshake = False
            if not self.handshake_done.done():
                if head.split(" ", 2)[1:2] != ["101"]:
                    self.handshake_done.set_exception(XmppError(f"WebSocket upgrade refused: {head.splitlines()[0]}"))
                    return
                self.handshake_done.set_result(None)
        pos = 0
        n = len(buf)
        client = self.client
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            hdr = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                hdr = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hdr = 10
            if n - pos < hdr + length:
                break
            payload = buf[pos + hdr : pos + hdr + length]
            pos += hdr + length
            opcode = b0 & 0x0F
            if opcode in (1, 2, 0):
                if not b0 & 0x80:
                    self._frag.append(payload)
                    continue
                if self._frag:
                    payload = b"".join(self._frag) + payload
                    self._frag = []
                client._feed_message(payload)
            elif opcode == 9:
                self.send_frame(payload, 10)
            elif opcode == 8:
                self.send_frame(payload[:2], 8)
                self.transport.close()
                break
        self._buf = buf[pos:]

    def send_frame(self, payload: bytes, opcode: int = 1) -> None:
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        key = os.urandom(4)
        if n:
            mask = (key * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(n, "little")
        self.transport.write(head + key + payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake_done.done():
            self.handshake_done.set_exception(XmppError("connection lost during the WebSocket upgrade"))
        self.client._lost(exc)


class Client:
    """One XMPP client connection. ``await connect(...)``, ``await login(...)``, then send/recv."""

    def __init__(self, domain: str, *, timeout: float = 15.0) -> None:
        self.domain = domain
        self.timeout = timeout
        self.jid = ""
        self.bare = ""
        self.ws = False
        self.closed = False
        self.error: str | None = None
        self.features: etree._Element | None = None
        self.on_element: Callable[["Client", etree._Element], None] | None = None
        self.on_count: Callable[["Client", int], None] | None = None
        self.counting = False
        self.count = 0
        self._mark = _MARK
        self._tail = b""
        self._proto: Any = None
        self._queue: collections.deque[etree._Element] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._parser: etree.XMLPullParser | None = None
        self._root: etree._Element | None = None
        self._depth = 0
        self._host = ""
        self._port = 0

    # ------------------------------------------------------------------ connecting

    async def connect_tcp(self, host: str, port: int, *, direct_tls: ssl.SSLContext | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._host, self._port = host, port
        self._new_parser()
        _, self._proto = await asyncio.wait_for(
            loop.create_connection(lambda: _TcpProto(self), host, port, ssl=direct_tls, server_hostname=self.domain if direct_tls else None),
            self.timeout,
        )

    async def connect_ws(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        u = urlsplit(url)
        self.ws = True
        _, proto = await asyncio.wait_for(loop.create_connection(lambda: _WsProto(self), u.hostname, u.port or 80), self.timeout)
        self._proto = proto
        key = base64.b64encode(os.urandom(16)).decode()
        proto.transport.write(
            (
                f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: xmpp\r\n\r\n"
            ).encode()
        )
        await asyncio.wait_for(proto.handshake_done, self.timeout)

    def _new_parser(self) -> None:
        self._parser = etree.XMLPullParser(events=("start", "end"), resolve_entities=False, no_network=True)
        self._root = None
        self._depth = 0

    # ------------------------------------------------------------------ input

    def _feed(self, data: bytes) -> None:
        if self.counting:
            mark = self._mark
            buf = self._tail + data
            n = buf.count(mark)
            self._tail = buf[1 - len(mark) :]
            if n:
                self.count += n
                cb = self.on_count
                if cb is not None:
                    cb(self, n)
            return
        parser = self._parser
        if parser is None or self.closed:  # after the stream's end nothing counts
            return
        try:
            parser.feed(data)
        except etree.XMLSyntaxError as exc:
            self.error = f"XML error from the server: {exc}"
            self.close()
            return
        depth = self._depth
        delivered = False
        for ev, el in parser.read_events():
            if ev == "start":
                if depth == 0:
                    self._root = el
                depth += 1
            else:
                depth -= 1
                if depth == 1:
                    self._deliver(el)
                    delivered = True
                elif depth == 0:
                    self.closed = True
        self._depth = depth
        if delivered and self._root is not None and self._parser is parser:
            if depth > 1:  # a stanza is still open: keep it
                del self._root[:-1]
            else:
                del self._root[:]

    def _feed_message(self, payload: bytes) -> None:
        if self.counting:
            n = payload.startswith(self._mark)
            if n:
                self.count += 1
                cb = self.on_count
                if cb is not None:
                    cb(self, 1)
            return
        try:
            el = etree.fromstring(payload)
        except etree.XMLSyntaxError as exc:
            self.error = f"XML error from the server: {exc}"
            self.close()
            return
        tag = el.tag
        if tag == f"{{{NS_FRAMING}}}open":
            return
        if tag == f"{{{NS_FRAMING}}}close":
            self.closed = True
            self._wake()
            return
        self._deliver(el)

    def _deliver(self, el: etree._Element) -> None:
        if el.tag == _ERROR:
            self.error = "stream error: " + ", ".join(etree.QName(c).localname for c in el)
        cb = self.on_element
        if cb is not None:
            cb(self, el)
            return
        self._queue.append(el)
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    async def recv(self, timeout: float | None = None) -> etree._Element:
        """The next top-level element (parse mode)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        while not self._queue:
            if self.closed or self.error:
                raise XmppError(self.error or "connection closed")
            left = deadline - loop.time()
            if left <= 0:
                raise XmppError("timed out waiting for the server")
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, left)
            except TimeoutError:
                raise XmppError("timed out waiting for the server") from None
            finally:
                self._waiter = None
        el = self._queue.popleft()
        if el.tag == _ERROR:
            raise XmppError(self.error or "stream error")
        return el

    async def recv_until(self, pred: Callable[[etree._Element], bool], timeout: float | None = None) -> etree._Element:
        while True:
            el = await self.recv(timeout)
            if pred(el):
                return el

    # ------------------------------------------------------------------ output

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self.ws:
            self._proto.send_frame(data)
        else:
            self._proto.transport.write(data)

    def send_many(self, units: list[bytes]) -> None:
        if self.closed:
            return
        if self.ws:
            for u in units:
                self._proto.send_frame(u)
        else:
            self._proto.transport.write(b"".join(units))

    def xmlns(self) -> str:
        """The namespace declaration a stanza needs on this transport (RFC 7395 asks for it)."""
        return " xmlns='jabber:client'" if self.ws else ""

    async def iq(self, body: str, *, type: str = "get", to: str | None = None, timeout: float | None = None) -> etree._Element:
        iq_id = new_id()
        to_attr = f" to='{esc(to)}'" if to else ""
        self.send(f"<iq{self.xmlns()} type='{type}' id='{iq_id}'{to_attr}>{body}</iq>".encode())
        reply = await self.recv_until(lambda el: el.tag == f"{{{NS_CLIENT}}}iq" and el.get("id") == iq_id, timeout)
        if reply.get("type") == "error":
            cond = [etree.QName(c).localname for c in reply.iterfind(f"{{{NS_CLIENT}}}error/*")]
            raise XmppError(f"iq error: {' '.join(cond) or 'unknown'}")
        return reply

    # ------------------------------------------------------------------ stream

    async def open_stream(self) -> etree._Element:
        if self.ws:
            self.send(f"<open xmlns='{NS_FRAMING}' to='{esc(self.domain)}' version='1.0'/>".encode())
        else:
            self.send(
                f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}' "
                f"to='{esc(self.domain)}' version='1.0'>".encode()
            )
        self.features = await self.recv_until(lambda el: el.tag == _FEATURES)
        return self.features

    def _restart(self) -> None:
        if not self.ws:
            self._new_parser()

    async def starttls(self, ctx: ssl.SSLContext) -> None:
        self.send(f"<starttls xmlns='{NS_TLS}'/>".encode())
        el = await self.recv()
        if el.tag != f"{{{NS_TLS}}}proceed":
            raise XmppError("STARTTLS refused")
        loop = asyncio.get_running_loop()
        proto = self._proto
        proto.transport = await asyncio.wait_for(
            loop.start_tls(proto.transport, proto, ctx, server_hostname=self.domain), self.timeout
        )
        self._restart()
        await self.open_stream()

    def mechanisms(self) -> list[str]:
        assert self.features is not None
        return [m.text or "" for m in self.features.iterfind(f"{{{NS_SASL}}}mechanisms/{{{NS_SASL}}}mechanism")]

    async def login(
        self,
        username: str,
        password: str,
        *,
        mechanism: str = "SCRAM-SHA-1",
        resource: str | None = None,
        starttls: ssl.SSLContext | None = None,
        presence: bool = False,
        wait_echo: bool = False,
    ) -> str:
        """Open the stream, (STARTTLS), SCRAM, bind, session when the server asks for it,
        (initial presence, and its echo with *wait_echo*); returns the full JID."""
        features = await self.open_stream()
        if starttls is not None:
            if features.find(f"{{{NS_TLS}}}starttls") is None:
                raise XmppError("the server offers no STARTTLS")
            await self.starttls(starttls)
        if mechanism not in self.mechanisms():
            raise XmppError(f"{mechanism} not offered (offered: {', '.join(self.mechanisms())})")
        scram = ScramClient(mechanism, username, password)
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{base64.b64encode(scram.first()).decode()}</auth>".encode())
        el = await self.recv()
        if el.tag != f"{{{NS_SASL}}}challenge":
            raise XmppError(f"SASL failed: {_sasl_condition(el)}")
        final = scram.final(base64.b64decode(el.text or ""))
        self.send(f"<response xmlns='{NS_SASL}'>{base64.b64encode(final).decode()}</response>".encode())
        el = await self.recv()
        if el.tag == f"{{{NS_SASL}}}challenge":  # servers that send v= in a challenge
            scram.verify(base64.b64decode(el.text or ""))
            self.send(f"<response xmlns='{NS_SASL}'/>".encode())
            el = await self.recv()
            if el.tag != f"{{{NS_SASL}}}success":
                raise XmppError(f"SASL failed: {_sasl_condition(el)}")
        elif el.tag == f"{{{NS_SASL}}}success":
            scram.verify(base64.b64decode(el.text or ""))
        else:
            raise XmppError(f"SASL failed: {_sasl_condition(el)}")
        self._restart()
        features = await self.open_stream()
        res = f"<resource>{esc(resource)}</resource>" if resource else ""
        reply = await self.iq(f"<bind xmlns='{NS_BIND}'>{res}</bind>", type="set")
        jid = reply.findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")
        if not jid:
            raise XmppError("bind result without a JID")
        self.jid = jid
        self.bare = jid.split("/", 1)[0]
        sess = features.find(f"{{{NS_SESSION}}}session")
        if sess is not None and sess.find(f"{{{NS_SESSION}}}optional") is None:
            await self.iq(f"<session xmlns='{NS_SESSION}'/>", type="set")
        if presence:
            self.send(f"<presence{self.xmlns()}/>".encode())
            if wait_echo:  # RFC 6121 4.2.2: the server sends the initial presence back to its sender
                await self.recv_until(lambda el: el.tag.endswith("}presence") and el.get("from") == jid and el.get("type") is None)
        return jid

    async def register(self, username: str, password: str) -> bool:
        """XEP-0077 in-band registration on a fresh stream; False when the account exists already."""
        await self.open_stream()
        try:
            await self.iq(
                f"<query xmlns='{NS_REGISTER}'><username>{esc(username)}</username><password>{esc(password)}</password></query>",
                type="set",
            )
        except XmppError as exc:
            if "conflict" in str(exc):
                return False
            raise
        return True

    def start_counting(self, on_count: Callable[["Client", int], None] | None = None, mark: bytes = _MARK) -> None:
        """Switch to count mode for good (TCP: the parser is dropped): count ``mark`` (start tags)."""
        self._mark = mark
        self._tail = b""
        self.counting = True
        self.count = 0
        self.on_count = on_count
        self._parser = None
        self._root = None

    def close(self) -> None:
        if self._proto is None or self._proto.transport is None:
            return
        t = self._proto.transport
        if not t.is_closing():
            try:
                if not self.closed:
                    self.send(f"<close xmlns='{NS_FRAMING}'/>".encode() if self.ws else b"</stream:stream>")
            finally:
                t.close()
        self.closed = True


def _sasl_condition(el: etree._Element) -> str:
    if el.tag == f"{{{NS_SASL}}}failure":
        return " ".join(etree.QName(c).localname for c in el if etree.QName(c).localname != "text") or "failure"
    return etree.QName(el).localname

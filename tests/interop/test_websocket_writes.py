"""RFC 7395 output over real sockets: the server frames its text messages itself (RFC 6455 §5.2)
and writes one event-loop turn's messages together. Each stanza is still its own message, in
order, at every frame-length size; a client that stops reading is disconnected once its unsent
output passes ``c2s.write_buffer_limit``, as on TCP."""
from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import struct

import pytest

from xmppd.jid import JID

from ..helpers import PASSWORD, add_user, running_server

pytestmark = pytest.mark.interop

LIMIT = 65536
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"


class RawWs:
    """A WebSocket client by hand (RFC 6455): masked text frames out, whole messages in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None) -> "RawWs":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # a small window: the server's output piles up in its own buffer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        ws = cls(*await asyncio.open_connection(sock=sock))
        key = base64.b64encode(os.urandom(16)).decode()
        ws.writer.write(
            (
                f"GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(ws.reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        return ws

    async def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = bytes((0x81, 0x80 | n))
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask * (n // 4 + 1), "big") >> (8 * (4 - n % 4))).to_bytes(n, "big")
        self.writer.write(header + mask + masked)
        await self.writer.drain()

    async def recv(self, timeout: float = 10) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; the server never fragments nor masks."""

        async def go() -> tuple[int, bytes]:
            b0, b1 = await self.reader.readexactly(2)
            assert b0 & 0x80 and not b0 & 0x70, f"FIN set, no RSV bits: {b0:#x}"
            assert not b1 & 0x80, "a server frame is never masked"
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return b0 & 0x0F, await self.reader.readexactly(n)

        return await asyncio.wait_for(go(), timeout)

    async def text(self) -> str:
        while True:
            op, payload = await self.recv()
            if op == 0x1:
                return payload.decode()
            assert op in (0x9, 0xA), f"unexpected opcode {op}"  # pings may come in between

    async def until(self, needle: str) -> str:
        while True:
            msg = await self.text()
            if needle in msg:
                return msg


async def login(port: int, user: str, *, rcvbuf: int | None = None) -> tuple[RawWs, str]:
    ws = await RawWs.connect(port, rcvbuf=rcvbuf)
    await ws.send(OPEN)
    await ws.until("</stream:features>")
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    await ws.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    await ws.until("<success")
    await ws.send(OPEN)
    await ws.until("</stream:features>")
    await ws.send("<iq type='set' id='b' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    answer = await ws.until("</iq>")
    return ws, re.search(r"<jid>([^<]+)</jid>", answer).group(1)  # type: ignore[union-attr]


def _server(tmp_path, *extra: str):  # type: ignore[no-untyped-def]
    return running_server(tmp_path, "c2s.require_tls=false", "listen.http=127.0.0.1:0", f"c2s.write_buffer_limit={LIMIT}", *extra)


async def test_every_stanza_is_its_own_message_in_order_at_every_frame_size(tmp_path):
    async with _server(tmp_path) as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        port = server.ports["http"]
        alice, alice_jid = await login(port, "alice")
        bob, _ = await login(port, "bob")
        # Bodies around each frame-length boundary (7-bit, 16-bit, 64-bit lengths); the small
        # ones arrive in one turn and go out in one write, each still its own frame.
        sizes = [1, 60, 125, 126, 200, 65000, 65536, 70000, 3, 4]
        for i, size in enumerate(sizes):
            await bob.send(f"<message xmlns='jabber:client' to='{alice_jid}' id='m{i}' type='chat'><body>{'x' * size}</body></message>")
        for i, size in enumerate(sizes):
            msg = await alice.until("<message")
            assert f'id="m{i}"' in msg and msg.count("<message") == 1
            assert re.search(r"<body>(x*)</body>", msg).group(1) == "x" * size  # type: ignore[union-attr]
        alice.writer.close()
        bob.writer.close()


async def test_a_websocket_client_that_does_not_read_is_disconnected(tmp_path):
    # Bob's 3.2 MB would be shaped to c2s.rate_bytes: not what this test is about.
    async with _server(tmp_path, "c2s.rate_bytes=0", "c2s.rate_stanzas=0") as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        port = server.ports["http"]
        alice, alice_jid = await login(port, "alice", rcvbuf=4096)  # and never reads again
        bob, _ = await login(port, "bob")
        body = "x" * 8000
        for i in range(400):  # 3.2 MB for alice: far more than the kernel's buffers hold
            await bob.send(f"<message xmlns='jabber:client' to='{alice_jid}' id='m{i}' type='chat'><body>{body}</body></message>")
            if server.sessions.get(JID.parse(alice_jid)) is None:
                break
        for _ in range(200):
            if server.sessions.get(JID.parse(alice_jid)) is None:
                break
            await asyncio.sleep(0.02)
        assert server.sessions.get(JID.parse(alice_jid)) is None, "alice's session outlived the write buffer limit"
        # Bob, who reads, is still served.
        await bob.send("<iq xmlns='jabber:client' type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert "ping1" in await bob.until("ping1")
        assert [s.jid.local for s in server.sessions] == ["bob"]  # type: ignore[union-attr]
        alice.writer.close()
        bob.writer.close()

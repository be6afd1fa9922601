"""RFC 6120 §13.12 (resource exhaustion): ``c2s.write_buffer_limit`` over real sockets.

A client that stops reading is disconnected once its unsent output passes the limit; a client
that reads gets every stanza, in order, however many arrive in one event-loop turn.
"""
from __future__ import annotations

import asyncio
import base64
import re
import socket

import pytest

from xmppd.jid import JID

from ..helpers import PASSWORD, add_user, running_server

pytestmark = pytest.mark.interop

LIMIT = 65536
UNSHAPED = ("c2s.rate_bytes=0", "c2s.rate_stanzas=0")
_OPEN = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
         "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.buffer = reader, writer, b""

    async def until(self, needle: bytes, timeout: float = 10) -> bytes:
        async def go() -> bytes:
            while needle not in self.buffer:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise EOFError(f"closed before {needle!r}: {self.buffer[-300:]!r}")
                self.buffer += chunk
            i = self.buffer.index(needle) + len(needle)
            out, self.buffer = self.buffer[:i], self.buffer[i:]
            return out

        return await asyncio.wait_for(go(), timeout)

    async def send(self, data: str) -> None:
        self.writer.write(data.encode())
        await self.writer.drain()


async def login(port: int, user: str, *, rcvbuf: int | None = None, resource: str | None = None) -> tuple[Client, str]:
    """PLAIN without TLS (the server runs with c2s.require_tls=false), bind; (client, full JID)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # a small window: the server's output piles up in its own buffer
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    c = Client(*await asyncio.open_connection(sock=sock))
    await c.send(_OPEN)
    await c.until(b"</stream:features>")
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    await c.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    await c.until(b"<success")
    await c.send(_OPEN)
    await c.until(b"</stream:features>")
    res = f"<resource>{resource}</resource>" if resource else ""
    await c.send(f"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>")
    answer = await c.until(b"</iq>")
    jid = re.search(rb"<jid>([^<]+)</jid>", answer).group(1).decode()  # type: ignore[union-attr]
    return c, jid


async def test_a_client_that_does_not_read_is_disconnected(tmp_path):
    # Bob's 3.2 MB would be shaped to c2s.rate_bytes: not what this test is about.
    async with running_server(tmp_path, "c2s.require_tls=false", f"c2s.write_buffer_limit={LIMIT}", *UNSHAPED) as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        port = server.ports["c2s"]
        alice, alice_jid = await login(port, "alice", rcvbuf=4096)  # and never reads again
        bob, _ = await login(port, "bob")
        assert server.sessions.get(JID.parse(alice_jid)) is not None
        body = "x" * 8000
        for i in range(400):  # 3.2 MB for alice: far more than the kernel's buffers hold
            bob.writer.write(f"<message to='{alice_jid}' id='m{i}' type='chat'><body>{body}</body></message>".encode())
            if i % 20 == 19:
                await bob.writer.drain()
                if server.sessions.get(JID.parse(alice_jid)) is None:
                    break
        for _ in range(200):
            if server.sessions.get(JID.parse(alice_jid)) is None:
                break
            await asyncio.sleep(0.02)
        assert server.sessions.get(JID.parse(alice_jid)) is None, "alice's session outlived the write buffer limit"
        # Her connection is gone: reading drains what the kernel held, then the end.
        received = b""
        with pytest.raises((EOFError, ConnectionResetError)):
            while True:
                chunk = await asyncio.wait_for(alice.reader.read(1 << 20), 5)
                if not chunk:
                    raise EOFError
                received += chunk
        assert len(received) < 400 * 8000
        # Bob, who reads, is still served.
        await bob.send("<iq type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert b"ping1" in await bob.until(b"ping1")
        assert [s.jid.local for s in server.sessions] == ["bob"]  # type: ignore[union-attr]
        bob.writer.close()


async def test_a_reader_gets_every_stanza_in_order(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", f"c2s.write_buffer_limit={LIMIT}") as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        port = server.ports["c2s"]
        alice, alice_jid = await login(port, "alice")
        bob, _ = await login(port, "bob")
        n = 300
        # One write: the server parses them in one turn and writes many stanzas to alice per turn.
        bob.writer.write("".join(f"<message to='{alice_jid}' id='m{i}' type='chat'><body>{i}</body></message>" for i in range(n)).encode())
        await bob.writer.drain()
        got: list[int] = []
        while len(got) < n:
            chunk = await alice.until(b"</message>")
            got.append(int(re.search(rb"<body>(\d+)</body>", chunk).group(1)))  # type: ignore[union-attr]
        assert got == list(range(n))
        alice.writer.close()
        bob.writer.close()

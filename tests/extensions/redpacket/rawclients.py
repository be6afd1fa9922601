"""Lightweight raw XMPP clients for the grab storm: PLAIN login without TLS (loopback test
servers run with c2s.require_tls=false), bind, then iqs as bytes."""

from __future__ import annotations

import asyncio
import base64
import re

from ...helpers import PASSWORD

_ID_RE = re.compile(rb"<iq[^>]*\bid=[\"']([^\"']+)[\"'][^>]*?(?:/>|>.*?</iq>)", re.S)


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.buffer = reader, writer, b""

    async def send(self, data: str) -> None:
        self.writer.write(data.encode())
        await self.writer.drain()

    async def until(self, needle: bytes, timeout: float = 20) -> bytes:
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

    async def iq(self, iq_id: str, xml: str, timeout: float = 20) -> bytes:
        """Send an iq and return the answer with that id (other stanzas are skipped)."""
        await self.send(xml)

        async def go() -> bytes:
            while True:
                m = _ID_RE.search(self.buffer)
                while m is not None:
                    if m.group(1).decode() == iq_id:
                        self.buffer = self.buffer[m.end():]
                        return m.group(0)
                    m = _ID_RE.search(self.buffer, m.end())
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise EOFError("closed while waiting for an answer")
                self.buffer += chunk

        return await asyncio.wait_for(go(), timeout)

    def close(self) -> None:
        self.writer.close()


def _open(domain: str) -> str:
    return (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>")


async def login(port: int, user: str, domain: str = "localhost", password: str = PASSWORD) -> Raw:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    c = Raw(reader, writer)
    await c.send(_open(domain))
    await c.until(b"</stream:features>")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    await c.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    await c.until(b"success")
    await c.send(_open(domain))
    await c.until(b"</stream:features>")
    await c.iq("bind", "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    return c

"""A raw XEP-0198 client over plaintext TCP (servers with c2s.require_tls=false): it counts the
stanzas it receives itself, so tests decide exactly what ``h`` it reports and when it vanishes."""
from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

from lxml import etree

from ..helpers import PASSWORD

SM = "urn:xmpp:sm:3"
CLIENT = "jabber:client"
STANZAS = {f"{{{CLIENT}}}message", f"{{{CLIENT}}}presence", f"{{{CLIENT}}}iq"}
HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


class SmClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.inbox: asyncio.Queue[etree._Element] = asyncio.Queue()
        self.received = 0  # stanzas received: the client's h
        self.sent = 0  # stanzas sent
        self.jid = ""
        self.resume_id: str | None = None
        self._parser: Any = None
        self._depth = 0
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.skipped: list[etree._Element] = []
        self.features: etree._Element | None = None  # the stream features after authentication

    @classmethod
    async def login(cls, server: Any, user: str, *, resource: str | None = "phone", enable: bool = True, resume: bool = True) -> "SmClient":
        c = await cls.authenticate(server, user)
        await c.bind(resource)
        if enable:
            await c.enable(resume)
        return c

    @classmethod
    async def authenticate(cls, server: Any, user: str) -> "SmClient":
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["c2s"])
        c = cls(reader, writer)
        c._reset()
        c._task = asyncio.get_running_loop().create_task(c._read())
        c.write(HEADER)
        await c.expect(lambda e: e.tag.endswith("features"))
        token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        c.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        ok = await c.expect(lambda e: e.tag.endswith("success") or e.tag.endswith("failure"))
        assert ok.tag.endswith("success"), etree.tostring(ok)
        c._reset()
        c.write(HEADER)
        features = await c.expect(lambda e: e.tag.endswith("features"))
        assert features.find(f"{{{SM}}}sm") is not None, "stream management is advertised after authentication"
        c.features = features
        return c

    async def bind(self, resource: str | None) -> str:
        res = f"<resource>{resource}</resource>" if resource else ""
        self.write(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>")
        iq = await self.expect(lambda e: e.get("id") == "bind", count=False)
        self.jid = iq.findtext(".//{urn:ietf:params:xml:ns:xmpp-bind}jid") or ""
        assert self.jid, etree.tostring(iq)
        return self.jid

    async def enable(self, resume: bool = True) -> etree._Element:
        attr = " resume='true'" if resume else ""
        self.write(f"<enable xmlns='{SM}'{attr}/>")
        enabled = await self.expect(lambda e: e.tag in (f"{{{SM}}}enabled", f"{{{SM}}}failed"))
        self.received = 0  # counting starts with <enabled/>
        self.resume_id = enabled.get("id")
        return enabled

    async def resume(self, previd: str, h: int) -> etree._Element:
        self.write(f"<resume xmlns='{SM}' previd='{previd}' h='{h}'/>")
        return await self.expect(lambda e: e.tag in (f"{{{SM}}}resumed", f"{{{SM}}}failed"))

    def _reset(self) -> None:
        self._parser = etree.XMLPullParser(events=("start", "end"), resolve_entities=False, no_network=True)
        self._depth = 0

    async def _read(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self._parser.feed(data)
                for event, el in self._parser.read_events():
                    if event == "start":
                        self._depth += 1
                        continue
                    self._depth -= 1
                    if self._depth == 1:
                        if el.tag in STANZAS:
                            self.received += 1
                        self.inbox.put_nowait(el)
                        parent = el.getparent()
                        if parent is not None:
                            parent.remove(el)
        except (ConnectionError, etree.XMLSyntaxError):
            pass
        finally:
            self.closed.set()

    def write(self, data: str) -> None:
        self.writer.write(data.encode())

    def send_stanza(self, xml: str) -> None:
        self.sent += 1
        self.write(xml)

    async def expect(self, pred: Callable[[etree._Element], bool], timeout: float = 5, *, count: bool = True) -> etree._Element:
        """The next element matching ``pred``; others are kept in ``skipped``."""
        async def go() -> etree._Element:
            while True:
                el = await self.inbox.get()
                if pred(el):
                    return el
                self.skipped.append(el)

        return await asyncio.wait_for(go(), timeout)

    async def messages(self, n: int, timeout: float = 5) -> list[etree._Element]:
        out = []
        for _ in range(n):
            out.append(await self.expect(lambda e: e.tag == f"{{{CLIENT}}}message", timeout))
        return out

    async def drain(self, wait: float = 0.2) -> list[etree._Element]:
        """Everything that arrives within ``wait`` seconds."""
        out: list[etree._Element] = []
        while True:
            try:
                out.append(await asyncio.wait_for(self.inbox.get(), wait))
            except TimeoutError:
                return out

    def ack(self) -> None:
        self.write(f"<a xmlns='{SM}' h='{self.received}'/>")

    def cut(self) -> None:
        """Vanish without a close, like a phone losing its network."""
        self.writer.transport.abort()
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.write("</stream:stream>")
            try:
                await asyncio.wait_for(self.closed.wait(), 3)
            except TimeoutError:
                pass
            self.writer.close()
        if self._task is not None:
            self._task.cancel()

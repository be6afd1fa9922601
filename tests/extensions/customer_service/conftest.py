"""Fixtures of the customer-service tests: the repository on memory/SQLite/MariaDB, a server on a fake clock, clients that keep what they receive."""
from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lxml import etree

from tests.helpers import FakeClock, add_user, make_config, slix, slix_close
from tests.storage_fixtures import REPOSITORY_BACKENDS, open_database
from xmppd.app import Server
from xmppd_extensions.customer_service import slixmpp_plugin
from xmppd_extensions.customer_service.feature import CustomerService
from xmppd_extensions.customer_service.protocol import NS
from xmppd_extensions.customer_service.repository import MemoryCsRepository, SqlCsRepository

LOCATIONS = [CustomerService.migrations]
SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parents[3] / "schemas" / "cs-0.xsd")))


def cs_database(request: pytest.FixtureRequest, backend: str) -> Any:
    """A database with every installed feature's schema (the shared storage fixtures)."""
    return open_database(request, backend)


@pytest_asyncio.fixture(params=REPOSITORY_BACKENDS)
async def cs_repo(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryCsRepository()
    else:
        async with cs_database(request, request.param) as database:
            yield SqlCsRepository(database)


ADMIN = "boss"


class Site:
    """A running server with the cs component, its fake clock, and the clients a test opened."""

    def __init__(self, tmp_path: Path, clock: FakeClock, overrides: tuple[str, ...]) -> None:
        self.tmp_path = tmp_path
        self.clock = clock
        self.overrides = overrides
        self.server: Server | None = None
        self.clients: list[Any] = []

    @property
    def cs(self) -> CustomerService:
        assert self.server is not None
        return self.server.features["cs"]

    @property
    def domain(self) -> str:
        return self.cs.domain

    def queue(self, name: str) -> str:
        return f"{name}@{self.domain}"

    async def start(self) -> None:
        cfg = make_config(self.tmp_path, f"server.admins=['{ADMIN}@localhost']", "cs.timer_interval=0", *self.overrides)
        self.server = Server(cfg, clock=self.clock)
        await self.server.start()

    async def stop(self) -> None:
        """The server first (as an operator's restart), then the clients it disconnected."""
        if self.server is not None:
            await self.server.stop()
            self.server = None
        for c in self.clients:
            c.xmpp.abort()
        self.clients.clear()

    async def user(self, name: str) -> str:
        assert self.server is not None
        return await add_user(self.server, name)

    async def client(self, name: str, lang: str = "en") -> "Client":
        assert self.server is not None
        c = Client(await slix(self.server, f"{name}@localhost", lang=lang))
        self.clients.append(c)
        c.xmpp.send_presence()  # available, like any chat client: messages to the bare JID reach it
        await c.sync()
        return c

    async def queue_with(self, name: str, agents: dict[str, str], supervisors: tuple[str, ...] = (), **attrs: Any) -> "Client":
        """An admin client that created queue ``name`` with agents {account: nick}."""
        admin = await self.client(ADMIN)
        await admin.cs.put_queue(self.domain, name, display_name=name.title(), **attrs)
        for acct, nick in agents.items():
            await admin.cs.set_member(self.queue(name), f"{acct}@localhost", "agent", nick)
        for acct in supervisors:
            await admin.cs.set_member(self.queue(name), f"{acct}@localhost", "supervisor")
        return admin


class Client:
    """A slixmpp client that keeps every stanza it receives, serialised, and the messages."""

    def __init__(self, xmpp: Any) -> None:
        self.xmpp = xmpp
        self.jid = str(xmpp.boundjid.bare)
        self.raw: list[str] = []
        self.messages: list[etree._Element] = []
        self._arrived = asyncio.Event()
        self.cs = slixmpp_plugin.register_on(xmpp)
        xmpp.add_filter("in", self._in)

    def _in(self, stanza: Any) -> Any:
        text = ET.tostring(stanza.xml, encoding="unicode")  # namespaces spelled out, unlike str()
        self.raw.append(text)
        if stanza.xml.tag.endswith("}message"):
            self.messages.append(etree.fromstring(text))
            self._arrived.set()
        return stanza

    async def next(self, pred: Callable[[etree._Element], bool] = lambda m: True, timeout: float = 5) -> etree._Element:
        """The first unconsumed message matching ``pred`` (waits for it)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            for i, m in enumerate(self.messages):
                if pred(m):
                    del self.messages[i]
                    return m
            left = end - loop.time()
            if left <= 0:
                raise AssertionError(f"{self.jid}: no matching message; have {[etree.tostring(m) for m in self.messages]}")
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def cs_event(self, name: str, timeout: float = 5, **attrs: str) -> etree._Element:
        """The next message with the cs payload ``name`` (and these attribute values); returns the payload."""

        def match(m: etree._Element) -> bool:
            el = m.find(f"{{{NS}}}{name}")
            return el is not None and all(el.get(k) == v for k, v in attrs.items())

        m = await self.next(match, timeout)
        el = m.find(f"{{{NS}}}{name}")
        el.set("_from", m.get("from") or "")
        el.set("_body", m.findtext("{jabber:client}body") or "")
        return el

    async def body_from(self, frm: str, timeout: float = 5) -> etree._Element:
        return await self.next(lambda m: m.get("from") == frm and m.find("{jabber:client}body") is not None and len(m) >= 1, timeout)

    def say(self, to: str, body: str) -> None:
        self.xmpp.send_message(mto=to, mbody=body, mtype="chat")

    async def sync(self) -> None:
        """A round trip: everything this client sent before has been processed."""
        iq = self.xmpp.make_iq_get(ito="localhost", queryxmlns="http://jabber.org/protocol/disco#info")
        await iq.send(timeout=5)

    async def announce(self, queue: str, show: str | None = None) -> None:
        self.cs.announce(queue, show)
        await self.sync()

    def cs_payloads(self) -> list[etree._Element]:
        out = []
        for text in self.raw:
            out.extend(etree.fromstring(text).iter(f"{{{NS}}}*"))
        return out

    async def close(self) -> None:
        await slix_close(self.xmpp)


def assert_valid(elements: list[etree._Element]) -> None:
    """Every top-level cs element the server sent validates against schemas/cs-0.xsd."""
    for el in elements:
        parent = el.getparent()
        if parent is not None and parent.tag.startswith(f"{{{NS}}}"):
            continue
        copy = etree.fromstring(etree.tostring(el))
        for k in ("_from", "_body"):
            copy.attrib.pop(k, None)
        assert SCHEMA.validate(copy), f"{etree.tostring(copy)!r}: {SCHEMA.error_log}"


@asynccontextmanager
async def open_site(tmp_path: Path, *overrides: str, clock: FakeClock | None = None) -> AsyncIterator[Site]:
    s = Site(tmp_path, clock or FakeClock(), overrides)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with open_site(tmp_path) as s:
        yield s

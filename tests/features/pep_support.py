"""PEP test helpers: slixmpp clients with +notify interests whose pubsub events are queued."""
from __future__ import annotations

import asyncio
from typing import Any

from lxml import etree

from xmppd.app import Server
from xmppd.features.roster.repository import RosterItem
from xmppd.jid import JID

from ..helpers import PASSWORD, add_user, slix

EVENT = "http://jabber.org/protocol/pubsub#event"
PUBSUB = "http://jabber.org/protocol/pubsub"
WAIT = 5.0
PLUGINS = ("xep_0030", "xep_0060", "xep_0163", "xep_0115")


async def befriend(server: Server, a: str, b: str, groups: tuple[str, ...] = ()) -> None:
    """Mutual presence subscription between the bare JIDs ``a`` and ``b`` (through the roster feature)."""
    roster = server.features["roster"]
    for owner, contact in ((a, b), (b, a)):
        await roster.update(owner, contact, lambda _old, c=contact: RosterItem(c, groups=groups, subscription="both"))


class PepClient:
    """A logged-in slixmpp client with caps and ``+notify`` interests; headline events are queued."""

    def __init__(self, server: Server, client: Any) -> None:
        self.server = server
        self.c = client
        self.events: asyncio.Queue[etree._Element] = asyncio.Queue()
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        client.register_handler(Callback("pep-events", MatchXPath(f"{{jabber:client}}message/{{{EVENT}}}event"), self._message))

    def _message(self, msg: Any) -> None:
        xml = etree.fromstring(str(msg))
        if xml.find(f"{{{EVENT}}}event") is not None:
            self.events.put_nowait(xml)

    @classmethod
    async def login(cls, server: Server, name: str, interests: tuple[str, ...] = (), *, create: bool = True,
                    plugins: tuple[str, ...] = (), presence: bool = True) -> "PepClient":
        jid = await add_user(server, name) if create else f"{name}@{server.domain}"
        client = await slix(server, jid, PASSWORD, plugins=PLUGINS + plugins)
        self = cls(server, client)
        for ns in interests:
            client.plugin["xep_0163"].add_interest(ns)
        await client.plugin["xep_0115"].update_caps(broadcast=False)
        if presence:
            client.send_presence()
            if interests:
                await self.learnt(interests[0])
        return self

    @property
    def jid(self) -> str:
        return str(self.c.boundjid)

    @property
    def bare(self) -> str:
        return self.c.boundjid.bare

    async def learnt(self, ns: str) -> None:
        """Until the server knows (from caps) that this session wants ``ns`` notifications."""
        caps = self.server.features["caps"].cache
        for _ in range(500):
            session = self.server.sessions.get(JID.parse(self.jid))
            if session is not None and caps.supports(session, ns + "+notify"):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the server never learnt {ns}+notify for {self.jid}")

    async def event(self, node: str | None = None) -> etree._Element:
        """The next pubsub event message (about ``node``)."""
        while True:
            msg = await asyncio.wait_for(self.events.get(), WAIT)
            ev = msg.find(f"{{{EVENT}}}event")
            child = ev[0]
            if node is None or child.get("node") == node:
                return msg

    async def no_event(self, quiet: float = 0.3) -> None:
        try:
            msg = await asyncio.wait_for(self.events.get(), quiet)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected event: {etree.tostring(msg)!r}")

    async def iq(self, typ: str, xml: str, to: str | None = None) -> etree._Element:
        from slixmpp import ET

        iq = self.c.make_iq_set(ito=to) if typ == "set" else self.c.make_iq_get(ito=to)
        iq.append(ET.fromstring(xml))
        result = await iq.send(timeout=WAIT)
        return etree.fromstring(str(result))

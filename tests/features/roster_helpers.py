"""RFC 6121 test helpers: slixmpp clients that record roster pushes and presence."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET

from xmppd.app import Server

from ..helpers import add_user, slix

NS = "jabber:iq:roster"
WAIT = 5.0
QUIET = 0.3  # how long "nothing arrives" is watched


def kind(p: Any) -> str:
    """The presence type ('available' when absent; slixmpp's p['type'] reports <show/> instead)."""
    return p.xml.get("type") or "available"


class Watch:
    """A logged-in slixmpp client whose roster pushes and presence stanzas are queued."""

    def __init__(self, client: Any) -> None:
        self.c = client
        self.jid = str(client.boundjid)
        self.bare = client.boundjid.bare
        self.pushes: asyncio.Queue[Any] = asyncio.Queue()
        self.presence: asyncio.Queue[Any] = asyncio.Queue()
        client.auto_authorize = None  # decide ourselves
        client.auto_subscribe = False
        client.add_event_handler("roster_update", self._roster)
        client.add_event_handler("presence", lambda p: self.presence.put_nowait(p))

    def _roster(self, iq: Any) -> None:
        if iq["type"] == "set":
            self.pushes.put_nowait(iq)

    async def push(self, jid: str | None = None) -> dict[str, Any]:
        """The next roster push (for ``jid``): {'jid', 'subscription', 'ask', 'name', 'groups', 'approved', 'ver'}."""
        while True:
            iq = await asyncio.wait_for(self.pushes.get(), WAIT)
            item = iq.xml.find(f"{{{NS}}}query/{{{NS}}}item")
            got = {
                "jid": item.get("jid"),
                "subscription": item.get("subscription"),
                "ask": item.get("ask"),
                "approved": item.get("approved"),
                "name": item.get("name"),
                "groups": sorted(g.text for g in item.findall(f"{{{NS}}}group")),
                "ver": iq.xml.find(f"{{{NS}}}query").get("ver"),
            }
            if jid is None or got["jid"] == jid:
                return got

    async def no_push(self) -> None:
        await asyncio.sleep(QUIET)
        assert self.pushes.empty(), [str(p) for p in self.pushes._queue]  # type: ignore[attr-defined]

    async def expect(self, frm: str, typ: str = "available", pred: Callable[[Any], bool] | None = None) -> Any:
        """The next presence from ``frm`` (full or bare JID) of type ``typ``; others are skipped."""

        async def go() -> Any:
            while True:
                p = await self.presence.get()
                f = str(p["from"])
                if (f == frm or p["from"].bare == frm and "/" not in frm) and kind(p) == typ and (pred is None or pred(p)):
                    return p

        return await asyncio.wait_for(go(), WAIT)

    async def none_from(self, frm: str, typ: str | None = None) -> None:
        """No presence of ``typ`` (default: available or unavailable) from ``frm`` arrives."""
        await asyncio.sleep(QUIET)
        bad = [p for p in self.presence._queue if p["from"].bare == frm.split("/")[0] and (kind(p) in ("available", "unavailable") if typ is None else kind(p) == typ)]  # type: ignore[attr-defined]
        assert not bad, [str(p) for p in bad]

    def drain(self) -> None:
        while not self.presence.empty():
            self.presence.get_nowait()
        while not self.pushes.empty():
            self.pushes.get_nowait()

    # -- actions
    def send(self, to: str, typ: str | None = None, **kw: Any) -> None:
        self.c.send_presence(pto=to, ptype=typ, **kw)

    async def roster_iq(self, typ: str, xml: str, to: str | None = None) -> Any:
        iq = self.c.Iq(stype=typ)
        if to:
            iq["to"] = to
        iq.xml.append(ET.fromstring(xml))
        return await iq.send(timeout=WAIT)

    async def roster_error(self, typ: str, xml: str, to: str | None = None) -> tuple[str, str]:
        try:
            await self.roster_iq(typ, xml, to)
        except IqError as exc:
            return exc.iq["error"]["condition"], exc.iq["error"]["text"]
        raise AssertionError("the roster request succeeded")

    async def get_roster(self, ver: str | None = None) -> Any:
        attr = "" if ver is None else f" ver='{ver}'"
        return await self.roster_iq("get", f"<query xmlns='{NS}'{attr}/>")

    async def add(self, jid: str, name: str | None = None, groups: tuple[str, ...] = ()) -> None:
        n = f" name='{name}'" if name else ""
        g = "".join(f"<group>{x}</group>" for x in groups)
        await self.roster_iq("set", f"<query xmlns='{NS}'><item jid='{jid}'{n}>{g}</item></query>")

    async def remove(self, jid: str) -> None:
        await self.roster_iq("set", f"<query xmlns='{NS}'><item jid='{jid}' subscription='remove'/></query>")


async def login(server: Server, name: str, *, roster: bool = True, available: bool = True, create: bool = True) -> Watch:
    jid = await add_user(server, name) if create else f"{name}@{server.domain}"
    w = Watch(await slix(server, jid))
    if roster:
        await w.get_roster()
    if available:
        w.c.send_presence()
        await w.expect(w.jid)  # §4.2.2: the server reflects initial presence to the sender
    return w


def items_of(iq: Any) -> dict[str, dict[str, Any]]:
    q = iq.xml.find(f"{{{NS}}}query")
    if q is None:
        return {}
    return {
        i.get("jid"): {
            "subscription": i.get("subscription"),
            "ask": i.get("ask"),
            "name": i.get("name"),
            "groups": sorted(g.text for g in i.findall(f"{{{NS}}}group")),
        }
        for i in q.findall(f"{{{NS}}}item")
    }


async def subscribe_both(a: Watch, b: Watch) -> None:
    """a and b end up with subscription 'both' (each approves the other's request)."""
    a.send(b.bare, "subscribe")
    await b.expect(a.bare, "subscribe")
    b.send(a.bare, "subscribed")
    await a.expect(b.bare, "subscribed")
    b.send(a.bare, "subscribe")
    await a.expect(b.bare, "subscribe")
    a.send(b.bare, "subscribed")
    await b.expect(a.bare, "subscribed")
    a.drain()
    b.drain()

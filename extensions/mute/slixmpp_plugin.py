"""Group mute (urn:xmppd:mute:0): a slixmpp client plugin (stanza classes and calls).

Register it with ``client.register_plugin("mute", module=slixmpp_plugin)``; then, on a room,
``await client.plugin["mute"].mute(room, nick="alice", seconds=600, reason="spam")``, ``unmute``,
``mute_many(room, [{"nick": …}, {"jid": …}])``, ``mute_all``, ``unmute_all``, ``list(room)``,
``status(room)``, ``slow_mode(room, seconds)``, ``get_slow_mode(room)``; on the server (admins)
``platform_mute(jid, ...)``, ``platform_unmute``, ``platform_list()``, ``platform_status()``,
``audit(...)``; timed bans (XEP-0045 admin iq with our ``<ban/>``) ``ban(room, jid, seconds=…)``
and ``bans(room)``. Notices raise the ``mute_notice`` event. A refused message's error carries
``error["mute_muted"]``, ``error["mute_all_muted"]``, ``error["mute_platform_muted"]`` or
``error["mute_slow_mode"]``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from slixmpp import Iq, Message
from slixmpp.stanza import Error
from slixmpp.xmlstream import ElementBase
from slixmpp.xmlstream.matcher import StanzaPath

from ..slixmpp_base import IqPlugin, element, register

NS = "urn:xmppd:mute:0"


# The protocol's elements (schemas/mute-0.xsd): name, plugin attribute, attributes, text children.
MuteRequest = element(NS, "mute", "mute_mute", "jid nick seconds reason", "reason")
#: One member of a batch mute (``<mute><member nick='…'/><member jid='…'/></mute>``).
Member = element(NS, "member", "member", "jid nick")
SlowMode = element(NS, "slow-mode", "mute_slow_mode", "seconds wait room")
Appeal = element(NS, "appeal", "mute_appeal", "ticket reason", "reason")
UnmuteRequest = element(NS, "unmute", "mute_unmute", "jid nick")
MuteAllRequest = element(NS, "mute-all", "mute_all", "reason", "reason")
UnmuteAllRequest = element(NS, "unmute-all", "mute_unmute_all", "")
Item = element(NS, "item", "mute_item", "jid nick by since until remaining source reason", "reason")
All = element(NS, "all", "all", "by since reason", "reason")
RoomState = element(NS, "room", "room", "by since until remaining reason", "reason")
PlatformState = element(NS, "platform", "platform", "since until remaining reason", "reason")
Status = element(NS, "status", "mute_status", "jid nick muted")
Entry = element(NS, "entry", "entry", "id at actor action room scope target seconds until reason", "reason")
Notice = element(NS, "notice", "mute_notice", "action scope nick jid actor-nick actor seconds until reason", "reason")
Muted = element(NS, "muted", "mute_muted", "room until by reason", "reason")
AllMuted = element(NS, "all-muted", "mute_all_muted", "room since reason", "reason")
PlatformMuted = element(NS, "platform-muted", "mute_platform_muted", "until reason", "reason")


class MuteList(ElementBase):
    name = "list"
    namespace = NS
    plugin_attrib = "mute_list"
    interfaces: set[str] = set()

    def members(self) -> list[ElementBase]:
        return [i for i in self.iterables if isinstance(i, Item)]


class Audit(ElementBase):
    name = "audit"
    namespace = NS
    plugin_attrib = "mute_audit"
    interfaces = {"room", "scope", "jid", "max", "before", "more"}

    def entries(self) -> list[ElementBase]:
        return [e for e in self.iterables if isinstance(e, Entry)]


class mute(IqPlugin):  # noqa: N801 -- slixmpp finds plugins by their name
    """urn:xmppd:mute:0 client side."""

    name = "mute"
    description = "xmppd group mute (urn:xmppd:mute:0)"

    def plugin_init(self) -> None:
        register(Iq, MuteRequest, UnmuteRequest, MuteAllRequest, UnmuteAllRequest, MuteList, Status, Audit, SlowMode, Appeal, Item)
        register(MuteRequest, Member, iterable=True)
        register(MuteList, Item, iterable=True)
        register(MuteList, All)
        register(Status, RoomState, All, PlatformState)
        register(Audit, Entry, iterable=True)
        register(Message, Notice)
        register(Error, Muted, AllMuted, PlatformMuted, SlowMode)
        self.forward("mute_notice", StanzaPath("message/mute_notice"))

    async def _iq(self, to: Any, typ: str, plugin: str, attrs: dict[str, Any], reason: str | None = None,
                  lang: str | None = None, timeout: float = 10) -> Iq:
        return await self.ask(to, typ, plugin, {**attrs, "reason": reason or None}, lang=lang, timeout=timeout)

    # ---------------------------------------------------------------- rooms

    async def mute(self, room: Any, *, jid: Any = None, nick: str | None = None, seconds: int | None = None,
                   reason: str | None = None, lang: str | None = None) -> ElementBase:
        res = await self._iq(room, "set", "mute_mute", {"jid": jid, "nick": nick, "seconds": seconds}, reason, lang)
        return res["mute_item"]

    async def mute_many(self, room: Any, members: list[dict[str, Any]], *, seconds: int | None = None,
                        reason: str | None = None, lang: str | None = None) -> list[ElementBase]:
        """Mute several members in one request: ``members`` is a list of ``{"nick": …}`` or
        ``{"jid": …}``; all or none are muted. Returns the mutes."""
        iq = self.xmpp.make_iq(ito=room, itype="set")
        req = iq["mute_mute"]
        if seconds is not None:
            req["seconds"] = str(seconds)
        for member in members:
            m = Member()
            for k, v in member.items():
                m[k] = str(v)
            req.append(m)
        if reason:
            req["reason"] = reason
        if lang:
            iq["lang"] = lang
        res = await iq.send(timeout=10)
        return res["mute_list"].members()

    async def slow_mode(self, room: Any, seconds: int) -> None:
        """Set the room's slow mode (owners and admins); 0 turns it off."""
        await self._iq(room, "set", "mute_slow_mode", {"seconds": seconds})

    async def get_slow_mode(self, room: Any) -> ElementBase:
        """The room's slow mode: ``seconds`` (0: off) and, for a member it holds, ``wait``."""
        return (await self._iq(room, "get", "mute_slow_mode", {}))["mute_slow_mode"]

    async def unmute(self, room: Any, *, jid: Any = None, nick: str | None = None, lang: str | None = None) -> None:
        await self._iq(room, "set", "mute_unmute", {"jid": jid, "nick": nick}, lang=lang)

    async def mute_all(self, room: Any, *, reason: str | None = None, lang: str | None = None) -> None:
        await self._iq(room, "set", "mute_all", {}, reason, lang)

    async def unmute_all(self, room: Any, *, lang: str | None = None) -> None:
        await self._iq(room, "set", "mute_unmute_all", {}, lang=lang)

    async def list(self, room: Any) -> MuteList:
        return (await self._iq(room, "get", "mute_list", {}))["mute_list"]

    async def status(self, room: Any, *, jid: Any = None, nick: str | None = None) -> ElementBase:
        return (await self._iq(room, "get", "mute_status", {"jid": jid, "nick": nick}))["mute_status"]

    # ---------------------------------------------------------------- server (admins)

    async def platform_mute(self, jid: Any, *, seconds: int | None = None, reason: str | None = None) -> ElementBase:
        res = await self._iq(self.server, "set", "mute_mute", {"jid": jid, "seconds": seconds}, reason)
        return res["mute_item"]

    async def platform_unmute(self, jid: Any) -> None:
        await self._iq(self.server, "set", "mute_unmute", {"jid": jid})

    async def platform_list(self) -> MuteList:
        return (await self._iq(self.server, "get", "mute_list", {}))["mute_list"]

    async def platform_status(self, jid: Any = None) -> ElementBase:
        return (await self._iq(self.server, "get", "mute_status", {"jid": jid}))["mute_status"]

    async def appeal(self, text: str) -> str:
        """A platform-muted account appeals to the server's admins; the customer-service ticket's id."""
        return (await self._iq(self.server, "set", "mute_appeal", {}, text))["mute_appeal"]["ticket"]

    async def audit(self, *, room: Any = None, jid: Any = None, platform: bool = False, max: int | None = None,
                    before: int | None = None) -> Audit:
        attrs = {"room": room, "jid": jid, "scope": "platform" if platform else None, "max": max, "before": before}
        return (await self._iq(self.server, "get", "mute_audit", attrs))["mute_audit"]

    # -- timed bans: XEP-0045 §9.1 / §9.5 with <ban xmlns='urn:xmppd:mute:0'/> in the item

    async def ban(self, room: Any, jid: Any, *, seconds: int | None = None, reason: str | None = None) -> None:
        """Ban ``jid`` from the room (owners and admins); for ``seconds`` when given, else until lifted."""
        iq = self.xmpp.make_iq_set(ito=room)
        inner = f"<reason>{escape(reason)}</reason>" if reason else ""
        if seconds is not None:
            inner += f"<ban xmlns='{NS}' seconds='{int(seconds)}'/>"
        iq.append(ET.fromstring(f"<query xmlns='{_MUC_ADMIN}'><item affiliation='outcast' jid={quoteattr(str(jid))}>"
                                f"{inner}</item></query>"))
        await iq.send()

    async def bans(self, room: Any) -> dict[str, dict[str, str | None]]:
        """The room's ban list: JID -> {reason, until, remaining, by} (the last three for timed bans)."""
        iq = self.xmpp.make_iq_get(ito=room)
        iq.append(ET.fromstring(f"<query xmlns='{_MUC_ADMIN}'><item affiliation='outcast'/></query>"))
        out: dict[str, dict[str, str | None]] = {}
        for item in (await iq.send()).xml.iter(f"{{{_MUC_ADMIN}}}item"):
            end = item.find(f"{{{NS}}}ban")
            out[item.get("jid", "")] = {"reason": item.findtext(f"{{{_MUC_ADMIN}}}reason"),
                                         **{k: end.get(k) if end is not None else None for k in ("until", "remaining", "by")}}
        return out


_MUC_ADMIN = "http://jabber.org/protocol/muc#admin"

__all__ = ["NS", "mute"]

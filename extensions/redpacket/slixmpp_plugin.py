"""Red packets (urn:xmppd:redpacket:0): a slixmpp client plugin (stanza classes and calls).

Register it with ``client.register_plugin("redpacket", module=slixmpp_plugin)``; then
``await client.plugin["redpacket"].send_packet(...)``, ``open_packet(id)``, ``balance()``,
``history()``, ``details(id)``, ``records("sent")``, ``transfer(to, amount, client_id=...)``,
``accept(id)``. Packet messages raise the ``redpacket`` event, transfers ``redpacket_transfer``,
server notices ``redpacket_grabbed``, ``redpacket_finished``, ``redpacket_refunded`` and
``redpacket_accepted``.
Results are returned as the plugin's stanza objects (dict-like).
"""

from __future__ import annotations

from typing import Any

from slixmpp import Iq, Message
from slixmpp.plugins import BasePlugin
from slixmpp.xmlstream import ElementBase, register_stanza_plugin
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

NS = "urn:xmppd:redpacket:0"


class Send(ElementBase):
    name = "send"
    namespace = NS
    plugin_attrib = "rp_send"
    interfaces = {"kind", "total", "each", "count", "to", "exclusive", "client-id", "greeting"}
    sub_interfaces = {"greeting"}


class Sent(ElementBase):
    name = "sent"
    namespace = NS
    plugin_attrib = "rp_sent"
    interfaces = {"id", "balance", "total", "expires", "retry"}


class Open(ElementBase):
    name = "open"
    namespace = NS
    plugin_attrib = "rp_open"
    interfaces = {"id"}


class Opened(ElementBase):
    name = "opened"
    namespace = NS
    plugin_attrib = "rp_opened"
    interfaces = {"id", "amount", "balance", "remaining"}


class Balance(ElementBase):
    name = "balance"
    namespace = NS
    plugin_attrib = "rp_balance"
    interfaces = {"amount", "currency", "precision"}


class Entry(ElementBase):
    name = "entry"
    namespace = NS
    plugin_attrib = "entry"
    interfaces = {"id", "kind", "amount", "balance", "at", "packet", "reason"}


class History(ElementBase):
    name = "history"
    namespace = NS
    plugin_attrib = "rp_history"
    interfaces = {"max", "before", "more"}


class Record(ElementBase):
    name = "record"
    namespace = NS
    plugin_attrib = "record"
    interfaces = {"id", "packet", "amount", "at"}


class Records(ElementBase):
    name = "records"
    namespace = NS
    plugin_attrib = "rp_records"
    interfaces = {"type", "max", "before", "total", "count", "more"}


class Grab(ElementBase):
    name = "grab"
    namespace = NS
    plugin_attrib = "grab"
    interfaces = {"by", "amount", "at", "best"}


class Details(ElementBase):
    name = "packet"
    namespace = NS
    plugin_attrib = "rp_packet"
    interfaces = {"id", "sender", "kind", "to", "total", "count", "status", "remaining-count", "remaining-amount",
                  "created", "expires", "currency", "exclusive", "refunded", "best-luck", "greeting", "transfer"}
    sub_interfaces = {"greeting"}


class RedPacketMessage(ElementBase):
    name = "redpacket"
    namespace = NS
    plugin_attrib = "redpacket"
    interfaces = {"id", "sender", "kind", "count", "each", "greeting", "expires", "exclusive"}


class Grabbed(ElementBase):
    name = "grabbed"
    namespace = NS
    plugin_attrib = "rp_grabbed"
    interfaces = {"id", "by", "amount", "remaining"}


class Finished(ElementBase):
    name = "finished"
    namespace = NS
    plugin_attrib = "rp_finished"
    interfaces = {"id", "best-luck", "amount"}


class Refunded(ElementBase):
    name = "refunded"
    namespace = NS
    plugin_attrib = "rp_refunded"
    interfaces = {"id", "amount"}


class SendTransfer(ElementBase):
    name = "send-transfer"
    namespace = NS
    plugin_attrib = "rp_send_transfer"
    interfaces = {"to", "amount", "client-id", "note"}
    sub_interfaces = {"note"}


class Transferred(ElementBase):
    name = "transferred"
    namespace = NS
    plugin_attrib = "rp_transferred"
    interfaces = {"id", "balance", "amount", "expires", "retry"}


class Accept(ElementBase):
    name = "accept"
    namespace = NS
    plugin_attrib = "rp_accept"
    interfaces = {"id"}


class Accepted(ElementBase):
    """The result of <accept/> (id, amount, balance) and the sender's notice (id, by, amount)."""

    name = "accepted"
    namespace = NS
    plugin_attrib = "rp_accepted"
    interfaces = {"id", "by", "amount", "balance"}


class TransferMessage(ElementBase):
    name = "transfer"
    namespace = NS
    plugin_attrib = "rp_transfer"
    interfaces = {"id", "sender", "amount", "expires", "note"}


class redpacket(BasePlugin):  # noqa: N801 -- slixmpp finds plugins by their name
    name = "redpacket"
    description = "xmppd red packets (urn:xmppd:redpacket:0)"
    dependencies: set[str] = set()

    def plugin_init(self) -> None:
        for cls in (Send, Sent, Open, Opened, Balance, History, Records, Details, SendTransfer, Transferred, Accept, Accepted):
            register_stanza_plugin(Iq, cls)
        register_stanza_plugin(History, Entry, iterable=True)
        register_stanza_plugin(Records, Record, iterable=True)
        register_stanza_plugin(Details, Grab, iterable=True)
        for cls, event in ((RedPacketMessage, "redpacket"), (Grabbed, "redpacket_grabbed"),
                           (Finished, "redpacket_finished"), (Refunded, "redpacket_refunded"),
                           (TransferMessage, "redpacket_transfer"), (Accepted, "redpacket_accepted")):
            register_stanza_plugin(Message, cls)
            self.xmpp.register_handler(
                Callback(f"RedPacket {event}", StanzaPath(f"message/{cls.plugin_attrib}"),
                         lambda msg, event=event: self.xmpp.event(event, msg))
            )

    def plugin_end(self) -> None:
        for event in ("redpacket", "redpacket_grabbed", "redpacket_finished", "redpacket_refunded",
                      "redpacket_transfer", "redpacket_accepted"):
            self.xmpp.remove_handler(f"RedPacket {event}")

    @property
    def server(self) -> str:
        return self.xmpp.boundjid.domain

    async def send_packet(self, to: str, *, client_id: str, kind: str = "lucky", total: int | None = None,
                          each: int | None = None, count: int = 1, greeting: str | None = None,
                          exclusive: str | None = None, lang: str | None = None, timeout: float = 10) -> Sent:
        iq = self.xmpp.make_iq_set(ito=self.server)
        s = iq["rp_send"]
        s["kind"] = kind
        s["to"] = to
        s["count"] = str(count)
        s["client-id"] = client_id
        if total is not None:
            s["total"] = str(total)
        if each is not None:
            s["each"] = str(each)
        if greeting is not None:
            s["greeting"] = greeting
        if exclusive is not None:
            s["exclusive"] = exclusive
        if lang is not None:
            iq["lang"] = lang
        return (await iq.send(timeout=timeout))["rp_sent"]

    async def transfer(self, to: str, amount: int, *, client_id: str, note: str | None = None,
                       lang: str | None = None, timeout: float = 10) -> Transferred:
        """转账: ``amount`` minor units to the contact ``to``, who accepts it."""
        iq = self.xmpp.make_iq_set(ito=self.server)
        t = iq["rp_send_transfer"]
        t["to"] = to
        t["amount"] = str(amount)
        t["client-id"] = client_id
        if note is not None:
            t["note"] = note
        if lang is not None:
            iq["lang"] = lang
        return (await iq.send(timeout=timeout))["rp_transferred"]

    async def accept(self, transfer_id: str, timeout: float = 10) -> Accepted:
        iq = self.xmpp.make_iq_set(ito=self.server)
        iq["rp_accept"]["id"] = transfer_id
        return (await iq.send(timeout=timeout))["rp_accepted"]

    async def open_packet(self, packet_id: str, timeout: float = 10) -> Opened:
        iq = self.xmpp.make_iq_set(ito=self.server)
        iq["rp_open"]["id"] = packet_id
        return (await iq.send(timeout=timeout))["rp_opened"]

    async def balance(self, timeout: float = 10) -> int:
        iq = self.xmpp.make_iq_get(ito=self.server)
        iq.enable("rp_balance")
        return int((await iq.send(timeout=timeout))["rp_balance"]["amount"])

    async def history(self, max: int = 20, before: int | None = None, timeout: float = 10) -> History:
        iq = self.xmpp.make_iq_get(ito=self.server)
        iq["rp_history"]["max"] = str(max)
        if before is not None:
            iq["rp_history"]["before"] = str(before)
        return (await iq.send(timeout=timeout))["rp_history"]

    async def records(self, which: str = "received", max: int = 20, timeout: float = 10) -> Records:
        iq = self.xmpp.make_iq_get(ito=self.server)
        iq["rp_records"]["type"] = which
        iq["rp_records"]["max"] = str(max)
        return (await iq.send(timeout=timeout))["rp_records"]

    async def details(self, packet_id: str, timeout: float = 10) -> Details:
        iq = self.xmpp.make_iq_get(ito=self.server)
        iq["rp_packet"]["id"] = packet_id
        return (await iq.send(timeout=timeout))["rp_packet"]


def entries(stanza: Any, kind: type) -> list[Any]:
    """The iterable children of ``kind`` in a result (entries, records, grabs)."""
    return [item for item in stanza if isinstance(item, kind)]

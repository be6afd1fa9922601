"""Red packets (urn:xmppd:redpacket:0): a slixmpp client plugin (stanza classes and calls).

Register it with ``client.register_plugin("redpacket", module=slixmpp_plugin)``; then
``await client.plugin["redpacket"].send_packet(...)``, ``open_packet(id)``, ``balance()``,
``history()``, ``details(id)``, ``records("sent")``, ``transfer(to, amount, client_id=...)``,
``accept(id)``, ``decline(id)``. Packet messages raise the ``redpacket`` event, transfers ``redpacket_transfer``,
server notices ``redpacket_grabbed``, ``redpacket_finished``, ``redpacket_refunded``,
``redpacket_accepted`` and ``redpacket_declined``.
Results are returned as the plugin's stanza objects (dict-like).
"""

from __future__ import annotations

from typing import Any

from slixmpp import Iq, Message
from slixmpp.xmlstream.matcher import StanzaPath

from ..slixmpp_base import IqPlugin, element, register

NS = "urn:xmppd:redpacket:0"


# The protocol's elements (schemas/redpacket-0.xsd): name, plugin attribute, attributes, text children.
Send = element(NS, "send", "rp_send", "kind total each count to exclusive client-id greeting", "greeting")
Sent = element(NS, "sent", "rp_sent", "id balance total expires retry")
Open = element(NS, "open", "rp_open", "id")
Opened = element(NS, "opened", "rp_opened", "id amount balance remaining")
Balance = element(NS, "balance", "rp_balance", "amount currency precision")
Entry = element(NS, "entry", "entry", "id kind amount balance at packet reason")
History = element(NS, "history", "rp_history", "max before more")
Record = element(NS, "record", "record", "id packet amount at")
Records = element(NS, "records", "rp_records", "type max before total count more")
Grab = element(NS, "grab", "grab", "by amount at best")
Details = element(NS, "packet", "rp_packet", "id sender kind to total count status remaining-count remaining-amount "
                  "created expires currency exclusive refunded best-luck greeting transfer", "greeting")
RedPacketMessage = element(NS, "redpacket", "redpacket", "id sender kind count each greeting expires exclusive")
Grabbed = element(NS, "grabbed", "rp_grabbed", "id by amount remaining")
Finished = element(NS, "finished", "rp_finished", "id best-luck amount")
Refunded = element(NS, "refunded", "rp_refunded", "id amount")
SendTransfer = element(NS, "send-transfer", "rp_send_transfer", "to amount client-id note", "note")
Transferred = element(NS, "transferred", "rp_transferred", "id balance amount expires retry")
Accept = element(NS, "accept", "rp_accept", "id")
#: The result of <accept/> (id, amount, balance) and the sender's notice (id, by, amount).
Accepted = element(NS, "accepted", "rp_accepted", "id by amount balance")
Decline = element(NS, "decline", "rp_decline", "id")
#: The result of <decline/> (id, amount) and the sender's notice (id, by, amount).
Declined = element(NS, "declined", "rp_declined", "id by amount")
TransferMessage = element(NS, "transfer", "rp_transfer", "id sender amount expires note")

#: Server messages raised as events: the element's plugin, the event.
_EVENTS = ((RedPacketMessage, "redpacket"), (Grabbed, "redpacket_grabbed"), (Finished, "redpacket_finished"),
           (Refunded, "redpacket_refunded"), (TransferMessage, "redpacket_transfer"),
           (Accepted, "redpacket_accepted"), (Declined, "redpacket_declined"))


class redpacket(IqPlugin):  # noqa: N801 -- slixmpp finds plugins by their name
    name = "redpacket"
    description = "xmppd red packets (urn:xmppd:redpacket:0)"

    def plugin_init(self) -> None:
        register(Iq, Send, Sent, Open, Opened, Balance, History, Records, Details, SendTransfer, Transferred, Accept, Accepted,
                 Decline, Declined)
        register(History, Entry, iterable=True)
        register(Records, Record, iterable=True)
        register(Details, Grab, iterable=True)
        for cls, event in _EVENTS:
            register(Message, cls)
            self.forward(event, StanzaPath(f"message/{cls.plugin_attrib}"))

    async def send_packet(self, to: str, *, client_id: str, kind: str = "lucky", total: int | None = None,
                          each: int | None = None, count: int = 1, greeting: str | None = None,
                          exclusive: str | None = None, lang: str | None = None, timeout: float = 10) -> Sent:
        return await self.ask(self.server, "set", "rp_send", {
            "kind": kind, "to": to, "count": count, "client-id": client_id, "total": total, "each": each,
            "greeting": greeting, "exclusive": exclusive,
        }, answer="rp_sent", lang=lang, timeout=timeout)

    async def transfer(self, to: str, amount: int, *, client_id: str, note: str | None = None,
                       lang: str | None = None, timeout: float = 10) -> Transferred:
        """转账: ``amount`` minor units to the contact ``to``, who accepts (or declines) it."""
        return await self.ask(self.server, "set", "rp_send_transfer",
                              {"to": to, "amount": amount, "client-id": client_id, "note": note},
                              answer="rp_transferred", lang=lang, timeout=timeout)

    async def accept(self, transfer_id: str, timeout: float = 10) -> Accepted:
        return await self.ask(self.server, "set", "rp_accept", {"id": transfer_id}, answer="rp_accepted", timeout=timeout)

    async def decline(self, transfer_id: str, timeout: float = 10) -> Declined:
        """Refuse a transfer: its amount goes back to the sender at once."""
        return await self.ask(self.server, "set", "rp_decline", {"id": transfer_id}, answer="rp_declined", timeout=timeout)

    async def open_packet(self, packet_id: str, timeout: float = 10) -> Opened:
        return await self.ask(self.server, "set", "rp_open", {"id": packet_id}, answer="rp_opened", timeout=timeout)

    async def balance(self, timeout: float = 10) -> int:
        return int((await self.ask(self.server, "get", "rp_balance", answer="rp_balance", timeout=timeout))["amount"])

    async def history(self, max: int = 20, before: int | None = None, timeout: float = 10) -> History:
        return await self.ask(self.server, "get", "rp_history", {"max": max, "before": before},
                              answer="rp_history", timeout=timeout)

    async def records(self, which: str = "received", max: int = 20, timeout: float = 10) -> Records:
        return await self.ask(self.server, "get", "rp_records", {"type": which, "max": max},
                              answer="rp_records", timeout=timeout)

    async def details(self, packet_id: str, timeout: float = 10) -> Details:
        return await self.ask(self.server, "get", "rp_packet", {"id": packet_id}, answer="rp_packet", timeout=timeout)


def entries(stanza: Any, kind: type) -> list[Any]:
    """The iterable children of ``kind`` in a result (entries, records, grabs)."""
    return [item for item in stanza if isinstance(item, kind)]

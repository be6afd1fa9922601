"""Red packets on the wire (urn:xmppd:redpacket:0, schemas/redpacket-0.xsd): the namespace, the
protocol's errors, and the messages and elements the server builds -- the packet and transfer
messages, the notices, the room's ``finished`` notice, a packet's details. Pure functions of
the stored values: no storage, no routing (:mod:`.feature` sends what they build)."""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree

from xmppd.errors import Condition, StanzaError
from xmppd.timestamps import micros
from xmppd.xml import ns
from xmppd.xml.builder import element, stanza, sub

from .models import Packet, Share
from .policy import best_share

NS = "urn:xmppd:redpacket:0"


def q(name: str) -> str:
    return f"{{{NS}}}{name}"


HINTS = ns.HINTS  # XEP-0334
ATTACH = "urn:xmpp:message-attaching:1"  # XEP-0367: a notice points at its packet's message


def message_id(packet_id: str) -> str:
    """The id of a packet's message (1:1 and room): the reference every later notice carries."""
    return f"rp-{packet_id}"


timestamp = micros  # XEP-0082 with microseconds (xmppd/timestamps.py)


def app_error(condition: Condition, app: str, text: str, **attrs: str) -> StanzaError:
    return StanzaError(condition, text, app=element(q(app), attrs or None, default_ns=NS))


def bad_request(text: str) -> StanzaError:
    return StanzaError(Condition.BAD_REQUEST, text)


class SendRefused(StanzaError):
    """A refused send, as the protocol answers it; ``field`` names what is at fault (the ad-hoc
    command's form field: to, kind, amount, count, greeting, exclusive), None: the request."""

    def __init__(self, field: str | None, condition: Condition, text: str, app: str | None = None, **attrs: str) -> None:
        super().__init__(condition, text, app=element(q(app), attrs or None, default_ns=NS) if app else None)
        self.field = field


def packet_message(packet: Packet, text: str) -> etree._Element:
    """The packet's (or transfer's) message, once, with the readable ``text`` as its body: from
    the room (groupchat) or from the sender (chat); id and origin-id ``rp-<id>``, a ``<store/>`` hint."""
    if packet.is_room:
        msg = stanza("message", to=packet.target, frm=packet.target, type="groupchat", id=message_id(packet.id))
    else:
        msg = stanza("message", to=packet.target, frm=packet.sender, type="chat", id=message_id(packet.id))
    sub(msg, f"{{{ns.CLIENT}}}body", text=text).set(ns.XML_LANG, packet.lang)
    if packet.transfer:
        attrs = {"id": packet.id, "sender": packet.sender, "amount": str(packet.total), "expires": timestamp(packet.expires_at)}
        if packet.greeting:
            attrs["note"] = packet.greeting
        sub(msg, q("transfer"), attrs)
    else:
        attrs = {"id": packet.id, "sender": packet.sender, "kind": packet.kind, "count": str(packet.count),
                 "greeting": packet.greeting, "expires": timestamp(packet.expires_at)}
        if packet.kind == "equal":
            attrs["each"] = str(packet.total // packet.count)
        if packet.exclusive_to:
            attrs["exclusive"] = packet.exclusive_to
        sub(msg, q("redpacket"), attrs)
    sub(msg, f"{{{ns.SID}}}origin-id", {"id": message_id(packet.id)})
    sub(msg, f"{{{HINTS}}}store")
    return msg


def _stored_reference(msg: etree._Element, packet_id: str) -> etree._Element:
    sub(msg, f"{{{ATTACH}}}attach-to", {"id": message_id(packet_id)})
    sub(msg, f"{{{HINTS}}}store")
    return msg


def notice(to: str, frm: str, child: etree._Element, text: str, lang: str) -> etree._Element:
    """A notice about a packet to one person: type normal from the server domain, with a readable
    body and a ``<store/>`` hint, so it is archived and kept offline (a headline would be
    neither); ``<attach-to/>`` names the packet's message (the card to update)."""
    msg = stanza("message", to=to, frm=frm, type="normal")
    sub(msg, f"{{{ns.CLIENT}}}body", text=text).set(ns.XML_LANG, lang)
    msg.append(child)
    return _stored_reference(msg, child.get("id") or "")


def room_notice(packet: Packet, child: etree._Element, text: str) -> etree._Element:
    """The room's copy of a notice (``finished``), from the room, id ``rp-<id>-done``."""
    msg = stanza("message", to=packet.target, frm=packet.target, type="groupchat", id=f"{message_id(packet.id)}-done")
    sub(msg, f"{{{ns.CLIENT}}}body", text=text).set(ns.XML_LANG, packet.lang)
    msg.append(etree.fromstring(etree.tostring(child)))
    return _stored_reference(msg, packet.id)


def details(packet: Packet, shares: Iterable[Share], currency: str) -> etree._Element:
    """``<packet/>``: the packet's current state (§2.3), with one ``<grab/>`` per share taken."""
    attrs = {"id": packet.id, "sender": packet.sender, "kind": packet.kind, "to": packet.target,
             "total": str(packet.total), "count": str(packet.count), "status": packet.status,
             "remaining-count": str(packet.remaining_count), "remaining-amount": str(packet.remaining_amount),
             "created": timestamp(packet.created_at), "expires": timestamp(packet.expires_at), "currency": currency}
    if packet.exclusive_to:
        attrs["exclusive"] = packet.exclusive_to
    if packet.refunded:
        attrs["refunded"] = str(packet.refund_amount)
    if packet.best_luck:
        attrs["best-luck"] = packet.best_luck
    if packet.transfer:
        attrs["transfer"] = "true"
    out = element(q("packet"), attrs, default_ns=NS)
    sub(out, q("greeting"), text=packet.greeting)
    taken = sorted((s for s in shares if s.grabbed_by is not None), key=lambda s: s.seq)
    best = best_share(taken) if packet.best_luck else None
    best_seq = best.seq if best is not None else None
    for s in taken:
        g = sub(out, q("grab"), {"by": s.grabbed_by, "amount": str(s.amount), "at": timestamp(s.grabbed_at)})
        if s.seq == best_seq:
            g.set("best", "true")
    return out

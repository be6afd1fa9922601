"""MUC/Sub (ejabberd's ``urn:xmpp:mucsub:0``): subscribe to a room's events without joining it.

Subscribers who are not joined get each event wrapped in a pubsub#event message from the room,
on every available session that is not in the room; when none is available, the event goes to
the bare JID, where offline storage keeps it (the wrapper is type normal).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from ...errors import Condition, StanzaError
from ...jid import JID, JIDError
from ...xml import ns
from .affiliations import Affiliation, Role
from .const import MUCSUB, MUCSUB_NODES, PUBSUB_EVENT, q

if TYPE_CHECKING:
    from .room import Room

SUBSCRIBE = q(MUCSUB, "subscribe")
UNSUBSCRIBE = q(MUCSUB, "unsubscribe")
SUBSCRIPTIONS = q(MUCSUB, "subscriptions")
_EVENT = q(MUCSUB, "event")


@dataclass(frozen=True, slots=True)
class Subscription:
    nick: str
    nodes: frozenset[str]


def event_list(parent: etree._Element, nodes: frozenset[str] | tuple[str, ...]) -> None:
    for node in sorted(nodes):
        etree.SubElement(parent, _EVENT, {"node": node})


def wrap(room_jid: str, to: str, node: str, item_id: str, inner: etree._Element) -> etree._Element:
    """The event message: ``<message from=room to=user><event><items node><item id>inner``."""
    msg = etree.Element(ns.MESSAGE, {"from": room_jid, "to": to, "id": item_id}, nsmap={None: ns.CLIENT})
    ev = etree.SubElement(msg, q(PUBSUB_EVENT, "event"), nsmap={None: PUBSUB_EVENT})
    items = etree.SubElement(ev, q(PUBSUB_EVENT, "items"), {"node": node})
    item = etree.SubElement(items, q(PUBSUB_EVENT, "item"), {"id": item_id})
    c = copy.deepcopy(inner)
    c.set("to", to)
    item.append(c)
    return msg


async def handle_subscribe(room: "Room", sender: JID, payload: etree._Element) -> etree._Element:
    """Subscribe the sender (or, for a moderator, the ``jid`` named) with ``nick`` to the nodes asked."""
    if not room.config.allow_subscription:
        raise StanzaError(Condition.NOT_ALLOWED, "subscriptions are disabled in this room")
    nick = (payload.get("nick") or "").strip()
    if not nick:
        raise StanzaError(Condition.BAD_REQUEST, "a subscription needs a nick")
    target = _target(room, sender, payload, "subscribe")
    nodes = frozenset(e.get("node") for e in payload.findall(_EVENT) if e.get("node") in MUCSUB_NODES)  # type: ignore[misc]
    if not nodes:
        raise StanzaError(Condition.BAD_REQUEST, "name at least one known event node")
    aff = room.affiliation(target)
    if aff is Affiliation.OUTCAST:
        raise StanzaError(Condition.FORBIDDEN, "you are banned from this room")
    if room.config.members_only and aff.rank < Affiliation.MEMBER.rank:
        raise StanzaError(Condition.REGISTRATION_REQUIRED, "this room is for members only")
    if room.config.password and target == sender.bare and aff.rank < Affiliation.ADMIN.rank and payload.get("password") != room.config.password:
        raise StanzaError(Condition.NOT_AUTHORIZED, "this room needs a password")
    room.check_nick_free(nick, target)
    await room.set_subscription(target, Subscription(nick, nodes))
    out = etree.Element(SUBSCRIBE, {"nick": nick}, nsmap={None: MUCSUB})
    if target != sender.bare:
        out.set("jid", str(target))
    event_list(out, nodes)
    return out


def _target(room: "Room", sender: JID, payload: etree._Element, verb: str) -> JID:
    """Whom a (un)subscription is for: the sender, or the payload's ``jid`` (moderators only)."""
    target = sender.bare
    if payload.get("jid"):
        try:
            target = JID.parse(payload.get("jid")).bare  # type: ignore[arg-type]
        except JIDError:
            raise StanzaError(Condition.JID_MALFORMED, f"the jid to {verb} is not a valid JID") from None
        if target != sender.bare and room.role_of(sender) is not Role.MODERATOR:
            raise StanzaError(Condition.FORBIDDEN, f"only moderators may {verb} other users")
    return target


async def handle_unsubscribe(room: "Room", sender: JID, payload: etree._Element) -> None:
    target = _target(room, sender, payload, "unsubscribe")
    await room.set_subscription(target, None)


def list_subscribers(room: "Room", sender: JID) -> etree._Element:
    if room.role_of(sender) is not Role.MODERATOR:
        raise StanzaError(Condition.FORBIDDEN, "only moderators may list subscribers")
    out = etree.Element(SUBSCRIPTIONS, nsmap={None: MUCSUB})
    for jid, sub in sorted(room.subscribers.items(), key=lambda kv: str(kv[0])):
        el = etree.SubElement(out, q(MUCSUB, "subscription"), {"jid": str(jid), "nick": sub.nick})
        event_list(el, sub.nodes)
    return out


def list_subscriptions(rooms: list["Room"], sender: JID) -> etree._Element:
    out = etree.Element(SUBSCRIPTIONS, nsmap={None: MUCSUB})
    bare = sender.bare
    for room in rooms:
        sub = room.subscribers.get(bare)
        if sub is not None:
            el = etree.SubElement(out, q(MUCSUB, "subscription"), {"jid": str(room.jid), "nick": sub.nick})
            event_list(el, sub.nodes)
    return out

"""XEP-0425 (v0.3, urn:xmpp:message-moderate:1) moderated retraction, and XEP-0424 retraction of
one's own groupchat message (urn:xmpp:message-retract:1), in a room.

A moderator asks the room (its bare JID) with::

    <iq type='set'><moderate id='STANZA-ID' xmlns='urn:xmpp:message-moderate:1'>
      <retract xmlns='urn:xmpp:message-retract:1'/><reason>spam</reason></moderate></iq>

``STANZA-ID`` is the ``<stanza-id by='room'/>`` the room gave the message. Only an occupant with
the moderator role may (``forbidden``); an id the room knows neither in its archive nor in the
history it keeps is ``item-not-found``. The room then tells every occupant (and MUC/Sub
subscriber)::

    <message type='groupchat' from='room'><retract id='STANZA-ID' xmlns='urn:xmpp:message-retract:1'>
      <moderated by='room/moderator-nick' xmlns='urn:xmpp:message-moderate:1'>
        <occupant-id xmlns='urn:xmpp:occupant-id:0' id='...'/></moderated>
      <reason>spam</reason></retract></message>

and the archive (``RETRACTION`` handlers: xmppd/features/mam/retraction.py) and the join history
keep a tombstone in place of the message: the original's addressing, stanza-id and occupant-id,
and ``<retracted stamp='...' xmlns='urn:xmpp:message-retract:1'>`` holding the same
``<moderated/>`` and ``<reason/>``, no body nor other content. The announcement itself is archived.

An occupant retracting its own message sends a groupchat message with ``<retract id='STANZA-ID'/>``
(and the fallback body and store hint XEP-0424 asks for): it is broadcast and archived like any
message, then the original becomes a tombstone (``<retracted stamp=''/>``) when its occupant-id
is the sender's — the same user. Anyone else's retraction changes nothing stored (receiving
clients check the occupant-id too, as XEP-0424 §5 says).
"""
from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lxml import etree

from ...errors import Condition, StanzaError
from ...jid import JID
from ...xml import ns
from . import events as E
from . import occupant_id as OID
from .affiliations import Role
from .const import SID, q

if TYPE_CHECKING:
    from .occupants import Occupant
    from .room import Room

MODERATE = "urn:xmpp:message-moderate:1"
RETRACT = "urn:xmpp:message-retract:1"
MODERATE_Q = q(MODERATE, "moderate")
RETRACT_EL = q(RETRACT, "retract")
RETRACTED_EL = q(RETRACT, "retracted")
_STANZA_ID = q(SID, "stanza-id")
_KEEP = frozenset((_STANZA_ID, OID.TAG, q("urn:xmpp:sid:0", "origin-id")))
FEATURES = (MODERATE, RETRACT)


def strip_forged(msg: etree._Element) -> None:
    """An occupant's groupchat message may retract (XEP-0424) but not claim a moderator's
    authority nor be a tombstone: ``<moderated/>`` in its ``<retract/>`` and ``<retracted/>``
    go (XEP-0425 §6)."""
    for r in msg.findall(RETRACT_EL):
        for m in r.findall(q(MODERATE, "moderated")):
            r.remove(m)
    for t in msg.findall(RETRACTED_EL):
        msg.remove(t)


def now_stamp(room: "Room") -> str:
    """XEP-0082 time of the server's clock, for a tombstone's ``stamp``."""
    return datetime.fromtimestamp(room.service.now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tombstone(original: etree._Element, stamp: str, moderated: etree._Element | None = None,
              reason: str | None = None) -> etree._Element:
    """The original message reduced to its addressing and ids, with a ``<retracted/>``."""
    out = etree.Element(original.tag, dict(original.attrib), nsmap={None: ns.CLIENT})
    retracted = etree.SubElement(out, RETRACTED_EL, {"stamp": stamp}, nsmap={None: RETRACT})
    if moderated is not None:
        retracted.append(copy.deepcopy(moderated))
    if reason:
        etree.SubElement(retracted, q(RETRACT, "reason")).text = reason
    for child in original:
        if child.tag in _KEEP:
            out.append(copy.deepcopy(child))
    return out


async def _retract(room: "Room", ev: E.MessageRetraction) -> bool:
    """Run the retraction through the archive, then the join history; whether any held it."""
    svc = room.service
    if svc.events.has(E.RETRACTION):
        await svc.events.run(E.RETRACTION, ev)
    kept = room.history.find(ev.stanza_id, room.jid_s)
    if kept is not None:
        if ev.author is not None:
            oid = kept.find(OID.TAG)
            if oid is None or oid.get("id") != ev.author:
                return ev.found
        room.history.replace(kept, ev.tombstone(kept))
        return True
    return ev.found


async def moderate(room: "Room", full: JID, payload: etree._Element) -> None:
    """XEP-0425 §4: a moderator retracts an occupant's message."""
    actor = room.occupants.of_jid(full)
    if actor is None or actor.role is not Role.MODERATOR:
        raise StanzaError(Condition.FORBIDDEN, "only moderators may retract other occupants' messages")
    sid = payload.get("id")
    if not sid:
        raise StanzaError(Condition.BAD_REQUEST, "name the message's stanza-id in <moderate id=''/>")
    if payload.find(RETRACT_EL) is None:
        raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, "the only moderation action is <retract xmlns='urn:xmpp:message-retract:1'/>")
    reason = (payload.findtext(q(MODERATE, "reason")) or "").strip() or None
    moderated = etree.Element(q(MODERATE, "moderated"), {"by": f"{room.jid_s}/{actor.nick}"}, nsmap={None: MODERATE})
    moderated.append(OID.element(room.occupant_id(actor.bare)))
    svc = room.service
    note = etree.Element(ns.MESSAGE, {"from": room.jid_s, "type": "groupchat", "id": svc.new_id()}, nsmap={None: ns.CLIENT})
    r = etree.SubElement(note, RETRACT_EL, {"id": sid}, nsmap={None: RETRACT})
    r.append(copy.deepcopy(moderated))
    if reason:
        etree.SubElement(r, q(RETRACT, "reason")).text = reason
    stamp = now_stamp(room)
    ev = E.MessageRetraction(room, sid, None, lambda old: tombstone(old, stamp, moderated, reason), note)
    if not await _retract(room, ev):
        raise StanzaError(Condition.ITEM_NOT_FOUND, f"this room has no message with the stanza-id {sid!r}")
    await room.announce(note)


async def own_retraction(room: "Room", occ: "Occupant", sent: etree._Element) -> None:
    """XEP-0424 in a room: ``sent`` (already broadcast) retracts an earlier message of ``occ``'s user."""
    r = sent.find(RETRACT_EL)
    if r is None or not r.get("id"):
        return
    stamp = now_stamp(room)
    ev = E.MessageRetraction(room, r.get("id"), room.occupant_id(occ.bare), lambda old: tombstone(old, stamp), None)  # type: ignore[arg-type]
    await _retract(room, ev)

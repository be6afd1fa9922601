"""XEP-0424 message retraction and XEP-0425 moderation reflected in the archive (tombstones).

What stays in the archive when a message is retracted is a *tombstone* (XEP-0424 §6, XEP-0425
§5, as Prosody's mod_muc_moderation and mod_mam keep them): the original's addressing, ids
(stanza-id, origin-id, occupant-id) and ``<retracted stamp='...' xmlns='urn:xmpp:message-retract:1'/>``
(with ``<moderated/>`` and ``<reason/>`` for a moderator's retraction), same archive id and
place, no body nor any other content. The retraction message itself is archived like any message.

- One-to-one: a local account's message with ``<retract id='X'/>`` (type chat or normal) to
  ``peer`` tombstones, in its own archive and (when ``peer`` is a local account) in ``peer``'s,
  the message with ``<origin-id id='X'/>`` or message id ``X`` sent *by the retracting account*
  to ``peer``, among the last ``WINDOW`` messages the two exchanged. Only the author can
  retract: the original's ``from`` must be the retracting account.
- Rooms (``muc.events.RETRACTION``, xmppd/features/muc/moderation.py): the message with the
  room's stanza-id ``X`` in the room's archive; by its author only when its XEP-0421
  occupant-id is the retracting user's, by a moderator always. A moderator's announcement is
  archived too, with the room's stanza-id.

The archive's usage count (``mam.max_bytes_per_user``) drops by what the tombstone saves.

XEP-0308 corrections need nothing here: a correction (``<replace id='X'/>`` with the new body) is
archived as the message it is, with its ``<replace/>``, and a MAM query returns both the
original and the correction in order, so a client links them (as Prosody and ejabberd do).
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from lxml import etree
from sqlalchemy.ext.asyncio import AsyncConnection

from ...core.hooks import Flow, Routed
from ...jid import JID, JIDError
from ...xml import ns
from ..muc.moderation import tombstone  # (one shape of tombstone for rooms and one-to-one)
from .ids import time_of
from .repository import ArchivedMessage, ArchiveQuery, mam_messages, mam_usage, stanza_bytes

if TYPE_CHECKING:
    from . import Mam

RETRACT = "urn:xmpp:message-retract:1"
_RETRACT = f"{{{RETRACT}}}retract"
_RETRACTED = f"{{{RETRACT}}}retracted"
_ORIGIN_ID = f"{{{ns.SID}}}origin-id"
_STANZA_ID = f"{{{ns.SID}}}stanza-id"
_OCCUPANT_ID = "{urn:xmpp:occupant-id:0}occupant-id"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
WINDOW = 200  # one-to-one: the newest messages between the two searched for the original


async def _replace_txn(conn: AsyncConnection, owner: str, seq: int, stanza: str, saved: int) -> None:
    t = mam_messages.c
    await conn.execute(mam_messages.update().where(t.seq == seq, t.owner == owner).values(stanza=stanza))
    if saved > 0:
        u = mam_usage.c
        await conn.execute(mam_usage.update().where(u.owner == owner).values(bytes=sa.func.greatest(u.bytes - saved, 0)
                                                                              if conn.dialect.name != "sqlite" else sa.func.max(u.bytes - saved, 0)))


async def replace(mam: "Mam", item: ArchivedMessage, new: etree._Element) -> None:
    """Store ``new`` in place of the archived ``item`` (same id, time and place)."""
    text = etree.tostring(new, encoding="unicode")
    saved = stanza_bytes(item.stanza) - stanza_bytes(text)
    await mam.ctx.db.run_txn(_replace_txn, item.owner, item.seq, text, saved)
    if saved > 0 and item.owner in mam._used:
        mam._used[item.owner] = max(0, mam._used[item.owner] - saved)


def _from_bare(el: etree._Element) -> str | None:
    try:
        return str(JID.parse(el.get("from") or "").bare)
    except (JIDError, ValueError):
        return None


async def direct(mam: "Mam", r: Routed, stamp: str) -> None:
    """XEP-0424 one-to-one: tombstone the retracted message in both parties' archives."""
    origin = r.origin
    retract = r.stanza.find(_RETRACT)
    to = r.to
    if origin is None or origin.jid is None or retract is None or to is None or to.local is None:
        return
    target = retract.get("id")
    if not target or (r.stanza.get("type") or "normal") not in ("chat", "normal"):
        return
    author = origin.jid.bare
    peer = to.bare
    if peer == author:
        return
    owners = [(str(author), str(peer))]
    if peer.domain == mam.ctx.domain:
        owners.append((str(peer), str(author)))
    await mam.flush()
    for owner, other in owners:
        page = await mam.repo.query(ArchiveQuery(owner, WINDOW, with_jid=other, before=""))
        for item in reversed(page.items):
            el = etree.fromstring(item.stanza, _PARSER)
            if el.find(_RETRACTED) is not None or el.find(_RETRACT) is not None:
                continue
            sender = _from_bare(el) if el.get("from") else owner  # the owner's own copy may have no 'from'
            if sender != str(author):
                continue
            oid = el.find(_ORIGIN_ID)
            if el.get("id") == target or (oid is not None and oid.get("id") == target):
                await replace(mam, item, tombstone(el, stamp))
                break


async def in_room(mam: "Mam", ev: Any) -> Flow:
    """``muc.events.RETRACTION``: tombstone the room's archived message, archive the announcement."""
    room = ev.room
    if not mam.room_archiving(room):
        return Flow.CONTINUE
    await mam.flush()
    page = await mam.repo.query(ArchiveQuery(room.jid_s, 1, ids=(ev.stanza_id,)))
    for item in page.items:
        el = etree.fromstring(item.stanza, _PARSER)
        if el.find(_RETRACTED) is not None:
            ev.found = True  # retracted already
            continue
        if ev.author is not None:
            oid = el.find(_OCCUPANT_ID)
            if oid is None or oid.get("id") != ev.author:
                continue
        await replace(mam, item, ev.tombstone(el))
        ev.found = True
    note = ev.announcement
    if note is not None and ev.found:
        seq, sid = await mam._new_id()
        etree.SubElement(note, _STANZA_ID, {"id": sid, "by": room.jid_s}, nsmap={None: ns.SID})
        kept = copy.deepcopy(note)
        kept.attrib.pop("to", None)
        await mam._enqueue(ArchivedMessage(room.jid_s, sid, time_of(seq), room.jid_s, "", etree.tostring(kept, encoding="unicode"), seq))
    return Flow.CONTINUE

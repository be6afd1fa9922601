"""XEP-0045 §7.2.15: discussion history sent on join (maxchars, maxstanzas, seconds, since)."""
from __future__ import annotations

import collections
import copy
from dataclasses import dataclass

from lxml import etree

from ... import timestamps
from ...errors import Condition, StanzaError
from .const import DELAY, MUC, SID, q

_HISTORY = q(MUC, "history")
_STANZA_ID = q(SID, "stanza-id")


@dataclass(frozen=True, slots=True)
class Entry:
    stanza: etree._Element  # the broadcast copy (from room/nick, no 'to')
    at: float  # UTC seconds
    chars: int  # length of the serialised stanza (the unit of maxchars)


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    maxchars: int | None = None
    maxstanzas: int | None = None
    seconds: int | None = None
    since: float | None = None


def parse_request(x: etree._Element | None) -> HistoryRequest:
    """The ``<history/>`` child of the join's ``<x xmlns='.../muc'/>``; bad values are bad-request."""
    h = x.find(_HISTORY) if x is not None else None
    if h is None:
        return HistoryRequest()

    def num(name: str) -> int | None:
        v = h.get(name)
        if v is None:
            return None
        try:
            n = int(v)
        except ValueError:
            raise StanzaError(Condition.BAD_REQUEST, f"history {name} must be a non-negative integer") from None
        if n < 0:
            raise StanzaError(Condition.BAD_REQUEST, f"history {name} must be a non-negative integer")
        return n

    since = None
    if h.get("since"):
        try:
            since = timestamps.parse(h.get("since")).timestamp()  # type: ignore[arg-type]
        except ValueError:
            raise StanzaError(Condition.BAD_REQUEST, "history since must be an XEP-0082 date-time") from None
    return HistoryRequest(num("maxchars"), num("maxstanzas"), num("seconds"), since)


class History:
    """The last ``size`` messages of a room, in memory."""

    __slots__ = ("_entries",)

    def __init__(self, size: int) -> None:
        self._entries: collections.deque[Entry] = collections.deque(maxlen=max(0, size))

    def resize(self, size: int) -> None:
        if size != self._entries.maxlen:
            self._entries = collections.deque(self._entries, maxlen=max(0, size))

    def add(self, stanza: etree._Element, at: float) -> None:
        if self._entries.maxlen:
            self._entries.append(Entry(stanza, at, len(etree.tostring(stanza))))

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, stanza_id: str, by: str) -> etree._Element | None:
        """The kept message whose ``<stanza-id by=by/>`` is ``stanza_id``."""
        for e in self._entries:
            for sid in e.stanza.findall(_STANZA_ID):
                if sid.get("by") == by and sid.get("id") == stanza_id:
                    return e.stanza
        return None

    def replace(self, old: etree._Element, new: etree._Element) -> None:
        """Put ``new`` in place of the entry holding ``old`` (a retraction's tombstone)."""
        for i, e in enumerate(self._entries):
            if e.stanza is old:
                self._entries[i] = Entry(new, e.at, len(etree.tostring(new)))
                return

    def select(self, req: HistoryRequest, now: float, room_jid: str) -> list[etree._Element]:
        """The entries the request asks for, oldest first, each with a ``<delay/>`` (XEP-0203)."""
        picked: list[Entry] = []
        chars = 0
        for e in reversed(self._entries):
            if req.maxstanzas is not None and len(picked) >= req.maxstanzas:
                break
            if req.seconds is not None and e.at < now - req.seconds:
                break
            if req.since is not None and e.at <= req.since:
                break
            if req.maxchars is not None:
                if chars + e.chars > req.maxchars:
                    break
                chars += e.chars
            picked.append(e)
        out = []
        for e in reversed(picked):
            el = copy.deepcopy(e.stanza)
            d = etree.SubElement(el, q(DELAY, "delay"), {"from": room_jid, "stamp": timestamps.micros(e.at)}, nsmap={None: DELAY})
            del d
            out.append(el)
        return out

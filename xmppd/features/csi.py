"""XEP-0352: Client State Indication (urn:xmpp:csi:0).

A client says ``<inactive/>`` when its user looks away (a phone in a pocket) and ``<active/>``
when it is back. While a session is inactive the server holds back what is not urgent:
available/unavailable presence (only the latest of each sender is kept) and messages without
a body (XEP-0085 chat states and the like). Anything else -- a message with a body, an iq,
a subscription request -- is delivered at once, after what was held, so order is kept. Going
active flushes the held stanzas. ``[csi] max_held`` bounds what one session holds (beyond
it, everything held is delivered).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from ..config import PositiveInt
from ..core import hooks as H
from ..core.feature import Feature, hook
from ..core.hooks import Delivery, Flow
from ..errors import StreamErrorCondition
from ..xml import ns
from ..xml.builder import element

if TYPE_CHECKING:
    from ..core.session import Session

CSI = "urn:xmpp:csi:0"
_BODY = f"{{{ns.CLIENT}}}body"
_KEY = "csi"


@dataclass(frozen=True, slots=True)
class CsiOptions:
    # Stanzas held per inactive session; beyond it everything held is delivered.
    max_held: PositiveInt = 500


class _Held:
    __slots__ = ("items",)

    def __init__(self) -> None:
        # key -> stanza; presence is keyed by its sender (a newer one replaces it and moves
        # to the end), anything else by a unique counter.
        self.items: dict[object, etree._Element] = {}


class Csi(Feature):
    name = "csi"
    implements = ("XEP-0352",)
    Options = CsiOptions

    async def setup(self) -> None:
        self.ctx.add_nonza_handler(CSI, self._nonza)
        self.ctx.add_stream_feature(lambda authenticated: [element(f"{{{CSI}}}csi", default_ns=CSI)] if authenticated else [])
        self._seq = 0

    async def _nonza(self, session: "Session", el: etree._Element) -> None:
        name = etree.QName(el).localname
        if name == "inactive":
            if session.jid is None:
                session.close(StreamErrorCondition.NOT_AUTHORIZED, "bind a resource before client state indication")
                return
            session.data.setdefault(_KEY, _Held())
        elif name == "active":
            held = session.data.pop(_KEY, None)
            if held is not None:
                self._flush(session, held)
        else:
            session.close(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, f"unknown client state element {name}")

    def inactive(self, session: "Session") -> bool:
        """Public: has this session said it is inactive?"""
        return _KEY in session.data

    @staticmethod
    def _flush(session: "Session", held: _Held) -> None:
        items, held.items = held.items, {}
        for stanza in items.values():
            session.send(stanza)

    @hook(H.DELIVER, priority=-100)
    def on_deliver(self, d: Delivery) -> Flow:  # (never awaits: a plain function, see core.hooks)
        held: _Held | None = d.session.data.get(_KEY)
        if held is None:
            return Flow.CONTINUE
        stanza = d.stanza
        key: object | None = None
        if d.kind == "presence":
            if stanza.get("type") in (None, "unavailable"):
                key = ("p", stanza.get("from"))
        elif d.kind == "message" and stanza.find(_BODY) is None and stanza.get("type") != "error" and not _is_archive_result(stanza):
            self._seq += 1
            key = self._seq
        if key is None:  # urgent: what was held goes first, then this one
            if held.items:
                self._flush(d.session, held)
            return Flow.CONTINUE
        if len(held.items) >= self.options.max_held:
            self._flush(d.session, held)
        held.items.pop(key, None)
        kept = copy.deepcopy(stanza)  # fan-out stanzas are shared between recipients
        if d.session.jid is not None and kept.get("to") is None:
            kept.set("to", str(d.session.jid))
        held.items[key] = kept
        return Flow.STOP


def _is_archive_result(stanza: etree._Element) -> bool:
    """XEP-0313 results and XEP-0280 carbons are answers/copies the client is waiting for."""
    for child in stanza:
        tag = child.tag
        if isinstance(tag, str) and (tag.startswith("{urn:xmpp:mam:") or tag.startswith("{urn:xmpp:carbons:")):
            return True
    return False

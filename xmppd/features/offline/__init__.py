"""XEP-0160: Best Practices for Handling Offline Messages, with XEP-0203 delay stamps.

A message of type normal or chat for a local account with no available resource (the router's
``MESSAGE_UNDELIVERED``) is stored, stamped ``<delay xmlns='urn:xmpp:delay' from='<domain>'
stamp='...'/>``, unless it is not worth keeping: a XEP-0334 ``<no-store/>`` hint, or nothing
but XEP-0085 chat states (a ``<store/>`` hint keeps it anyway). groupchat and headline are
never stored. A full queue (``[offline] max_messages`` messages, or ``max_bytes`` bytes of stored
XML) answers the sender with ``service-unavailable`` (XEP-0160 §2 step 3: "e.g., because the
recipient's offline message queue is full") and a text naming the full storage; the message is
stored whole or not at all (the quotas are checked and the row inserted in one transaction). An
unknown account is left to the router, which bounces ``service-unavailable`` too.

Delivery: at the session's first available presence of non-negative priority (XEP-0160 §2
step 5; tracked in ``session.data["offline"]``) the queue is read, each stanza written to the
session through the router (delivery hooks such as blocking still apply), and only then are
the written ones deleted (``id <= last written``). A crash between writing and deleting
delivers those messages again at the next login: at-least-once, never lost. XEP-0013
(flexible offline retrieval) is not offered.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from ... import timestamps
from ...config import NonNegativeInt
from ...core import hooks as H
from ...core.feature import Feature, hook
from ...core.hooks import Flow, Routed
from ...errors import Condition, StanzaError
from ...xml import ns
from .repository import OfflineRepository, SqlOfflineRepository, StoreResult

__all__ = ["Offline", "OfflineOptions", "worth_storing"]

CHATSTATES = "http://jabber.org/protocol/chatstates"
_NO_STORE = f"{{{ns.HINTS}}}no-store"
_STORE = f"{{{ns.HINTS}}}store"
_DELAY = f"{{{ns.DELAY}}}delay"
_THREAD = f"{{{ns.CLIENT}}}thread"
_CHATSTATES_PREFIX = f"{{{CHATSTATES}}}"
_HINTS_PREFIX = f"{{{ns.HINTS}}}"
_SESSION_KEY = "offline"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)


@dataclass(frozen=True, slots=True)
class OfflineOptions:
    # Messages kept per account; more get service-unavailable.
    max_messages: NonNegativeInt = 1000
    # Bytes of stored XML kept per account (each message as stored, delay stamp included);
    # a message that would pass it gets service-unavailable.
    max_bytes: NonNegativeInt = 10485760

def worth_storing(message: etree._Element) -> bool:
    """XEP-0334 hints and XEP-0085: is this normal/chat message worth keeping offline?"""
    store = False
    content = False
    for child in message:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if tag == _NO_STORE:
            return False
        if tag == _STORE:
            store = True
        elif tag == _THREAD or tag.startswith(_CHATSTATES_PREFIX) or tag.startswith(_HINTS_PREFIX):
            continue
        else:
            content = True
    return content or store


class Offline(Feature):
    name = "offline"
    implements = ("XEP-0160", "XEP-0203", "XEP-0334")
    disco_features = ("msgoffline",)
    Options = OfflineOptions
    migrations = str(Path(__file__).parent / "migrations")

    repo: OfflineRepository

    async def setup(self) -> None:
        self.repo = SqlOfflineRepository(self.ctx.db)

    # ---------------------------------------------------------------- storing

    @hook(H.MESSAGE_UNDELIVERED)
    async def on_undelivered(self, r: Routed) -> Flow:
        msg = r.stanza
        if (msg.get("type") or "normal") not in ("normal", "chat") or r.to is None or r.to.local is None:
            return Flow.CONTINUE
        if not worth_storing(msg):
            return Flow.CONTINUE
        to = r.to.bare
        now = datetime.fromtimestamp(self.ctx.clock.now(), UTC)
        copy = etree.fromstring(etree.tostring(msg), _PARSER)
        if copy.get("from") is None:
            copy.set("from", str(r.from_jid))
        if copy.get("to") is None:
            copy.set("to", str(r.to))
        delay = etree.SubElement(copy, _DELAY, {"from": self.ctx.domain, "stamp": timestamps.millis(now)}, nsmap={None: ns.DELAY})
        delay.text = "Offline Storage"
        try:
            result = await self.repo.store(to.local, to.domain, etree.tostring(copy, encoding="unicode"), now, self.options.max_messages, self.options.max_bytes)  # type: ignore[arg-type]
        except Exception:
            self.log.exception("storing an offline message for %s failed", to)
            return Flow.CONTINUE  # the router answers service-unavailable
        if result is StoreResult.STORED:
            return Flow.STOP
        if result is StoreResult.FULL:
            self.ctx.router.bounce(r, StanzaError(Condition.SERVICE_UNAVAILABLE, f"offline storage of {to} is full"))
            return Flow.STOP
        return Flow.CONTINUE  # no such account: the router bounces

    # ---------------------------------------------------------------- delivering

    @hook(H.PRESENCE_BROADCAST, priority=100)
    async def on_presence(self, r: Routed) -> Flow:
        session = r.origin
        if session is None or not session.available or session.priority < 0 or session.data.get(_SESSION_KEY):
            return Flow.CONTINUE
        session.data[_SESSION_KEY] = True
        jid = session.jid
        assert jid is not None and jid.local is not None
        messages = await self.repo.fetch(jid.local, jid.domain)
        last = None
        for m in messages:
            if session.is_closed:
                break
            await self.ctx.router.deliver_to(jid, etree.fromstring(m.stanza, _PARSER), "message")
            last = m.id
        if last is not None:
            await self.repo.delete_upto(jid.local, jid.domain, last)
        return Flow.CONTINUE

    # ---------------------------------------------------------------- accounts


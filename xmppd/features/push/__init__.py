"""XEP-0357: Push Notifications (urn:xmpp:push:0).

A client registers its app server: ``<iq type='set'><enable xmlns='urn:xmpp:push:0'
jid='<app server>' node='<node>'>`` with an optional publish-options form (secrets the app
server wants back); ``<disable jid='' [node='']/>`` removes it. Registrations are stored
(``[push] max_registrations`` per account) and survive restarts.

When a message for an account finds none of its sessions connected -- every session gone
(the router's ``MESSAGE_UNDELIVERED``) or hibernating under XEP-0198 -- each registration
gets a publish (§5): an iq set from the account's bare JID to the app server, with a
``urn:xmpp:push:summary`` form in ``<notification/>`` and the stored publish-options. MUC/Sub
events and other messages routed to the account's bare JID count too. What the summary tells
is ``[push] include``: "count" (message-count only), "sender" (plus last-message-sender) or
"body" (plus last-message-body, except for an end-to-end encrypted message, whose body is only
a fallback text). The count is of messages since the account was last online. The app server
may be an account or an external component (XEP-0114, ``xmppd/features/component``).
Publishing runs in the background and never delays delivery; an app server that answers
with an error of type cancel or auth loses the registration (§6).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from lxml import etree

from ...config import OneOf, Positive, PositiveInt
from ...core import hooks as H
from ...core.dispatch import IqRequest, Target
from ...core.feature import Feature, hook, iq_handler
from ...core.hooks import Delivery, Flow, Routed, SessionEvent
from ...errors import Condition, StanzaError
from ...jid import JID, JIDError
from ...xml import ns
from .repository import PushRegistration, SqlPushRepository

__all__ = ["Push", "PushOptions", "PUSH"]

PUSH = "urn:xmpp:push:0"
SUMMARY = "urn:xmpp:push:summary"
PUBSUB = "http://jabber.org/protocol/pubsub"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
_X = f"{{{ns.DATA_FORMS}}}x"
_BODY = f"{{{ns.CLIENT}}}body"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


@dataclass(frozen=True, slots=True)
class PushOptions:
    # What a notification tells the app server: "count", "sender" or "body".
    include: Annotated[str, OneOf("count", "sender", "body")] = "sender"
    # Push registrations one account may hold.
    max_registrations: PositiveInt = 5
    # Seconds to wait for the app server's answer.
    timeout: Positive = 10.0


class Push(Feature):
    name = "push"
    implements = ("XEP-0357",)
    account_disco_features = (PUSH,)
    Options = PushOptions
    migrations = str(Path(__file__).parent / "migrations")

    async def setup(self) -> None:
        self.repo = SqlPushRepository(self.ctx.db)
        self._pending: dict[JID, int] = {}  # messages since the account was last online

    # ---------------------------------------------------------------- enable / disable

    def _own(self, req: IqRequest) -> JID:
        if not req.is_self or req.origin is None:
            raise StanzaError(Condition.FORBIDDEN, "push notifications are enabled by the account's own clients")
        return req.to.bare

    @staticmethod
    def _service(el: etree._Element) -> str:
        try:
            return str(JID.parse(el.get("jid") or ""))
        except (JIDError, ValueError) as exc:
            raise StanzaError(Condition.JID_MALFORMED, f"jid: {exc}") from None

    @iq_handler("set", f"{{{PUSH}}}enable", target=Target.BARE)
    async def enable(self, req: IqRequest) -> None:
        owner = self._own(req)
        el = req.payload
        service = self._service(el)
        node = el.get("node") or ""
        if not node:
            raise StanzaError(Condition.BAD_REQUEST, "enable needs a node")
        if len(node) > 191 or len(service) > 191:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "jid or node longer than 191 characters")
        options = ""
        x = el.find(_X)
        if x is not None:
            ftype = next((f.findtext(f"{{{ns.DATA_FORMS}}}value") for f in x if f.get("var") == "FORM_TYPE"), None)
            if ftype != PUBLISH_OPTIONS:
                raise StanzaError(Condition.BAD_REQUEST, f"the publish options form's FORM_TYPE must be {PUBLISH_OPTIONS}")
            options = etree.tostring(x, encoding="unicode")
        ok = await self.repo.enable(owner.local, owner.domain, PushRegistration(service, node, options), self.options.max_registrations)  # type: ignore[arg-type]
        if not ok:
            raise StanzaError(Condition.RESOURCE_CONSTRAINT, f"at most {self.options.max_registrations} push registrations per account")

    @iq_handler("set", f"{{{PUSH}}}disable", target=Target.BARE)
    async def disable(self, req: IqRequest) -> None:
        owner = self._own(req)
        service = self._service(req.payload)
        n = await self.repo.disable(owner.local, owner.domain, service, req.payload.get("node"))  # type: ignore[arg-type]
        if not n:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such push registration")

    # ---------------------------------------------------------------- triggers

    @hook(H.MESSAGE_UNDELIVERED, priority=50)
    async def on_undelivered(self, r: Routed) -> Flow:
        if r.to is not None and r.to.local is not None and _notifiable(r.stanza):
            self._notify(r.to.bare, r.stanza, r.from_jid)
        return Flow.CONTINUE

    @hook(H.DELIVER, priority=-200)
    def on_deliver(self, d: Delivery) -> Flow:  # (never awaits: a plain function, see core.hooks)
        session = d.session
        if d.kind != "message" or not session.hibernating or session.jid is None or not _notifiable(d.stanza):
            return Flow.CONTINUE
        bare = session.jid.bare
        others = self.ctx.sessions.of(bare)
        if any(not s.hibernating and s.available for s in others):
            return Flow.CONTINUE  # someone is online to read it
        # Several hibernating resources get the same message: one notification.
        hibernating = [s for s in others if s.hibernating]
        if hibernating and session is hibernating[0]:
            frm = d.stanza.get("from")
            try:
                sender = JID.parse(frm) if frm else JID(None, self.ctx.domain)
            except (JIDError, ValueError):
                sender = JID(None, self.ctx.domain)
            self._notify(bare, d.stanza, sender)
        return Flow.CONTINUE

    @hook(H.SESSION_BOUND)
    async def on_bound(self, ev: SessionEvent) -> Flow:
        if ev.session.jid is not None:
            self._pending.pop(ev.session.jid.bare, None)
        return Flow.CONTINUE

    def _notify(self, bare: JID, msg: etree._Element, sender: JID) -> None:
        count = self._pending.get(bare, 0) + 1
        self._pending[bare] = count
        # An end-to-end encrypted message's body is only a fallback text ("I sent you an OMEMO
        # encrypted message"): no preview then, the app shows its own text.
        body = None if _encrypted(msg) else msg.findtext(_BODY)
        self.ctx.spawn(self._publish_all(bare, count, sender, body), "push-publish")

    async def _publish_all(self, bare: JID, count: int, sender: JID, body: str | None) -> None:
        regs = await self.repo.of(bare.local, bare.domain)  # type: ignore[arg-type]
        if regs:
            await asyncio.gather(*(self._publish(bare, reg, count, sender, body) for reg in regs))

    def publish_stanza(self, bare: JID, reg: PushRegistration, count: int, sender: JID, body: str | None) -> etree._Element:
        """The §5 publish: summary form in <notification/>, the client's publish-options."""
        iq = etree.Element(ns.IQ, {"type": "set", "from": str(bare), "to": reg.service}, nsmap={None: ns.CLIENT})
        pubsub = etree.SubElement(iq, f"{{{PUBSUB}}}pubsub", nsmap={None: PUBSUB})
        publish = etree.SubElement(pubsub, f"{{{PUBSUB}}}publish", {"node": reg.node})
        item = etree.SubElement(publish, f"{{{PUBSUB}}}item")
        note = etree.SubElement(item, f"{{{PUSH}}}notification", nsmap={None: PUSH})
        x = etree.SubElement(note, _X, {"type": "submit"}, nsmap={None: ns.DATA_FORMS})
        fields = [("FORM_TYPE", SUMMARY), ("message-count", str(count))]
        if self.options.include in ("sender", "body"):
            fields.append(("last-message-sender", str(sender)))
        if self.options.include == "body" and body:
            fields.append(("last-message-body", body))
        for var, value in fields:
            f = etree.SubElement(x, f"{{{ns.DATA_FORMS}}}field", {"var": var})
            if var == "FORM_TYPE":
                f.set("type", "hidden")
            etree.SubElement(f, f"{{{ns.DATA_FORMS}}}value").text = value
        if reg.options:
            po = etree.SubElement(pubsub, f"{{{PUBSUB}}}publish-options")
            po.append(etree.fromstring(reg.options, _PARSER))
        return iq

    async def _publish(self, bare: JID, reg: PushRegistration, count: int, sender: JID, body: str | None) -> None:
        iq = self.publish_stanza(bare, reg, count, sender, body)
        try:
            reply = await self.ctx.send_iq(iq, self.options.timeout)
        except TimeoutError:
            self.log.info("push to %s for %s: no answer", reg.service, bare)
            return
        if reply.get("type") == "error":
            err = reply.find(f"{{{ns.CLIENT}}}error")
            etype = err.get("type") if err is not None else None
            self.log.info("push to %s for %s failed (%s)", reg.service, bare, etype)
            if etype in ("cancel", "auth"):
                await self.repo.disable(bare.local, bare.domain, reg.service, reg.node)  # type: ignore[arg-type]


# XEP-0380 explicit encryption, OMEMO (0.3 and 2), OpenPGP for XMPP, legacy OpenPGP (XEP-0027).
_ENCRYPTED = frozenset((
    "{urn:xmpp:eme:0}encryption",
    "{eu.siacs.conversations.axolotl}encrypted",
    "{urn:xmpp:omemo:2}encrypted",
    "{urn:xmpp:openpgp:0}openpgp",
    "{jabber:x:encrypted}x",
))


def _encrypted(msg: etree._Element) -> bool:
    return any(child.tag in _ENCRYPTED for child in msg)


def _notifiable(msg: etree._Element) -> bool:
    """Messages worth waking a phone for: with a body, or a MUC/Sub event (§ groups)."""
    typ = msg.get("type") or "normal"
    if typ in ("error", "headline"):
        return False
    for child in msg:
        tag = child.tag
        if tag == _BODY or tag == "{http://jabber.org/protocol/pubsub#event}event":
            return True
    return False

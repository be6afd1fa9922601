"""XEP-0280: Message Carbons (urn:xmpp:carbons:2).

A resource enables carbons with ``<iq type='set'><enable xmlns='urn:xmpp:carbons:2'/></iq>``
(``<disable/>`` turns them off; kept in ``session.data["carbons"]``). Then it gets a copy of
what its account's other resources send (``<sent>``) and receive (``<received>``), each
wrapped in ``<forwarded xmlns='urn:xmpp:forward:0'>``, from the account's bare JID.

Eligible (§6): type chat, or type normal with a body; never groupchat, headline or error,
never a message carrying ``<private xmlns='urn:xmpp:carbons:2'/>`` or the XEP-0334
``<no-copy/>`` hint, never a message the server re-delivers (a XEP-0203 delay from this
server: offline storage, stream management re-routing). A resource that gets the message
itself gets no copy of it. Only the server authors carbons: a client's ``<sent>``/
``<received>`` in a message it sends is removed before routing (§11).
"""
from __future__ import annotations

import copy as _copy
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from lxml import etree

from ..core import hooks as H
from ..core.dispatch import IqRequest, Target
from ..core.fanout import attr
from ..core.feature import Feature, hook, iq_handler
from ..core.hooks import Flow, Routed
from ..core.server_owned import owned
from ..errors import Condition, StanzaError
from ..jid import JID
from ..xml import ns

if TYPE_CHECKING:
    from ..core.session import Session

__all__ = ["Carbons", "CARBONS"]

CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"
_SENT = f"{{{CARBONS}}}sent"
_RECEIVED = f"{{{CARBONS}}}received"
_PRIVATE = f"{{{CARBONS}}}private"
_NO_COPY = f"{{{ns.HINTS}}}no-copy"
_BODY = f"{{{ns.CLIENT}}}body"
_DELAY = f"{{{ns.DELAY}}}delay"
_KEY = "carbons"
_WRAP_NAME = {_SENT: "sent", _RECEIVED: "received"}
_WRAP = {w: f'<{name} xmlns="{CARBONS}"><forwarded xmlns="{FORWARD}">' for w, name in _WRAP_NAME.items()}


class Carbons(Feature):
    name = "carbons"
    implements = ("XEP-0280", "XEP-0297")
    disco_features = (CARBONS,)
    server_owned = owned(CARBONS, "sent", "received")  # XEP-0280 §11: only the server makes copies

    # ---------------------------------------------------------------- enable / disable

    @iq_handler("set", f"{{{CARBONS}}}enable")
    async def enable(self, req: IqRequest) -> None:
        self._toggle(req, True)

    @iq_handler("set", f"{{{CARBONS}}}enable", target=Target.BARE)
    async def enable_bare(self, req: IqRequest) -> None:
        self._toggle(req, True)

    @iq_handler("set", f"{{{CARBONS}}}disable")
    async def disable(self, req: IqRequest) -> None:
        self._toggle(req, False)

    @iq_handler("set", f"{{{CARBONS}}}disable", target=Target.BARE)
    async def disable_bare(self, req: IqRequest) -> None:
        self._toggle(req, False)

    async def setup(self) -> None:
        self.ctx.on_teardown(self.ctx.router.add_check("carbons", self.enabled))

    def _toggle(self, req: IqRequest, on: bool) -> None:
        if req.origin is None or (req.to.local is not None and not req.is_self):
            raise StanzaError(Condition.FORBIDDEN, "carbons are enabled by a resource for itself")
        if on:
            req.origin.data[_KEY] = True
        else:
            req.origin.data.pop(_KEY, None)

    def enabled(self, session: object) -> bool:
        """Public: does this session get carbons?"""
        return bool(getattr(session, "data", {}).get(_KEY))

    # ---------------------------------------------------------------- copies

    @hook(H.STANZA_IN, priority=-100)
    def on_sent(self, r: Routed) -> "Flow | Awaitable[Flow]":
        origin = r.origin
        if r.kind != "message" or origin is None or origin.jid is None:
            return Flow.CONTINUE
        sessions = self.ctx.sessions.of(origin.jid.bare)
        clustered = self.ctx.router.clustered
        if (len(sessions) < 2 and not clustered) or not _eligible(r.stanza, self.ctx.domain):
            return Flow.CONTINUE  # no other resource to copy to (the usual case): done, without a coroutine
        return self._sent_copies(r, origin, sessions, clustered)

    async def _sent_copies(self, r: Routed, origin: "Session", sessions: "list[Session]", clustered: bool) -> Flow:
        assert origin.jid is not None
        to = r.to
        if clustered:  # the account's resources on the other nodes
            self._elsewhere(origin.jid.bare, r.stanza, _SENT, to if to is not None and to.bare == origin.jid.bare else None)
        for s in sessions:
            # A message to one's own other resource is received there; no copy for it.
            if s is origin or not s.data.get(_KEY) or (to is not None and s.jid == to):
                continue
            await self._copy(s, r.stanza, _SENT)
        return Flow.CONTINUE

    @hook(H.MESSAGE_FULL, priority=-100)
    def on_full(self, r: Routed) -> "Flow | Awaitable[Flow]":
        to = r.to
        if to is None:
            return Flow.CONTINUE
        sessions = self.ctx.sessions.of(to.bare)
        clustered = self.ctx.router.clustered
        if len(sessions) < 2 and not clustered:
            return Flow.CONTINUE  # the recipient's only resource (or none): no copies, no coroutine
        return self._received_copies(r, to, sessions, clustered)

    async def _received_copies(self, r: Routed, to: JID, sessions: "list[Session]", clustered: bool) -> Flow:
        if not _eligible(r.stanza, self.ctx.domain) or (self.ctx.sessions.get(to) is None and not clustered):
            return Flow.CONTINUE
        if _from_self(r):
            return Flow.CONTINUE  # the sent carbon covers the account's resources
        if clustered:  # the recipient may be bound on another node; its other resources anywhere
            self._elsewhere(to.bare, r.stanza, _RECEIVED, to)
        for s in sessions:
            if s.jid != to and s.data.get(_KEY):
                await self._copy(s, r.stanza, _RECEIVED)
        return Flow.CONTINUE

    @hook(H.MESSAGE_BARE, priority=-100)
    async def on_bare(self, r: Routed) -> Flow:
        to = r.to
        if to is None or not _eligible(r.stanza, self.ctx.domain) or _from_self(r):
            return Flow.CONTINUE
        sessions = self.ctx.sessions.of(to)
        if not any(s.data.get(_KEY) for s in sessions):
            return Flow.CONTINUE
        # RFC 6121 §8.5.2.1.1: the available resources of highest non-negative priority get it.
        top = max((s.priority for s in sessions if s.available and s.priority >= 0), default=None)
        for s in sessions:
            if s.data.get(_KEY) and not (s.available and s.priority == top):
                await self._copy(s, r.stanza, _RECEIVED)
        return Flow.CONTINUE

    def _elsewhere(self, account: "JID", msg: etree._Element, wrapper: str, exclude: "JID | None") -> None:
        """The copy for ``account``'s resources on the other nodes that enabled carbons there.

        Made as text around the message serialised once (what ``_copy`` builds as elements: the
        same XML): it runs for every eligible message in a cluster, and most accounts have no
        resource elsewhere (the look-up is the outbox's, in Redis)."""
        self.ctx.router.to_resources_elsewhere(account, copy_text(account, msg, wrapper), "message",
                                               exclude=exclude, only_if="carbons")

    async def _copy(self, session: object, msg: etree._Element, wrapper: str) -> None:
        jid = session.jid  # type: ignore[attr-defined]
        out = etree.Element(ns.MESSAGE, {"from": str(jid.bare), "to": str(jid), "type": msg.get("type") or "normal"}, nsmap={None: ns.CLIENT})
        w = etree.SubElement(out, wrapper, nsmap={None: CARBONS})
        fwd = etree.SubElement(w, f"{{{FORWARD}}}forwarded", nsmap={None: FORWARD})
        inner = _copy.deepcopy(msg)
        fwd.append(inner)
        await self.ctx.router.deliver_to(jid, out, "message")


def copy_text(account: JID, msg: etree._Element, wrapper: str) -> str:
    """The carbon copy of ``msg`` (``wrapper``: ``{urn:xmpp:carbons:2}sent`` or ``received``)
    from ``account``, without ``to``, serialised: the XML ``Carbons._copy`` builds as elements."""
    return (f'<message xmlns="jabber:client" from="{attr(str(account)).decode()}" type="{attr(msg.get("type") or "normal").decode()}">'
            f'{_WRAP[wrapper]}{etree.tostring(msg, encoding="unicode")}</forwarded></{_WRAP_NAME[wrapper]}></message>')


def _from_self(r: Routed) -> bool:
    to = r.to
    return to is not None and r.from_jid.local == to.local and r.from_jid.domain == to.domain


def _eligible(msg: etree._Element, domain: str) -> bool:
    typ = msg.get("type") or "normal"
    if typ not in ("chat", "normal"):
        return False
    body = False
    for child in msg:
        tag = child.tag
        if tag == _BODY:
            body = True
        elif tag in (_PRIVATE, _NO_COPY, _SENT, _RECEIVED):
            return False
        elif tag == _DELAY and child.get("from") == domain:
            return False
    return typ == "chat" or body

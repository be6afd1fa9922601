"""RFC 6120 §10 / RFC 6121 §8: where a stanza goes.

``Router.route`` classifies by kind (message/presence/iq) x target (host, bare, full) x owner
(the local domain, a service domain like ``conference.example.com``, or elsewhere). Features
never look up sessions to deliver; they hand stanzas back to the router, which runs the
delivery hooks and writes to the session. A cluster router would implement the same surface.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from lxml import etree

from ..errors import Condition, StanzaError
from ..jid import JID
from ..xml import ns
from ..xml.builder import error_reply
from . import hooks as H
from .dispatch import NO_REPLY, IqRequest, IqTable, IqTracker, Target
from .hooks import Delivery, Flow, HookChains, Routed

if TYPE_CHECKING:
    from .session import Session
    from .sessions import SessionRegistry

log = logging.getLogger(__name__)
_tostring = etree.tostring


class Service(Protocol):
    """A service domain (MUC, customer service ...): receives every stanza addressed to it."""

    async def receive(self, routed: Routed) -> None: ...


# A predicate deciding whether a client-supplied element is one only the server may author.
ServerOnlyCheck = Callable[[etree._Element, "Router"], bool]


class Router:
    def __init__(self, domain: str, sessions: "SessionRegistry", hooks: HookChains, iq_table: IqTable, tracker: IqTracker) -> None:
        self.domain = domain
        self.sessions = sessions
        self.hooks = hooks
        self.iq_table = iq_table
        self.tracker = tracker
        self.services: dict[str, Service] = {}
        # qname -> check; a client stanza's children with these qnames are removed when the
        # check says the server is their only author (stanza-id by us, delay from us, ...).
        self._server_only: dict[str, ServerOnlyCheck] = {}
        self._server_only_tags: frozenset[str] = frozenset()

    # ---------------------------------------------------------------- registration

    def add_service(self, domain: str, service: Service) -> Callable[[], None]:
        if domain in self.services or domain == self.domain:
            raise ValueError(f"domain {domain} is already served")
        self.services[domain] = service

        def remove() -> None:
            self.services.pop(domain, None)

        return remove

    def add_server_only(self, qname: str, check: ServerOnlyCheck) -> Callable[[], None]:
        if qname in self._server_only:
            raise ValueError(f"{qname} is already declared server-only")
        self._server_only[qname] = check
        self._server_only_tags = frozenset(self._server_only)

        def remove() -> None:
            self._server_only.pop(qname, None)
            self._server_only_tags = frozenset(self._server_only)

        return remove

    def is_local(self, domain: str) -> bool:
        return domain == self.domain or domain in self.services

    # ---------------------------------------------------------------- entry points

    async def from_client(self, session: "Session", stanza: etree._Element, kind: str, to: JID | None) -> None:
        """A stanza from a bound client: ``from`` is stamped by the stream core already."""
        tags = self._server_only_tags
        if tags:
            for child in stanza:
                if child.tag in tags and self._server_only[child.tag](child, self):
                    stanza.remove(child)
        routed = Routed(stanza, kind, session.jid, to, session)  # type: ignore[arg-type]
        if self.hooks.has(H.STANZA_IN) and await self.hooks.run(H.STANZA_IN, routed) is Flow.STOP:
            return
        if (kind == "message" and to is not None and to.local is not None and to.domain == self.domain
                and stanza.get("type") != "error" and self.hooks.has(H.SPEECH)):
            try:
                await self.may_speak(H.Speech(session.jid.bare, to, stanza))  # type: ignore[union-attr]
            except StanzaError as err:
                self.bounce(routed, err)
                return
        await self.route(routed)

    async def may_speak(self, speech: H.Speech) -> None:
        """The one-to-one speech gate (``hooks.SPEECH``): raises ``StanzaError`` when vetoed."""
        if self.hooks.has(H.SPEECH) and await self.hooks.run(H.SPEECH, speech) is Flow.STOP:
            raise StanzaError(Condition.FORBIDDEN, "you may not send this message")

    async def send(self, stanza: etree._Element, *, kind: str | None = None) -> None:
        """Route a stanza made by the server or a service (its ``from`` must be set)."""
        to_s = stanza.get("to")
        routed = Routed(
            stanza,
            kind or etree.QName(stanza).localname,
            JID.parse(stanza.get("from") or self.domain),
            JID.parse(to_s) if to_s else None,
            None,
        )
        await self.route(routed)

    async def route(self, r: Routed) -> None:
        to = r.to
        if to is None:
            if r.kind == "presence":
                origin = r.origin
                if origin is not None and r.stanza.get("type") in (None, "unavailable"):
                    # RFC 6121 §4.2/§4.5: the session's availability and priority decide
                    # where messages to the bare JID go; subscribers are the presence feature's.
                    _track_presence(origin, r.stanza)
                    await self.hooks.run(H.PRESENCE_BROADCAST, r)
                    return
                to = r.from_jid.bare
            elif r.kind == "iq":
                to = r.from_jid.bare  # RFC 6120 §10.3.3: on behalf of the account
            else:
                to = r.from_jid.bare
            r.to = to
        domain = to.domain
        if domain == self.domain:
            if to.local is None:
                await self._to_host(r)
            elif to.resource is None:
                await self._to_bare(r)
            else:
                await self._to_full(r)
            return
        service = self.services.get(domain)
        if service is not None:
            await service.receive(r)
            return
        # No server-to-server yet: every other domain is unreachable.
        self.bounce(r, StanzaError(Condition.REMOTE_SERVER_NOT_FOUND, f"{domain} is not served here and federation is off"))

    # ---------------------------------------------------------------- by target

    async def _to_host(self, r: Routed) -> None:
        if r.kind == "iq":
            await self.dispatch_iq(r, Target.HOST)
        elif r.kind == "message":
            if await self.hooks.run(H.MESSAGE_HOST, r) is Flow.CONTINUE and r.stanza.get("type") != "error":
                self.bounce(r, StanzaError(Condition.SERVICE_UNAVAILABLE, "the server takes no messages"))
        else:
            await self.hooks.run(H.PRESENCE_HOST, r)

    async def _to_bare(self, r: Routed) -> None:
        if r.kind == "message":
            if await self.hooks.run(H.MESSAGE_BARE, r) is Flow.CONTINUE:
                await self.deliver_message_to_bare(r)
        elif r.kind == "presence":
            if await self.hooks.run(H.PRESENCE_BARE, r) is Flow.CONTINUE:
                # Directed available/unavailable presence to a bare JID: all available resources.
                if r.stanza.get("type") in (None, "unavailable"):
                    for s in self.sessions.of(r.to):  # type: ignore[arg-type]
                        if s.available:
                            await self.deliver(s, r.stanza, "presence")
        else:
            await self.dispatch_iq(r, Target.BARE)

    async def _to_full(self, r: Routed) -> None:
        to = r.to
        assert to is not None
        kind = r.kind
        if kind == "message":
            if await self.hooks.run(H.MESSAGE_FULL, r) is Flow.STOP:
                return
        elif kind == "presence":
            if await self.hooks.run(H.PRESENCE_FULL, r) is Flow.STOP:
                return
        session = self.sessions.get(to)
        if session is not None:
            await self.deliver(session, r.stanza, kind)
            return
        # RFC 6121 §8.5.3.2: no such resource.
        if kind == "message":
            typ = r.stanza.get("type")
            if typ in (None, "normal", "chat"):
                await self.deliver_message_to_bare(r)
            elif typ == "error":
                return
            # groupchat and headline to a gone resource are dropped silently
        elif kind == "iq":
            if r.stanza.get("type") in ("get", "set"):
                self.bounce(r, StanzaError(Condition.SERVICE_UNAVAILABLE, "the recipient is not available"))
            elif r.to == r.to.bare or r.to.domain == self.domain:
                self.tracker.resolve(r.stanza, r.from_jid)
        # presence to an unavailable full JID: dropped (probes/subscriptions go to the bare hook)
        elif r.stanza.get("type") in ("subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"):
            r.to = to.bare
            await self._to_bare(r)

    async def deliver_message_to_bare(self, r: Routed) -> None:
        """RFC 6121 §8.5.2: to the available resources of highest non-negative priority."""
        bare = r.to.bare if r.to is not None else r.from_jid.bare
        typ = r.stanza.get("type") or "normal"
        if typ == "groupchat":
            self.bounce(r, StanzaError(Condition.SERVICE_UNAVAILABLE, "groupchat messages go to rooms"))
            return
        best: list[Session] = []
        top = -1
        for s in self.sessions.of(bare):
            if not s.available or s.priority < 0:
                continue
            if typ == "headline":
                best.append(s)
            elif s.priority > top:
                top = s.priority
                best = [s]
            elif s.priority == top:
                best.append(s)
        if best:
            for s in best:
                await self.deliver(s, r.stanza, "message")
            return
        if typ == "error":
            return
        if await self.hooks.run(H.MESSAGE_UNDELIVERED, r) is Flow.STOP:
            return
        if typ in ("normal", "chat"):
            self.bounce(r, StanzaError(Condition.SERVICE_UNAVAILABLE, "the recipient is not available"))

    async def deliver(self, session: "Session", stanza: etree._Element, kind: str) -> None:
        """Write ``stanza`` to ``session`` after the delivery hooks (blocking, CSI ...)."""
        if self.hooks.has(H.DELIVER):
            if await self.hooks.run(H.DELIVER, Delivery(session, stanza, kind)) is Flow.STOP:
                return
        session.send(stanza)

    async def deliver_bytes(self, session: "Session", data: bytes, stanza: etree._Element, kind: str) -> None:
        """Fan-out: write ``data`` (``stanza`` serialised) after the delivery hooks, if any.

        ``stanza`` may be shared between recipients (MUC sets its ``to`` per call): a DELIVER
        hook that keeps it for later must copy it, and changes a hook makes to it are not sent.
        """
        if self.hooks.has(H.DELIVER):
            if await self.hooks.run(H.DELIVER, Delivery(session, stanza, kind)) is Flow.STOP:
                return
        session.send_bytes(data)

    # ---------------------------------------------------------------- iq

    async def dispatch_iq(self, r: Routed, target: Target) -> None:
        stanza = r.stanza
        typ = stanza.get("type")
        to = r.to
        assert to is not None
        if typ in ("result", "error"):
            if target is Target.HOST or (target is Target.BARE and to.domain == self.domain):
                self.tracker.resolve(stanza, r.from_jid)
            return
        payload = stanza[0] if len(stanza) else None
        if payload is None:
            self.bounce(r, StanzaError(Condition.BAD_REQUEST, "an iq get/set carries one payload"))
            return
        handler = self.iq_table.lookup(typ, target, to.domain, payload.tag)  # type: ignore[arg-type]
        if handler is None:
            if target is Target.BARE and to.domain == self.domain and not self._is_self(r) and typ in ("get", "set"):
                # RFC 6121 §8.5.1 / §8.5.2.1.3: an iq to a contact's bare JID with no server handler.
                self.bounce(r, StanzaError(Condition.SERVICE_UNAVAILABLE, "no handler for this request"))
                return
            if self.iq_table.known(target, to.domain, payload.tag):
                err = StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"iq {typ} is not supported for this payload")
            else:
                err = StanzaError(Condition.SERVICE_UNAVAILABLE, f"no handler for {payload.tag}")
            self.bounce(r, err)
            return
        request = IqRequest(stanza, payload, typ, r.from_jid, to, r.origin)  # type: ignore[arg-type]
        try:
            result = await handler(request)
        except StanzaError as err:
            self.bounce(r, err)
            return
        except Exception:
            log.exception("iq handler failed for %s (id %s)", payload.tag, stanza.get("id"))
            self.bounce(r, StanzaError(Condition.INTERNAL_SERVER_ERROR, "the server failed to process this request"))
            return
        if result is NO_REPLY:
            return
        reply = etree.Element(ns.IQ, {"type": "result"}, nsmap={None: ns.CLIENT})
        if stanza.get("id") is not None:
            reply.set("id", stanza.get("id"))  # type: ignore[arg-type]
        reply.set("to", str(r.from_jid))
        if stanza.get("to") is not None:
            reply.set("from", stanza.get("to"))  # type: ignore[arg-type]
        if result is not None:
            reply.append(result)
        await self._reply(r, reply)

    def _is_self(self, r: Routed) -> bool:
        return r.to is not None and r.to.local == r.from_jid.local and r.to.domain == r.from_jid.domain

    async def _reply(self, r: Routed, reply: etree._Element) -> None:
        origin = r.origin
        if origin is not None and not origin.is_closed and origin.jid == r.from_jid:
            origin.send(reply)
        else:
            await self.send(reply)

    # ---------------------------------------------------------------- errors

    def bounce(self, r: Routed, err: StanzaError) -> None:
        """Answer ``r`` with an error, unless it is an error or result itself (no loops)."""
        stanza = r.stanza
        typ = stanza.get("type")
        if typ == "error" or (r.kind == "iq" and typ == "result"):
            return
        if r.kind == "presence":
            return  # RFC 6121: presence errors are not generated for undeliverable presence
        reply = error_reply(stanza, err)
        if stanza.get("to") is None and r.to is not None:
            reply.set("from", str(r.to))
        origin = r.origin
        if origin is not None and not origin.is_closed:
            origin.send(reply)
        else:
            to_s = reply.get("to")
            if not to_s:
                return
            session = self.sessions.get(JID.parse(to_s))
            if session is not None:
                session.send(reply)


_PRIORITY = f"{{{ns.CLIENT}}}priority"


def _track_presence(session: "Session", stanza: etree._Element) -> None:
    if stanza.get("type") == "unavailable":
        session.available = False
        session.presence = None
        return
    priority = 0
    text = stanza.findtext(_PRIORITY)
    if text:
        try:
            priority = max(-128, min(127, int(text.strip())))
        except ValueError:
            priority = 0
    session.available = True
    session.priority = priority
    session.presence = stanza

"""RFC 4505 / XEP-0175: the anonymous host, where website visitors log in with SASL ANONYMOUS.

One object, made by the server only when ``anonymous.domain`` is set (docs/auth.md, "Anonymous
visitors"); with the option empty nothing here exists and the login path of ``server.domain``
does no work for it.

* **Admission** (``admit``, asked by the session driver when a client sends ANONYMOUS): logins
  per address per minute, sessions at once in all and per address (``core.limits`` counters);
  a refusal is the SASL failure ``temporary-auth-failure``, logged. An admitted login gets a
  fresh unguessable node, ``<32 hex digits>@domain``; ``release`` gives its slot back when the
  connection ends.
* **Its domain** (``receive``, a router service like a MUC domain): what is addressed to a guest
  reaches its live session or nobody -- no account, no roster, no offline storage, no archive.
  In a cluster, a guest connected to another node is reached there (the stanza is relayed to
  that node, which routes it again, ``Routed.relayed``); an error another node answers a
  guest's stanza with crosses back like one for an account (``Router.session_domains``).
  Messages to a guest who is gone bounce ``service-unavailable``; subscriptions are dropped.
  The guest's own requests to its account are answered here: an empty roster, ping, disco#info;
  anything else (vCard, private storage, PEP, blocking, MAM ...) is ``service-unavailable``.
* **What guests may send** (``_stanza_in``, set by ``admit`` as the session's ``inbound``: the
  router hands it every stanza of a guest session instead of the ``STANZA_IN`` chain, so no
  feature stores anything in a guest's name, and other sessions' stanzas never come here): to the customer-service domain, to the ``anonymous.allow_to`` domains and bare JIDs,
  iq get to the server itself, and to their own address. Anything else is ``forbidden``.
  Initial presence only marks the session available (there is nobody to broadcast it to).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from lxml import etree

from .. import tokens
from ..config import AnonymousOptions
from ..errors import Condition, StanzaError
from ..i18n import core_error
from ..jid import JID
from ..xml import ns
from ..xml.builder import iq_result
from . import hooks as H
from .hooks import Routed
from .limits import ConnectionCounter, SlidingCounter, address_key
from .router import _track_presence

if TYPE_CHECKING:
    from .router import Router
    from .session import Session

log = logging.getLogger(__name__)

#: Where a guest's slot is kept in ``Session.data``: the address key it counts against.
SLOT = "_guest"
_ROSTER = "jabber:iq:roster"
_SUBSCRIPTIONS = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"})
_CHATTY = frozenset({"normal", "chat"})


class Guests:
    """The anonymous host of one node: admission, its domain, and its visitors' policy."""

    def __init__(self, options: AnonymousOptions, router: "Router", clock: Callable[[], float]) -> None:
        self.domain = JID.parse(options.domain).domain
        self.options = options
        self.router = router
        self.logins = SlidingCounter(options.logins_per_ip_per_minute, 60.0, clock=clock)
        self.per_address = ConnectionCounter(options.max_sessions_per_ip)
        self.sessions = 0  # admitted and not yet released, on this node
        self.allowed_domains: frozenset[str] = frozenset()
        self.allowed_jids: frozenset[JID] = frozenset()

    def start(self, cs_domain: str | None) -> list[Callable[[], None]]:
        """Serve the domain; returns what undoes it. (Guests' own stanzas come through their
        sessions, ``admit``.)"""
        domains = {cs_domain} if cs_domain else set()
        jids = set()
        for entry in self.options.allow_to:
            j = JID.parse(entry)
            if j.local is None:
                domains.add(j.domain)
            else:
                jids.add(j)
        self.allowed_domains = frozenset(domains)
        self.allowed_jids = frozenset(jids)
        self.router.session_domains.add(self.domain)  # errors from other nodes reach guests (bounce)
        return [
            lambda: self.router.session_domains.discard(self.domain),
            self.router.add_service(self.domain, self),
        ]

    # ---------------------------------------------------------------- admission

    def admit(self, session: "Session") -> str | None:
        """A new guest's node, or None (logged) when a limit says no."""
        key = address_key(session.peer)
        o = self.options
        why = None
        if self.logins.exceeded(key):
            why = f"more than {o.logins_per_ip_per_minute} anonymous logins a minute from {key} (anonymous.logins_per_ip_per_minute)"
        elif self.sessions >= o.max_sessions:
            why = f"{self.sessions} anonymous sessions already (anonymous.max_sessions)"
        elif not self.per_address.acquire(key):
            why = f"{o.max_sessions_per_ip} anonymous sessions from {key} already (anonymous.max_sessions_per_ip)"
        if why is not None:
            session.log.info("anonymous login refused: %s", why)
            return None
        self.logins.add(key)
        self.sessions += 1
        session.data[SLOT] = key
        session.inbound = self._stanza_in  # its stanzas: here alone, past the STANZA_IN chain
        return tokens.token_hex(16)

    def release(self, session: "Session") -> None:
        """The connection of ``session`` ended: its slot is free (once)."""
        key = session.data.pop(SLOT, None)
        if key is not None:
            self.per_address.release(key)
            self.sessions -= 1

    # ---------------------------------------------------------------- what guests send

    async def _stanza_in(self, r: Routed) -> None:
        """A stanza of a guest session (``Session.inbound``): routed when allowed, else bounced."""
        origin = r.origin
        assert origin is not None
        me = r.from_jid
        to = r.to
        if to is None:
            if r.kind == "presence":
                if r.stanza.get("type") in (None, "unavailable"):
                    _track_presence(origin, r.stanza)  # nobody to broadcast to: no roster
                return
            to = r.to = me.bare
        if self._allowed(me, to, r):
            if r.kind == "message" and to.local is not None and to.domain == self.router.domain and r.stanza.get("type") != "error":
                try:
                    await self.router.may_speak(H.Speech(me.bare, to, r.stanza))
                except StanzaError as err:
                    self.router.bounce(r, err)
                    return
            await self.router.route(r)
        else:
            log.debug("%s may not send %s to %s", me, r.kind, to)
            self.router.bounce(r, core_error(Condition.FORBIDDEN, "guest_forbidden"))

    def _allowed(self, me: JID, to: JID, r: Routed) -> bool:
        domain = to.domain
        if domain == self.domain:
            return to.local is None or to.bare == me.bare
        if domain in self.allowed_domains or to.bare in self.allowed_jids:
            return True
        # The server itself: its public information (disco, ping, time, version), and answers
        # to what it asked; never a change (registration, commands, announcements).
        return domain == self.router.domain and to.local is None and r.kind == "iq" and r.stanza.get("type") != "set"

    # ---------------------------------------------------------------- to the guests' domain

    async def receive(self, r: Routed) -> None:
        to = r.to
        assert to is not None
        kind = r.kind
        typ = r.stanza.get("type")
        if kind == "iq" and (to.resource is None or to.local is None):
            await self._iq_to_account(r, to, typ)
            return
        if to.local is None:
            if kind == "message" and typ != "error":
                self.router.bounce(r, core_error(Condition.SERVICE_UNAVAILABLE, "no_messages"))
            return
        if kind == "presence" and typ in _SUBSCRIPTIONS:
            return  # no roster: nobody subscribes to a guest, nor is asked to
        sessions = self.router.sessions
        if to.resource is not None:
            one = sessions.get(to)
            targets = [one] if one is not None else []
        else:
            targets = []
        if not targets and kind == "message":
            # A guest has one session and nowhere else to keep a message: it gets it, whether
            # or not it sent presence (a widget may not).
            targets = sessions.of(to.bare)
        elif not targets and kind == "presence":
            targets = [s for s in sessions.of(to.bare) if s.available]
        if not targets and not r.relayed and self.router.remote is not None:
            node = await self._node_of(to)
            if node is not None:  # the guest is connected to another node: routed there
                self.router.remote.relay(r, node)
                return
        if not targets:
            if kind == "iq" and typ in ("get", "set"):
                self.router.bounce(r, core_error(Condition.SERVICE_UNAVAILABLE, "guest_unknown"))
            elif kind == "message" and (typ or "normal") in _CHATTY:
                # No offline storage: the guest's address died with its session.
                self.router.bounce(r, core_error(Condition.SERVICE_UNAVAILABLE, "guest_unknown"))
            return
        for s in targets:
            await self.router.deliver(s, r.stanza, kind)

    async def _node_of(self, to: JID) -> str | None:
        """The other node of the cluster that holds the guest ``to``'s session, if one does."""
        remote = self.router.remote
        assert remote is not None
        if to.resource is not None:
            found = await remote.holder(to)
            return found[0] if found is not None and found[0] != remote.node else None
        others = await remote.others(to.bare)
        return others[0].node if others else None

    async def _iq_to_account(self, r: Routed, to: JID, typ: str | None) -> None:
        """An iq to a guest's bare JID or to the guest host: the guest's own requests get an
        empty roster, ping and disco#info; nothing else is kept for a guest."""
        if typ not in ("get", "set"):
            return
        payload = r.stanza[0] if len(r.stanza) else None
        qname = payload.tag if payload is not None else ""
        own = to.local is None or to == r.from_jid.bare
        answer: etree._Element | None = None
        if typ == "get" and qname == f"{{{ns.PING}}}ping":
            await self._answer(r, None)
            return
        if typ == "get" and qname == f"{{{ns.DISCO_INFO}}}query" and payload is not None and payload.get("node") is None:
            answer = etree.Element(qname, nsmap={None: ns.DISCO_INFO})
            identity = ("account", "anonymous") if to.local is not None else ("server", "im")
            etree.SubElement(answer, f"{{{ns.DISCO_INFO}}}identity", category=identity[0], type=identity[1])
            for var in (ns.DISCO_INFO, ns.PING):
                etree.SubElement(answer, f"{{{ns.DISCO_INFO}}}feature", var=var)
        elif typ == "get" and own and to.local is not None and qname == f"{{{_ROSTER}}}query":
            answer = etree.Element(qname, nsmap={None: _ROSTER})  # RFC 6121 §2.1.3: an empty roster
        if answer is None:
            self.router.bounce(r, StanzaError(Condition.SERVICE_UNAVAILABLE, "nothing is kept for anonymous visitors"))
            return
        await self._answer(r, answer)

    async def _answer(self, r: Routed, payload: etree._Element | None) -> None:
        reply = iq_result(r.stanza, payload)
        if reply.get("from") is None:  # asked without 'to': on behalf of the account
            reply.set("from", str(r.to))
        await self.router.send(reply, kind="iq")

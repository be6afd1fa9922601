"""RFC 6121 §3-4: presence subscriptions and presence (broadcast, probes, directed presence).

Subscriptions (§3): a subscription stanza from a local client is processed twice, as RFC 6121
describes for the user's server and the contact's server: :meth:`Presence.outbound` applies
Appendix A.2 to the sender's roster and forwards the stanza, stamped with the sender's bare JID
(§3.1.2), to :meth:`Presence.inbound`, which applies Appendix A.3 to the recipient's roster,
delivers it to the recipient's available resources, keeps a subscription request for the next
login when nobody is available (§3.1.3), answers for the recipient when a request was
pre-approved (§3.4) or is already granted, and sends presence or unavailable presence where
the subscription's start or end calls for it. The state machine itself is
:mod:`xmppd.features.roster.states` (pure functions); the roster feature stores and pushes.

Presence (§4): the router tracks ``session.available``/``priority``/``presence`` and then runs
``PRESENCE_BROADCAST``; here initial presence answers the implicit probes from the session
registry (the current presence of every available resource of each contact the user is
subscribed to), redelivers pending subscription requests, and goes with every later change to
the subscribers (``from``/``both``) and to the user's own available resources. Going offline
-- unavailable presence, or a session that ends without it (``SESSION_CLOSED``) -- tells the
subscribers and everyone the session sent directed presence to (§4.6). Probes from clients are
answered (§4.3). Unavailable presence directed to an account that neither receives the
sender's presence nor got directed presence from it is not delivered.

Subscription stanzas a client sends to another domain -- a service of this server such as
``cs.example.com``, or a remote server -- are the user's outbound subscriptions all the same:
:meth:`Presence.on_stanza_in` runs them through :meth:`Presence.outbound` (the roster changes and
is pushed), which forwards them through the router; presence to subscribers on a service domain
goes there through the router too.

Public API: ``async presence_of(bare) -> list[(full JID, presence element)]`` of the
available resources of a local account; ``async resend_after_unblock(user, items)`` for the
blocking feature (XEP-0191 §3.4); ``async preapprove(owner, contact)`` for services of this
server that subscribe back to a user at the user's own request (RFC 6121 §3.4).

Fan-out: a presence stanza is serialised once (:class:`xmppd.core.fanout.Wire`) and each local recipient gets
those bytes with its ``to`` spliced in (``Router.fan_out``, the one door, as MUC's); a session's
current presence keeps its serialised form while it is unchanged, so answering the probes of a
login wave serialises nothing. Rosters come from the roster feature's cache (subscribers and
subscriptions as parsed bare JIDs).
"""
from __future__ import annotations

import copy
from collections.abc import Awaitable
from dataclasses import replace
from typing import TYPE_CHECKING

from lxml import etree

from ..core import hooks as H
from ..core.fanout import Wire
from ..core.feature import Feature, hook
from ..core.hooks import Flow, Routed, SessionEvent
from ..errors import StanzaError
from ..jid import JID
from ..xml.builder import error_reply, stanza
from .roster import states
from .roster.repository import RosterItem, UnknownOwner

if TYPE_CHECKING:
    from ..core.session import Session
    from .roster.feature import Roster

_SUBSCRIPTION_TYPES = frozenset(states.SUBSCRIPTION_TYPES)
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _wire(el: etree._Element) -> Wire | None:
    """``el`` serialised once for the router's fan-out, over a private copy that DELIVER hooks
    see; None when it cannot be spliced (it has a ``to``, or a prefixed tag)."""
    if el.get("to") is not None:
        return None
    return Wire.of(copy.deepcopy(el), "presence")


class _SessionPresence:
    """Per-session presence state, kept in ``session.data["presence"]``."""

    __slots__ = ("broadcasting", "directed", "wire_of", "wire")

    def __init__(self) -> None:
        self.broadcasting = False  # sent initial presence and has not gone unavailable
        self.directed: set[JID] = set()  # recipients of directed available presence
        self.wire_of: etree._Element | None = None  # the session.presence ``wire`` serialises
        self.wire: Wire | None = None


def _state(session: "Session") -> _SessionPresence:
    st = session.data.get("presence")
    if st is None:
        st = session.data["presence"] = _SessionPresence()
    return st  # type: ignore[no-any-return]


def _listed(row: RosterItem | None) -> RosterItem | None:
    return row if row is not None and row.listed else None


def _current(session: "Session") -> Wire | None:
    """The session's current presence (``session.presence``), serialised once per change."""
    el = session.presence
    if el is None:
        return None
    st = _state(session)
    if st.wire_of is not el:
        st.wire_of, st.wire = el, _wire(el)
    return st.wire


class Presence(Feature):
    name = "presence"
    implements = ("RFC 6121",)
    depends = ("roster",)

    async def setup(self) -> None:
        self.roster: "Roster" = self.ctx.feature("roster")

    # ------------------------------------------------------------------ public API

    async def presence_of(self, bare: JID) -> list[tuple[JID, etree._Element]]:
        return [(s.jid, s.presence) for s in self.ctx.sessions.of(bare.bare) if s.available and s.presence is not None]  # type: ignore[misc]

    # ------------------------------------------------------------------ delivery helpers

    def _local(self, jid: JID) -> bool:
        return jid.domain == self.ctx.domain and jid.local is not None

    async def _to(self, target: JID, el: etree._Element, wire: Wire | None = None) -> None:
        """Deliver ``el`` (its ``from`` set) to ``target`` through the router's fan-out: a full
        JID's session, a bare JID's available resources, another domain routed. ``wire``: ``el``
        serialised (made here when None)."""
        if wire is None and self._local(target):
            wire = _wire(el)
        await self.ctx.router.fan_out(el, (target,), "presence", wire)

    async def _send_current_presence(self, owner: JID, target: JID) -> None:
        for s in self.ctx.sessions.of(owner):
            if s.available and s.presence is not None:
                await self._to(target, s.presence, _current(s))

    async def resend_after_unblock(self, user: JID, unblocked: frozenset[str]) -> None:
        """XEP-0191 §3.4: after ``user`` unblocked ``unblocked`` (blocklist items: bare JIDs,
        domains or full JIDs), its current presence goes to every contact such an item matched
        that may receive it (subscribed to ``user``). A contact still blocked by another item is
        filtered on delivery by the blocking feature, as every presence is."""
        if not unblocked or not any(s.available for s in self.ctx.sessions.of(user)):
            return
        for contact in await self.roster.subscribers(user):
            bare = str(contact)
            if bare in unblocked or contact.domain in unblocked:
                await self._send_current_presence(user, contact)
                continue
            for item in unblocked:  # a full-JID item: that resource only
                if item.startswith(bare + "/"):
                    await self._send_current_presence(user, JID.parse(item))

    async def preapprove(self, owner: JID, contact: JID) -> None:
        """RFC 6121 §3.4 pre-approval in ``owner``'s name: ``contact``'s next subscription request
        is granted at once. For a service of this server that the user asked to follow them
        (customer service: an agent subscribing to their queue), never for other accounts."""
        await self.outbound(owner.bare, contact.bare, "subscribed", stanza("presence", type="subscribed"), None)

    async def _inbound_somewhere(self, contact: JID, sender: JID, typ: str, el: etree._Element) -> None:
        """RFC 6121 Appendix A.3 for local ``contact``, on this node or, when the account has
        sessions only on other nodes, relayed to one of those (its roster is cached there, and
        its pushes and deliveries start there)."""
        if self.ctx.router.clustered and not self.ctx.sessions.has_account_sessions(contact):
            far = (await self.ctx.router.elsewhere([contact])).get(contact, [])
            if far:
                async def here(_r: Routed) -> None:  # Redis failed: on this node after all
                    await self.inbound(contact, sender, typ, el)

                self.ctx.router.relay(Routed(el, "presence", sender, contact), [far[0].node], here)
                return
        await self.inbound(contact, sender, typ, el)

    async def _probe_elsewhere(self, prober: JID, targets: list[JID]) -> set[JID]:
        """Relay a probe from ``prober`` to the nodes holding available sessions of ``targets``
        (local accounts), which answer with those sessions' presence; the targets that have any."""
        if not self.ctx.router.clustered or not targets:
            return set()
        found = set()
        for target, entries in (await self.ctx.router.elsewhere(targets)).items():
            nodes = {e.node for e in entries if e.available}
            if nodes:
                found.add(target)
                probe = stanza("presence", frm=str(prober), to=str(target), type="probe")
                self.ctx.router.relay(Routed(probe, "presence", prober, target), nodes)
        return found

    async def _send_unavailable_from(self, owner: JID, target: JID) -> None:
        for s in self.ctx.sessions.of(owner):
            if s.available:
                await self._to(target, stanza("presence", frm=str(s.jid), type="unavailable"))

    # ------------------------------------------------------------------ subscriptions (§3)

    async def outbound(self, user: JID, contact: JID, typ: str, st: etree._Element, origin: "Session | None") -> None:
        """RFC 6121 Appendix A.2: ``user`` (local) sent ``typ`` to ``contact``."""
        outcomes: list[states.Outcome] = []
        contact_s = str(contact)
        if typ in ("subscribe", "subscribed"):
            try:
                await self.roster.check_room(user, contact_s)
            except StanzaError as err:
                if origin is not None:
                    await self.ctx.router.deliver_to(origin.jid, error_reply(st, err), "presence")  # type: ignore[arg-type]
                return

        def change(old: RosterItem | None) -> RosterItem | None:
            base = old if old is not None else RosterItem(contact_s, listed=False)
            oc = states.outbound(base.state, typ)
            outcomes.append(oc)
            return _apply(old, base, oc, None)

        await self.roster.update(user, contact, change)
        oc = outcomes[-1]
        if oc.route:
            fwd = stanza("presence", frm=str(user), to=contact_s, type=typ, id=st.get("id"))
            for child in st:
                fwd.append(copy.deepcopy(child))
            if self._local(contact):
                await self._inbound_somewhere(contact, user, typ, fwd)
            else:
                await self.ctx.send(fwd)
        if oc.send_presence:
            await self._send_current_presence(user, contact)
        if oc.send_unavailable:
            await self._send_unavailable_from(user, contact)

    async def inbound(self, owner: JID, contact: JID, typ: str, st: etree._Element) -> None:
        """RFC 6121 Appendix A.3: ``typ`` from ``contact`` arrived for local ``owner``."""
        outcomes: list[states.Outcome] = []
        contact_s = str(contact)
        stored = etree.tostring(st, encoding="unicode") if typ == "subscribe" else None

        def change(old: RosterItem | None) -> RosterItem | None:
            base = old if old is not None else RosterItem(contact_s, listed=False)
            oc = states.inbound(base.state, typ)
            outcomes.append(oc)
            return _apply(old, base, oc, stored)

        try:
            await self.roster.update(owner, contact, change)
        except UnknownOwner:
            if typ == "subscribe":  # §3.1.3: no such account: the request is denied
                await self._answer(owner, contact, "unsubscribed")
            return
        oc = outcomes[-1]
        if oc.deliver:
            await self._to(owner, st)
        if oc.auto_reply is not None:
            await self._answer(owner, contact, oc.auto_reply)
        if oc.send_presence:
            await self._send_current_presence(owner, contact)
        if oc.send_unavailable:
            await self._send_unavailable_from(owner, contact)

    async def _answer(self, owner: JID, contact: JID, typ: str) -> None:
        """A subscription stanza the server sends on ``owner``'s behalf."""
        el = stanza("presence", frm=str(owner), to=str(contact), type=typ)
        if self._local(contact):
            await self._inbound_somewhere(contact, owner, typ, el)
        else:
            await self.ctx.send(el)

    # ------------------------------------------------------------------ probes (§4.3)

    async def probe(self, prober: JID, target: JID, relayed: bool = False) -> None:
        """RFC 6121 §4.3.2: answer a probe of ``target`` (a local bare JID) from ``prober``: its
        sessions here answer, the nodes holding its other available sessions are relayed the
        probe; unavailable presence when it has none anywhere. ``relayed``: the prober's node
        checked the probe and asked this node for its own sessions' presence only."""
        if prober.bare != target and not relayed:
            row = _listed(await self.roster.item(target, prober.bare))
            allowed = row is not None and row.subscription in ("from", "both")
            if not allowed:
                allowed = any(
                    prober in _state(s).directed or prober.bare in _state(s).directed for s in self.ctx.sessions.of(target)
                )
            if not allowed:
                # Not authorised: reveal nothing; say so when the prober believes it is subscribed.
                mine = _listed(await self.roster.item(prober.bare, target)) if self._local(prober) else None
                if mine is not None and mine.subscription in ("to", "both"):
                    await self._answer(target, prober.bare, "unsubscribed")
                return
        found = False
        for s in self.ctx.sessions.of(target):
            if s.available and s.presence is not None:
                found = True
                await self._to(prober, s.presence, _current(s))
        if relayed:
            return
        if await self._probe_elsewhere(prober, [target]):
            found = True
        if not found:
            await self._to(prober, stanza("presence", frm=str(target), type="unavailable"))

    # ------------------------------------------------------------------ hooks

    @hook(H.PRESENCE_BARE)
    async def on_presence_bare(self, r: Routed) -> Flow:
        typ = r.stanza.get("type")
        if typ in (None, "unavailable"):
            return Flow.CONTINUE  # the router delivers to the available resources
        await self._special(r, typ)
        return Flow.STOP

    @hook(H.PRESENCE_FULL)
    async def on_presence_full(self, r: Routed) -> Flow:
        typ = r.stanza.get("type")
        if typ in _SUBSCRIPTION_TYPES or typ == "probe":
            # RFC 6121 §3.1.2 / §4.3: subscription stanzas and probes concern the bare JID.
            await self._special(r, typ)
            return Flow.STOP
        return Flow.CONTINUE

    async def _special(self, r: Routed, typ: str) -> None:
        assert r.to is not None
        target = r.to.bare
        sender = r.from_jid
        if typ in _SUBSCRIPTION_TYPES:
            if sender.bare == target:
                return  # one's own presence needs no subscription
            if r.origin is not None:
                await self.outbound(sender.bare, target, typ, r.stanza, r.origin)
            else:
                st = copy.deepcopy(r.stanza)
                st.set("from", str(sender.bare))
                st.set("to", str(target))
                await self.inbound(target, sender.bare, typ, st)
        elif typ == "probe":
            await self.probe(sender, target, r.relayed)
        # type='error' and unknown types addressed to an account are dropped

    @hook(H.STANZA_IN, priority=-10)
    def on_stanza_in(self, r: Routed) -> "Flow | Awaitable[Flow]":
        """Track directed presence (RFC 6121 §4.6) from clients; their subscription stanzas to
        other domains (a service such as ``cs.domain``) are outbound subscriptions (§3)."""
        if r.kind != "presence" or r.to is None or r.origin is None:
            return Flow.CONTINUE  # (messages and iqs without a coroutine: see core.hooks)
        return self._directed(r)

    async def _directed(self, r: Routed) -> Flow:
        assert r.to is not None and r.origin is not None
        typ = r.stanza.get("type")
        target = r.to
        if typ in _SUBSCRIPTION_TYPES and target.domain != self.ctx.domain:
            if target.bare != r.from_jid.bare:
                await self.outbound(r.from_jid.bare, target.bare, typ, r.stanza, r.origin)
            return Flow.STOP
        if typ not in (None, "unavailable") or target.bare == r.from_jid.bare:
            return Flow.CONTINUE
        st = _state(r.origin)
        if typ is None:
            if target not in st.directed:
                st.directed.add(target)
                self._keep_directed(r.origin, st)
            return Flow.CONTINUE
        had = target in st.directed
        st.directed.discard(target)
        if had:
            self._keep_directed(r.origin, st)
        if not had and self._local(target):
            row = _listed(await self.roster.item(r.from_jid.bare, target.bare))
            if row is None or row.subscription not in ("from", "both"):
                return Flow.STOP  # unavailable from someone the account hears nothing from
        return Flow.CONTINUE

    def _keep_directed(self, session: "Session", st: _SessionPresence) -> None:
        """In a cluster, the recipients of the session's directed presence are kept beside it
        (``Router.keep``), so that if its node dies the survivor tells them it is gone."""
        if self.ctx.router.clustered and session.jid is not None:
            self.ctx.router.keep(session.jid, "directed", "\n".join(sorted(str(t) for t in st.directed)) or None)

    @hook(H.PRESENCE_BROADCAST)
    async def on_broadcast(self, r: Routed) -> Flow:
        """RFC 6121 §4.2 (initial), §4.4 (updates), §4.5 (unavailable)."""
        session = r.origin
        if session is None or session.jid is None:
            return Flow.STOP
        st = _state(session)
        user = session.jid.bare
        if r.stanza.get("type") == "unavailable":
            await self._go_offline(session, r.stanza)
            return Flow.STOP
        initial = not st.broadcasting
        st.broadcasting = True
        el = r.stanza
        # r.stanza is session.presence now (the router tracked it): serialised once, and kept
        # for the probes of contacts who come online later.
        wire = _current(session) if session.presence is el else _wire(el)
        # the subscribers, then the user's own available resources, this one included (§4.2.2):
        # one fan-out (in a cluster: one envelope per node holding any of them)
        await self.ctx.router.fan_out(el, (*await self.roster.subscribers(user), user), "presence", wire)
        if not initial:
            return Flow.STOP
        full = session.jid
        # §4.2.2 probes, answered from the session registry for local contacts (their sessions
        # on other nodes: the probe is relayed to those nodes, which answer)
        local_contacts = []
        for contact in await self.roster.subscriptions(user):
            if self._local(contact):
                local_contacts.append(contact)
                for s in self.ctx.sessions.of(contact):
                    if s.available and s.presence is not None:
                        await self._to(full, s.presence, _current(s))
            else:
                await self.ctx.send(stanza("presence", frm=str(user), to=str(contact), type="probe"))
        for other in self.ctx.sessions.of(user):
            if other is not session and other.available and other.presence is not None:
                await self._to(full, other.presence, _current(other))
        await self._probe_elsewhere(full, [*local_contacts, user])  # type: ignore[arg-type]
        # §3.1.3: subscription requests kept while the user was offline
        for row in await self.roster.pending_in(user):
            if row.pending_stanza:
                await self._to(full, etree.fromstring(row.pending_stanza, _SAFE_PARSER))
        return Flow.STOP

    @hook(H.SESSION_CLOSED)
    async def on_closed(self, event: SessionEvent) -> Flow:
        session = event.session
        st = session.data.get("presence")
        if session.jid is not None and st is not None and (st.broadcasting or st.directed):
            await self._go_offline(session, stanza("presence", frm=str(session.jid), type="unavailable"))
        return Flow.CONTINUE

    @hook(H.SESSIONS_LOST)
    async def on_sessions_lost(self, event: H.SessionsLost) -> Flow:
        """A dead cluster node's available sessions (run on the survivor that cleaned up after
        it): unavailable presence in each one's name to its subscribers, from the stored roster,
        and to the account's other resources, on every node (RFC 6121 §4.5.2, as when a session
        ends without unavailable presence); and to the recipients of its directed presence that
        were not told so (§4.6.3), which the session kept in Redis (``Router.keep``)."""
        told: dict[JID, set[JID]] = {}
        for full in event.available:
            if not self._local(full):
                continue
            unavailable = stanza("presence", frm=str(full), type="unavailable")
            try:
                subscribers = await self.roster.subscribers(full.bare)
            except Exception:
                self.log.exception("the roster of %s could not be read: its contacts are not told it is gone", full.bare)
                continue
            told[full] = set(subscribers)
            await self.ctx.router.fan_out(unavailable, (*subscribers, full.bare), "presence", _wire(unavailable))
        for full, kept in event.kept.items():
            directed = kept.get("directed")
            if not directed or not self._local(full):
                continue
            unavailable = stanza("presence", frm=str(full), type="unavailable")
            wire = _wire(unavailable)
            done = told.get(full, set())
            for text in directed.split("\n"):
                try:
                    target = JID.parse(text)
                except ValueError:
                    continue
                if target not in done and target.bare != full.bare:
                    await self._to(target, unavailable, wire)
        return Flow.CONTINUE

    async def _go_offline(self, session: "Session", unavailable: etree._Element) -> None:
        st = _state(session)
        user = session.jid.bare  # type: ignore[union-attr]
        told: set[JID] = set()
        wire = _wire(unavailable)
        if st.broadcasting:
            st.broadcasting = False
            session.available = False  # gone: not among "the user's other available resources"
            subscribers = await self.roster.subscribers(user)
            told.update(subscribers)
            # the subscribers, and the user's other available resources (on every node)
            await self.ctx.router.fan_out(unavailable, (*subscribers, user), "presence", wire)
        directed, st.directed = st.directed, set()
        if directed:
            self._keep_directed(session, st)
        for target in directed:
            if target not in told and target.bare != user:
                await self._to(target, unavailable, wire)


def _apply(old: RosterItem | None, base: RosterItem, oc: states.Outcome, stored: str | None) -> RosterItem | None:
    """The row after an outcome; unchanged rows stay as they are."""
    if not oc.changed:
        if stored is not None and old is not None and old.pending_in:
            return replace(old, pending_stanza=stored)  # a repeated request: keep the latest
        return old
    new = base.with_state(oc.state)
    listed = base.listed or new.subscription != "none" or new.ask or new.approved
    pending = (stored or base.pending_stanza) if new.pending_in else None
    return replace(new, listed=listed, pending_stanza=pending)


__all__ = ["Presence"]

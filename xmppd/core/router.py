"""RFC 6120 §10 / RFC 6121 §8: where a stanza goes.

``Router.route`` classifies by kind (message/presence/iq) x target (host, bare, full) x owner
(the local domain, a service domain like ``conference.example.com``, or elsewhere).

The one door. Every stanza the server writes to a client session leaves through this class:
``route``/``send`` (a stanza with its ``to``), ``deliver_to`` (a stanza to the session bound to
one full JID) and ``fan_out`` (one stanza without ``to`` to many JIDs, serialised once). Features
name recipients by JID, never by ``Session``; the router alone resolves a JID to a session, runs
the ``DELIVER`` hooks and writes. So deciding that a JID's session is on another node (the
cluster, issue 17) is a change here and in the session registry, nowhere else.

What stays on the stream itself, written to the ``Session`` object by the core or by the feature
that owns that stream-level protocol, because the peer is by definition connected here and the
write must keep its place in that stream: stream features, SASL, bind, stream errors, nonzas
(XEP-0198 ``<r/>``/``<a/>``/``<enabled/>``/``<resumed/>`` and its resend of unacknowledged
stanzas, XEP-0352), the answer to an iq written to the session that asked (``answer`` below, the
dispatcher's reply and ``bounce`` to the origin), and the stanzas CSI held back (its own DELIVER
hook, the last stage of a delivery). tests/test_one_door.py enforces this on features and
extensions; docs/feature-api.md states the rule.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Protocol

from lxml import etree

from ..errors import Condition, StanzaError, StreamErrorCondition
from ..i18n import Languages, core_error
from ..jid import JID
from ..xml import ns
from ..xml.builder import error_reply, iq_result
from . import hooks as H
from .dispatch import NO_REPLY, IqRequest, IqTable, IqTracker, Target
from .durability import CURRENT, Barrier
from .fanout import Wire, attr
from .hooks import Delivery, Flow, HookChains, Routed, SerialisedDelivery
from .server_owned import ServerOnlyCheck

if TYPE_CHECKING:
    from ..cluster.kept import KeptState
    from ..cluster.remote import RemoteSessions
    from ..cluster.sessions import Entry
    from ..metrics import Metrics
    from .control import ControlKind
    from .session import Session
    from .sessions import SessionRegistry

log = logging.getLogger(__name__)
_tostring = etree.tostring


class Service(Protocol):
    """A service domain (MUC, customer service ...): receives every stanza addressed to it."""

    async def receive(self, routed: Routed) -> None: ...




class Router:
    def __init__(self, domain: str, sessions: "SessionRegistry", hooks: HookChains, iq_table: IqTable, tracker: IqTracker) -> None:
        self.domain = domain
        self.sessions = sessions
        self.hooks = hooks
        self.iq_table = iq_table
        self.tracker = tracker
        self.services: dict[str, Service] = {}
        # Domains besides ``domain`` whose full JIDs are client sessions in the cluster registry
        # (the anonymous host, core/guests.py): an error for one on another node crosses like one
        # for an account's session (``bounce``).
        self.session_domains: set[str] = set()
        self.languages: Languages | None = None  # errors' texts in the language of whom they answer
        # qname -> check; a client stanza's children with these qnames are removed when the
        # check says the server is their only author (stanza-id by us, delay from us, ...):
        # the core's own and every loaded feature's ``server_owned`` declarations.
        self._server_only: dict[str, ServerOnlyCheck] = {}
        self._server_only_tags: frozenset[str] = frozenset()
        # "{namespace}" of namespaces owned whole: their elements leave messages and presence.
        self._owned_prefixes: tuple[str, ...] = ()
        # The cluster (docs/cluster.md): sessions on other nodes, consulted only for a local-domain
        # recipient without a session here. None without cluster.redis_url.
        self.remote: RemoteSessions | None = None
        # What this node's sessions keep for a survivor (``keep``; xmppd/cluster/kept.py).
        self.kept: KeptState | None = None
        # Control kinds features answer for other nodes (xmppd/core/control.py), by name; used
        # only by the cluster.
        self.controls: dict[str, ControlKind] = {}
        # The node's figures (xmppd/metrics.py): stanzas in and out, routing latency. None: not counted.
        self.metrics: Metrics | None = None
        # name -> predicate on a session: "deliver only to sessions that ..." (carbons enabled,
        # roster interested), applied on the node that holds the session.
        self.checks: dict[str, Callable[[Session], bool]] = {}
        self.stanza_checks: dict[str, Callable[[Session, etree._Element], bool]] = {}

    # ---------------------------------------------------------------- registration

    def add_service(self, domain: str, service: Service) -> Callable[[], None]:
        if domain in self.services or domain == self.domain:
            raise ValueError(f"domain {domain} is already served")
        self.services[domain] = service

        def remove() -> None:
            self.services.pop(domain, None)

        return remove

    def add_server_only(self, qname: str, check: ServerOnlyCheck) -> Callable[[], None]:
        if qname.endswith("}*"):  # a whole namespace, in messages and presence
            prefix = qname[:-1]
            if prefix in self._owned_prefixes:
                raise ValueError(f"{qname} is already declared server-only")
            self._owned_prefixes += (prefix,)

            def remove_namespace() -> None:
                self._owned_prefixes = tuple(p for p in self._owned_prefixes if p != prefix)

            return remove_namespace
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
        """A stanza from a bound client: ``from`` is stamped by the stream core already. Its
        server-owned children (``xmppd.core.server_owned``) go first, before any hook sees it."""
        tags = self._server_only_tags
        prefixes = self._owned_prefixes if kind != "iq" else ()
        if tags or prefixes:
            for child in stanza:
                tag = child.tag
                if (tag in tags and self._server_only[tag](child, self)) or (prefixes and isinstance(tag, str) and tag.startswith(prefixes)):
                    stanza.remove(child)
        routed = Routed(stanza, kind, session.jid, to, session)  # type: ignore[arg-type]
        metrics = self.metrics
        if metrics is not None:
            metrics.stanza_in(kind)
            started = perf_counter()
        # The stanza's durability barrier (see .durability): stores writing behind hold their
        # tickets in it, deliveries wait for it, stream management acks after it.
        barrier = Barrier(session)
        token = CURRENT.set(barrier)
        try:
            inbound = session.inbound
            if inbound is not None:  # a guest of the anonymous host (core/guests.py): handled there alone
                await inbound(routed)
                return
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
        finally:
            barrier.open = False
            CURRENT.reset(token)
            if metrics is not None:
                metrics.routing.observe(perf_counter() - started)

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
        current = CURRENT.get()
        if current is not None and current.open:
            await self.route(routed)  # part of the stanza being processed
            return
        barrier = Barrier()
        token = CURRENT.set(barrier)
        try:
            await self.route(routed)
            if barrier.tickets:
                await barrier.wait()  # the caller (API, timer ...) may take it as stored
        finally:
            barrier.open = False
            CURRENT.reset(token)

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
        self.bounce(r, core_error(Condition.REMOTE_SERVER_NOT_FOUND, "federation_off", domain=domain))

    # ---------------------------------------------------------------- by target

    async def _to_host(self, r: Routed) -> None:
        if r.kind == "iq":
            await self.dispatch_iq(r, Target.HOST)
        elif r.kind == "message":
            if await self.hooks.run(H.MESSAGE_HOST, r) is Flow.CONTINUE and r.stanza.get("type") != "error":
                self.bounce(r, core_error(Condition.SERVICE_UNAVAILABLE, "no_messages"))
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
                    if self.remote is not None and not r.relayed:  # and on the other nodes
                        self.remote.fan(r.stanza, "presence", [r.to], with_to=True)  # type: ignore[list-item]
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
        if self.remote is not None and self.remote.to_full(r, to, self._no_resource):
            return  # published for the node holding it; none: _no_resource, from the cluster
        await self._no_resource(r)

    async def _no_resource(self, r: Routed, hops: int = 0) -> None:
        """RFC 6121 §8.5.3.2: no session bound to the full JID ``r.to``, on any node."""
        to = r.to
        assert to is not None
        kind = r.kind
        if kind == "message":
            typ = r.stanza.get("type")
            if typ in (None, "normal", "chat"):
                await self.deliver_message_to_bare(r, hops)
            elif typ == "error":
                return
            # groupchat and headline to a gone resource are dropped silently
        elif kind == "iq":
            if r.stanza.get("type") in ("get", "set"):
                self.bounce(r, core_error(Condition.SERVICE_UNAVAILABLE, "recipient_unavailable"))
            elif r.to == r.to.bare or r.to.domain == self.domain:
                self.tracker.resolve(r.stanza, r.from_jid)
        # presence to an unavailable full JID: dropped (probes/subscriptions go to the bare hook)
        elif r.stanza.get("type") in ("subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"):
            r.to = to.bare
            await self._to_bare(r)

    async def deliver_message_to_bare(self, r: Routed, hops: int = 0) -> None:
        """RFC 6121 §8.5.2: to the available resources of highest non-negative priority, on
        every node of the cluster (``hops``: how often nodes that lost the recipient re-sent it)."""
        bare = r.to.bare if r.to is not None else r.from_jid.bare
        typ = r.stanza.get("type") or "normal"
        if typ == "groupchat":
            self.bounce(r, core_error(Condition.SERVICE_UNAVAILABLE, "groupchat_to_rooms"))
            return
        # The cluster's entries first: this node's sessions are read after that await, so that a
        # session bound (or moved) here meanwhile is among them, not missed by both.
        others = await self.remote.others(bare, hops) if self.remote is not None else []
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
        if self.remote is not None:
            remote = []
            for e in others:
                if not e.available or e.priority < 0 or (typ != "headline" and e.priority < top):
                    continue
                if typ != "headline" and e.priority > top:
                    top = e.priority
                    best = []
                    remote = []
                remote.append(e)
            best = [s for s in best if typ == "headline" or s.priority == top]
            if remote:
                # Published in this sender's order; if no node could take it and nothing was
                # delivered here, the cluster runs the undelivered path (offline storage).
                self.remote.to_entries(r, remote, hops, None if best else self._undelivered)
            for s in best:
                await self.deliver(s, r.stanza, "message")
            if best or remote:
                return
        elif best:
            for s in best:
                await self.deliver(s, r.stanza, "message")
            return
        await self._undelivered(r)

    async def _undelivered(self, r: Routed) -> None:
        """A message for a local account that reached no resource anywhere."""
        typ = r.stanza.get("type") or "normal"
        if typ == "error":
            return
        if await self.hooks.run(H.MESSAGE_UNDELIVERED, r) is Flow.STOP:
            return
        if typ in ("normal", "chat"):
            self.bounce(r, core_error(Condition.SERVICE_UNAVAILABLE, "recipient_unavailable"))

    async def deliver(self, session: "Session", stanza: etree._Element, kind: str) -> None:
        """Write ``stanza`` to ``session`` after the delivery hooks (blocking, CSI ...); the
        session holds it until the stanza being processed is stored (see .durability).
        The router's own last step: features name JIDs (``deliver_to``, ``fan_out``)."""
        if self.hooks.has(H.DELIVER):
            if await self.hooks.run(H.DELIVER, Delivery(session, stanza, kind)) is Flow.STOP:
                return
        if self.metrics is not None:
            self.metrics.stanza_out(kind)
        session.send(stanza)

    async def deliver_serialised(self, session: "Session", data: bytes, kind: str,
                                 parse: Callable[[bytes], etree._Element]) -> None:
        """``deliver`` for a stanza that came serialised (another node's envelope, its sender's
        node did the routing): ``data`` is written as it came, and the DELIVER hooks see an
        element parsed only if one of them reads it (``hooks.SerialisedDelivery``); changes a
        hook makes to it are not sent (as in ``deliver_bytes``)."""
        if self.hooks.has(H.DELIVER):
            if await self.hooks.run(H.DELIVER, SerialisedDelivery(session, data, kind, parse)) is Flow.STOP:
                return
        if self.metrics is not None:
            self.metrics.stanza_out(kind)
        session.send_bytes(data)

    async def deliver_bytes(self, session: "Session", data: bytes, stanza: etree._Element, kind: str) -> None:
        """Fan-out: write ``data`` (``stanza`` serialised) after the delivery hooks, if any.

        ``stanza`` may be shared between recipients (MUC sets its ``to`` per call): a DELIVER
        hook that keeps it for later must copy it, and changes a hook makes to it are not sent.
        """
        if self.hooks.has(H.DELIVER):
            if await self.hooks.run(H.DELIVER, Delivery(session, stanza, kind)) is Flow.STOP:
                return
        if self.metrics is not None:
            self.metrics.stanza_out(kind)
        session.send_bytes(data)

    # ---------------------------------------------------------------- the one door for features

    async def deliver_to(self, full: JID, stanza: etree._Element, kind: str) -> bool:
        """Deliver ``stanza`` (its ``to`` set) to the session bound to ``full``, after the
        delivery hooks; False when no session is bound to that full JID here and (in a
        cluster) it was not handed to the cluster for the node holding it. True for a full JID
        of this domain without a session here once queued for the other nodes: the node that
        holds it, if any, delivers it there (none: it is dropped, as here)."""
        session = self.sessions.get(full)
        if session is None:
            remote = self.remote
            if remote is None or full.domain != self.domain or full.local is None or full.resource is None:
                return False
            remote.fan(stanza, kind, [full], with_to=True)
            return True
        await self.deliver(session, stanza, kind)
        return True

    async def fan_out(self, el: etree._Element, targets: Iterable[JID], kind: str, wire: Wire | None = None,
                      *, here_only: bool = False) -> None:
        """Deliver ``el`` (``from`` set, no ``to``) to each of ``targets`` with its ``to``.

        A full JID of this domain: the session bound to it (none: nothing is sent). A bare JID of
        this domain: its available resources, ``to`` the bare JID (presence broadcast). Any other
        domain: routed as ``send`` does. ``el`` is serialised once (``wire``, or made here) and
        each recipient's ``to`` spliced into the bytes; DELIVER hooks, when registered, see
        ``wire.el`` with that recipient's ``to`` (shared: a hook keeping it must copy it).
        ``el`` must not change until this returns (give a private copy when in doubt).

        In a cluster (docs/cluster.md §3), the full JIDs without a session here and every bare
        JID (its resources on other nodes) go to the cluster in one envelope per destination
        node, ``el`` serialised once for all of them; ``here_only``: this node's sessions only
        (what the cluster itself delivers on the destination node).
        """
        if wire is None:
            wire = Wire.of(el, kind)
        get = self.sessions.get
        domain = self.domain
        hooked = self.hooks.has(H.DELIVER)
        deliver_bytes = self.deliver_bytes
        shared = wire.el if wire is not None else None
        elsewhere: list[JID] | None = [] if self.remote is not None and not here_only else None
        try:
            for target in targets:
                if target.domain != domain or target.local is None:
                    out = copy.deepcopy(el)
                    out.set("to", str(target))
                    await self.send(out, kind=kind)
                    continue
                if target.resource is not None:
                    s = get(target)
                    if s is None:
                        if elsewhere is not None:
                            elsewhere.append(target)
                        continue
                    if wire is not None:  # the hot path: one occupant's session
                        to = str(target)
                        if hooked:
                            shared.set("to", to)  # type: ignore[union-attr]
                            await deliver_bytes(s, wire.head + attr(to) + wire.tail, shared, kind)  # type: ignore[arg-type]
                        else:
                            s.send_bytes(wire.head + attr(to) + wire.tail)
                        continue
                    sessions: list[Session] = [s]
                else:
                    if elsewhere is not None:
                        elsewhere.append(target)
                    sessions = [s for s in self.sessions.of(target) if s.available]
                    if not sessions:
                        continue
                to = str(target)
                if wire is None:
                    for s in sessions:
                        out = copy.deepcopy(el)
                        out.set("to", to)
                        await self.deliver(s, out, kind)
                    continue
                data = wire.head + attr(to) + wire.tail
                if hooked:
                    shared.set("to", to)  # type: ignore[union-attr]
                    for s in sessions:
                        await deliver_bytes(s, data, shared, kind)  # type: ignore[arg-type]
                else:
                    for s in sessions:
                        s.send_bytes(data)
        finally:
            if shared is not None:
                shared.attrib.pop("to", None)
        if elsewhere:
            self.remote.fan(el, kind, elsewhere, wire)  # type: ignore[union-attr]

    # ---------------------------------------------------------------- the other nodes, for features

    @property
    def clustered(self) -> bool:
        """Part of a cluster now: other nodes may hold sessions of this domain."""
        return self.remote is not None

    @property
    def node_name(self) -> str | None:
        """This node's name in the cluster; None without a cluster."""
        return self.remote.node if self.remote is not None else None

    def add_check(self, name: str, check: "Callable[[Session], bool]") -> Callable[[], None]:
        """Name a predicate for ``to_resources_elsewhere``'s ``only_if`` (a feature's own state of
        a session, such as carbons enabled, known only on the node that holds the session)."""
        if name in self.checks:
            raise ValueError(f"check {name} is already registered")
        self.checks[name] = check

        def remove() -> None:
            self.checks.pop(name, None)

        return remove

    def add_stanza_check(self, name: str, check: "Callable[[Session, etree._Element], bool]") -> Callable[[], None]:
        """Name a predicate of a session and the stanza for ``fan_out_elsewhere``'s ``only_if``
        (a session's interest in what the stanza carries, such as a PEP node's ``+notify`` in
        its caps, known only on the node that holds the session)."""
        if name in self.stanza_checks:
            raise ValueError(f"check {name} is already registered")
        self.stanza_checks[name] = check

        def remove() -> None:
            self.stanza_checks.pop(name, None)

        return remove

    def fan_out_elsewhere(self, el: etree._Element, bares: Iterable[JID], kind: str, *, only_if: str) -> None:
        """Deliver ``el`` (``from`` set, no ``to``) to the available resources of the local-domain
        accounts ``bares`` bound on other nodes that the stanza check named ``only_if`` accepts
        there, each with its full JID as ``to``; one envelope per node holding any, ``el``
        serialised once, looked up as it is sent. Nothing without a cluster (the feature
        delivers to this node's sessions itself, e.g. with ``fan_out``)."""
        if self.remote is None:
            return
        targets = [b.bare for b in bares if b.domain == self.domain and b.local is not None]
        if targets:
            self.remote.fan(el, kind, targets, check=only_if)

    def keep(self, full: JID, name: str, value: str | None) -> None:
        """Keep ``value`` (None: remove it) under ``name`` beside the session ``full`` of this
        node, for the survivor that cleans up if this node dies: ``SESSIONS_LOST`` hands it back
        (``kept``). Queued, never waited for; nothing without a cluster."""
        if self.kept is not None:
            self.kept.keep(full, name, value)

    def unkeep(self, full: JID) -> None:
        """Remove everything ``keep`` kept for ``full`` (its session moved to another node)."""
        if self.kept is not None:
            self.kept.drop(full)

    async def elsewhere(self, bares: Iterable[JID]) -> "dict[JID, list[Entry]]":
        """The sessions of these accounts bound on other nodes (one Redis round trip for all);
        {} without a cluster or when Redis cannot be reached."""
        if self.remote is None:
            return {}
        return await self.remote.elsewhere(list(bares))

    async def bind_elsewhere(self, bare: JID, resource: str | None) -> int:
        """Before ``bare/resource`` is bound here: a session bound to that full JID on another
        node is closed there with ``conflict`` (RFC 6120 §7.7.2.2; waited for, at most 10 s);
        returns how many other sessions the account has on other nodes (0 alone)."""
        if self.remote is None:
            return 0
        return await self.remote.bind_elsewhere(bare, resource)

    async def end_elsewhere(self, jid: JID, condition: StreamErrorCondition, text: str) -> int:
        """End the sessions of ``jid`` (bare: every one) that other nodes hold, with that stream
        error (an administrator's kick, a disabled or deleted account; waited for, at most 5 s);
        returns how many were asked to end (0 without a cluster or while Redis is down)."""
        if self.remote is None:
            return 0
        return await self.remote.end_elsewhere(jid, condition, text)

    async def online_accounts(self) -> set[JID]:
        """The accounts with a session on any node (this one's from memory, the others' from
        the cluster registry; this node's alone without a cluster or while Redis is down)."""
        here = set(self.sessions.accounts())
        if self.remote is None:
            return here
        return here | await self.remote.online_accounts()

    def relay(self, r: Routed, nodes: Iterable[str], fallback: "Callable[[Routed], Awaitable[None]] | None" = None) -> None:
        """Hand ``r`` (to a local-domain JID) to ``nodes``, where it is routed as if made there,
        with ``r.relayed`` set: the sender's node did its checks; the node answers for its own
        sessions (a probe answered with their presence, a subscription stanza processed where
        the contact's roster is cached). ``fallback(r)`` runs here for a node that could not be
        reached (Redis failed). Nothing without a cluster."""
        if self.remote is not None:
            for node in set(nodes):
                self.remote.relay(r, node, fallback)

    def to_resources_elsewhere(self, bare: JID, el: "etree._Element | str", kind: str, *, exclude: JID | None = None,
                               only_if: str | None = None) -> None:
        """Deliver ``el`` (``from`` set, no ``to``) to every resource of ``bare`` bound on another
        node, each with its full JID as ``to``, but ``exclude`` and those the check named
        ``only_if`` refuses there; one envelope per node, looked up as it is sent. ``el`` may be
        given serialised (a ``str`` of one stanza in ``jabber:client``: no element to build when,
        as usually, no node holds any). Nothing without a cluster (features loop over this
        node's sessions themselves)."""
        if self.remote is not None:
            self.remote.each(bare, el, kind, exclude, only_if)

    def answer(self, request: IqRequest, payload: etree._Element | None = None) -> None:
        """Write the result of ``request`` now, on the stream of the session that sent it (when
        the answer must precede what the handler does next: pushes, closing the stream); the
        handler then returns ``NO_REPLY``. A request from no live session gets nothing."""
        origin = request.origin
        if origin is None or origin.is_closed or origin.jid != request.from_jid:
            return
        origin.send(iq_result(request.stanza, payload))

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
            self.bounce(r, core_error(Condition.BAD_REQUEST, "one_payload"))
            return
        handler = self.iq_table.lookup(typ, target, to.domain, payload.tag)  # type: ignore[arg-type]
        if handler is None:
            if target is Target.BARE and to.domain == self.domain and not self._is_self(r) and typ in ("get", "set"):
                # RFC 6121 §8.5.1 / §8.5.2.1.3: an iq to a contact's bare JID with no server handler.
                self.bounce(r, core_error(Condition.SERVICE_UNAVAILABLE, "no_handler"))
                return
            if self.iq_table.known(target, to.domain, payload.tag):
                err: StanzaError = core_error(Condition.FEATURE_NOT_IMPLEMENTED, "not_supported", type=typ)
            else:
                err = core_error(Condition.SERVICE_UNAVAILABLE, "no_handler_for", payload=payload.tag)
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
            self.bounce(r, core_error(Condition.INTERNAL_SERVER_ERROR, "internal"))
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
        if self.languages is not None:
            err = self.languages.localise(err, r.from_jid)
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
            to = JID.parse(to_s)
            session = self.sessions.get(to)
            if session is not None:
                session.send(reply)
            elif self.remote is not None and to.resource is not None and (to.domain == self.domain or to.domain in self.session_domains):
                self.remote.send_soon(reply, to)  # the sender is on another node (a guest's too)


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

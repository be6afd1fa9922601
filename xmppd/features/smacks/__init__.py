"""XEP-0198: Stream Management -- acks both ways, hibernation and resumption.

After bind a client sends ``<enable resume='true'/>``: from then on the session's observer
(``Session.observer``, the only hook in the core) counts the stanzas handled from the client
and keeps every stanza written to it until the client acknowledges it (``<a h=''/>``). ``<r/>``
from the client is answered with ``<a h=''/>``; the server asks for an ack itself once
``[smacks] request_every`` stanzas are waiting.

When the connection of a resumable session is lost without a close, the session hibernates:
it stays bound, available and in the registry, nobody sees unavailable presence, and what is
delivered to it is queued. A new stream authenticated as the same account sends ``<resume
previd='' h=''/>`` before binding; it takes the hibernated session over (``Session.adopt``:
same full JID, presence, roster interest, rooms), gets ``<resumed/>`` and then every stanza it
had not acknowledged, once. Only a hibernating session can be resumed: an unknown, expired,
already resumed (while it is connected) or foreign id gets ``<failed><item-not-found/>``.

When ``[smacks] resume_timeout`` passes (or the queue outgrows ``max_queue``) the session
ends for real: the normal cleanup runs (unavailable presence), and the unacknowledged messages
of type normal/chat are routed again to the account's bare JID, stamped with a XEP-0203 delay
from the server, so that another resource or offline storage gets them -- unless another
available resource already had them (it was addressed to the bare JID, or that resource gets
XEP-0280 carbons). A stream that ends with a close re-routes its unacknowledged messages the
same way.

What the server acknowledges is stored: ``h`` in ``<a/>`` and ``<resumed/>`` counts a client's
stanza only once every store it went to has committed it (:mod:`xmppd.core.durability`; the
archive writes behind, in group commits). An ``<r/>`` is answered when the stanzas handled
before it are durable -- at once when nothing is waiting for a commit, else from the commit's
callback -- while the session goes on processing what follows.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from ... import timestamps
from ...config import NonNegativeInt, PositiveInt
from ...core import hooks as H
from ...core.control import Answer, ControlFailed, ControlKind, Move
from ...core.feature import Feature, hook
from ...core.hooks import Flow, Routed, SessionEvent
from ...core.sessions import ResourceLimitExceeded
from ...errors import StreamErrorCondition
from ...jid import JID, JIDError
from ...xml import ns
from ...xml.builder import element, sub
from .state import MASK, HandledCountTooHigh, SmCounters, parse_h

if TYPE_CHECKING:
    from ...core.durability import Barrier
    from ...core.session import Session

SM = "urn:xmpp:sm:3"
_STANZAS = ns.STANZAS
_DELAY = f"{{{ns.DELAY}}}delay"
_CARBONS = "urn:xmpp:carbons:2"
_CARBON_TAGS = (f"{{{_CARBONS}}}sent", f"{{{_CARBONS}}}received")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
TAKEOVER = "smacks-takeover"  # the control kind: "hand me this session" (docs/cluster.md §4)


def _cluster_id(random_hex: str, resource: str) -> str:
    """In a cluster the resumption id names the resource (the account is the resuming stream's):
    the session registry then says which node holds the session, wherever it moved since."""
    return f"{random_hex}.{base64.urlsafe_b64encode(resource.encode()).decode().rstrip('=')}"


def _resource_of(previd: str) -> str | None:
    _, dot, tail = previd.partition(".")
    if not dot or not tail or len(tail) > 1400:
        return None
    try:
        return base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4)).decode()
    except (binascii.Error, ValueError):
        return None


def _plain(data: dict[str, object]) -> dict[str, object]:
    """The per-feature session state that moves with a session to another node: plain values
    (carbons on, blocklist requested, offline messages sent, ...); objects are rebuilt there."""
    return {k: v for k, v in data.items() if not k.startswith("_") and isinstance(v, (bool, int, float, str))}


@dataclass(frozen=True, slots=True)
class SmacksOptions:
    # Seconds a session whose connection was lost waits to be resumed; 0 turns resumption off.
    resume_timeout: NonNegativeInt = 300
    # Unacknowledged stanzas kept per session; beyond it the stream (or hibernation) ends.
    max_queue: PositiveInt = 1000
    # The server sends <r/> once this many stanzas wait for an acknowledgement (0: never).
    request_every: NonNegativeInt = 5


def _nonza(name: str, attrib: dict[str, str] | None = None) -> etree._Element:
    return element(f"{{{SM}}}{name}", attrib, default_ns=SM)


def _failed(condition: str, h: int | None = None, text: str | None = None) -> etree._Element:
    el = _nonza("failed", {"h": str(h)} if h is not None else None)
    sub(el, f"{{{_STANZAS}}}{condition}")
    if text:
        sub(el, f"{{{_STANZAS}}}text", text=text)
    return el


class SmSession:
    """The observer of one session with stream management enabled."""

    __slots__ = ("feature", "session", "counters", "resume_id", "timer", "_requested", "pending", "_owed", "_waiting", "kept")

    def __init__(self, feature: "Smacks", session: "Session", resume_id: str | None) -> None:
        self.feature = feature
        self.session = session
        self.counters = SmCounters()
        self.resume_id = resume_id
        self.timer: asyncio.TimerHandle | None = None
        self._requested = False
        # (handled count of the stanza, its barrier): stanzas whose writes are not committed yet
        self.pending: collections.deque[tuple[int, "Barrier"]] = collections.deque()
        self._owed: collections.deque[int] = collections.deque()  # <r/>s not answered yet: their h
        self._waiting = False
        # In a cluster, the names under which the messages queued while hibernating are kept in
        # Redis beside the session (``Router.keep``), for a survivor if this node dies.
        self.kept: list[str] = []

    # -- SessionObserver
    def stanza_in(self) -> None:
        self.counters.stanza_in()

    def stanza_out(self, data: bytes) -> None:
        queued = self.counters.stanza_out(data, self.feature.ctx.clock.now())
        session = self.session
        opts = self.feature.options
        if queued > opts.max_queue:
            session.log.info("stream management: over %d unacknowledged stanzas", opts.max_queue)
            session.close(StreamErrorCondition.RESOURCE_CONSTRAINT, f"more than {opts.max_queue} stanzas unacknowledged")
        elif opts.request_every and queued >= opts.request_every and not self._requested and not session.hibernating:
            self._requested = True
            session.send_nonza(_nonza("r"))
        if session.hibernating and self.feature.ctx.router.clustered:
            self.feature.keep_queued(self, [self.counters.unacked[-1]])

    def keep(self, session: "Session") -> bool:
        return self.feature.hibernate(self)

    def hold(self, barrier: "Barrier") -> None:
        """The stanza just counted is stored behind: it counts in ``h`` once ``barrier`` settles."""
        self._durable()  # drop what settled meanwhile: the queue stays as short as the commit lag
        self.pending.append((self.counters.handled, barrier))

    # -- durable acks
    def _durable(self) -> int:
        """``h`` that may be acknowledged: the stanzas handled up to the first one not stored yet."""
        p = self.pending
        while p and p[0][1].settled and not p[0][1].failed:
            p.popleft()
        return (p[0][0] - 1) & MASK if p else self.counters.handled

    def request(self) -> None:
        """The client's <r/>: answered once what was handled before it is stored."""
        self._owed.append(self.counters.handled)
        self._answer()

    def _answer(self) -> None:
        owed = self._owed
        while owed:
            h = self._durable()
            if self.pending and (h - owed[0]) & MASK >= 1 << 31:  # h < owed[0]: wait for the commit
                barrier = self.pending[0][1]
                if not self._waiting and not barrier.failed:  # (a failed write is never acknowledged)
                    self._waiting = True
                    barrier.when_settled(self._wake)
                return
            owed.popleft()
            self.session.send_nonza(_nonza("a", {"h": str(h)}))

    def _wake(self) -> None:
        self._waiting = False
        self._answer()

    async def durable(self) -> int:
        """Wait until every handled stanza is stored (or failed); then the ``h`` to report."""
        for _, barrier in list(self.pending):
            if not barrier.settled:
                try:
                    await barrier.wait()
                except Exception:  # given up: not acknowledged, the client sends it again
                    break
        return self._durable()

    # -- acks
    def acked(self, h: int) -> None:
        self.counters.ack(h)
        self._requested = False
        opts = self.feature.options
        if opts.request_every and len(self.counters.unacked) >= opts.request_every and not self.session.hibernating:
            # Stanzas went out after the request this answers: ask again, or they would wait
            # for the next stanza (a burst written at once is followed by one request only).
            self._requested = True
            self.session.send_nonza(_nonza("r"))


class Smacks(Feature):
    name = "smacks"
    implements = ("XEP-0198",)
    Options = SmacksOptions

    async def setup(self) -> None:
        self._resumable: dict[str, SmSession] = {}
        self.ctx.add_nonza_handler(SM, self._nonza)
        self.ctx.add_stream_feature(self._stream_feature)
        self.ctx.on_teardown(self._cancel_timers)
        self.ctx.add_control(TAKEOVER, ControlKind(self._serve_takeover, self._orphan_takeover))

    def _cancel_timers(self) -> None:
        for sm in self._resumable.values():
            if sm.timer is not None:
                sm.timer.cancel()

    def _stream_feature(self, authenticated: bool) -> list[etree._Element]:
        return [_nonza("sm")] if authenticated else []

    # ---------------------------------------------------------------- nonzas

    async def _nonza(self, session: "Session", el: etree._Element) -> None:
        name = etree.QName(el).localname
        sm: SmSession | None = session.observer if isinstance(session.observer, SmSession) else None
        if name == "r":
            if sm is None:
                session.send_nonza(_failed("unexpected-request", text="stream management is not enabled"))
                return
            sm.request()
        elif name == "a":
            if sm is None:
                session.send_nonza(_failed("unexpected-request", text="stream management is not enabled"))
                return
            try:
                sm.acked(parse_h(el.get("h")))
            except HandledCountTooHigh as exc:
                session.close(StreamErrorCondition.UNDEFINED_CONDITION, f"handled-count-too-high: {exc}")
            except ValueError as exc:
                session.close(StreamErrorCondition.INVALID_XML, f"<a/>: {exc}")
        elif name == "enable":
            self._enable(session, el, sm)
        elif name == "resume":
            await self._resume(session, el)
        else:
            session.close(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, f"unknown stream management element {name}")

    def _enable(self, session: "Session", el: etree._Element, sm: SmSession | None) -> None:
        if session.jid is None:
            session.send_nonza(_failed("unexpected-request", text="bind a resource before enabling stream management"))
            return
        if sm is not None or session.observer is not None:
            session.send_nonza(_failed("unexpected-request", text="stream management is already enabled"))
            return
        timeout = self.options.resume_timeout
        want = el.get("resume") in ("true", "1") and timeout > 0
        if want and el.get("max", "").isdigit() and int(el.get("max")) > 0:  # type: ignore[arg-type,union-attr]
            timeout = min(timeout, int(el.get("max")))  # type: ignore[arg-type]
        resume_id = f"{self.ctx.rng.getrandbits(128):032x}" if want else None
        if resume_id is not None and self.ctx.router.remote is not None:
            resume_id = _cluster_id(resume_id, session.jid.resource or "")
        sm = SmSession(self, session, resume_id)
        session.observer = sm
        attrs: dict[str, str] = {}
        if resume_id is not None:
            self._resumable[resume_id] = sm
            session.data["smacks_max"] = timeout
            attrs = {"id": resume_id, "resume": "true", "max": str(timeout)}
        session.send_nonza(_nonza("enabled", attrs))

    async def _resume(self, session: "Session", el: etree._Element) -> None:
        if session.jid is not None:
            session.send_nonza(_failed("unexpected-request", text="resume before binding a resource"))
            return
        previd = el.get("previd") or ""
        sm = self._resumable.get(previd)
        if sm is None and self.ctx.router.remote is not None and "." in previd:
            await self._resume_moved(session, el, previd)
            return
        user = session.stream.authenticated_as
        old = sm.session if sm is not None else None
        if sm is None or old is None or old.jid is None or old.jid.local != user or not old.hibernating:
            # Unknown, expired, already resumed (and connected) or another account's: all look alike.
            session.send_nonza(_failed("item-not-found", text="no session waits to be resumed with this id"))
            return
        # <resumed h=''/> counts what is stored; the client sends the rest again.
        handled = await sm.durable()
        if self._resumable.get(previd) is not sm or sm.session is not old or not old.hibernating:
            session.send_nonza(_failed("item-not-found", text="no session waits to be resumed with this id"))
            return
        try:
            sm.acked(parse_h(el.get("h")))
        except (ValueError, HandledCountTooHigh) as exc:
            session.send_nonza(_failed("unexpected-request", sm.counters.handled, f"bad h: {exc}"))
            return
        if sm.timer is not None:
            sm.timer.cancel()
            sm.timer = None
        session.adopt(old)
        sm.session = session
        session.observer = sm
        self.unkeep(sm, session.jid)
        self._resumed(session, sm, previd, handled)

    def _resumed(self, session: "Session", sm: SmSession, previd: str, handled: int) -> None:
        """<resumed h=''/>, then every stanza the client has not acknowledged, once more."""
        session.send_nonza(_nonza("resumed", {"previd": previd, "h": str(handled)}))
        pending = [data for data, _ in sm.counters.unacked if data]  # b"": the core's replies
        if pending:
            session.transport.write(pending)  # counted when first sent
        if self.options.request_every and pending:
            sm._requested = True
            session.send_nonza(_nonza("r"))

    # ---------------------------------------------------------------- resumption on another node

    async def _resume_moved(self, session: "Session", el: etree._Element, previd: str) -> None:
        """The session to resume is on another node (docs/cluster.md §4): ask that node to close
        it and hand over its state and unacknowledged stanzas, then go on with it here."""
        remote = self.ctx.router.remote
        assert remote is not None
        try:
            h = parse_h(el.get("h"))
        except ValueError as exc:
            session.send_nonza(_failed("unexpected-request", text=f"bad h: {exc}"))
            return
        resource = _resource_of(previd)
        user = session.stream.authenticated_as
        try:
            full = JID.parse(f"{user}@{self.ctx.domain}/{resource}") if resource and user else None
        except JIDError:
            full = None
        holder = await remote.holder(full) if full is not None else None
        if full is None or holder is None or holder[0] == remote.node:
            session.send_nonza(_failed("item-not-found", text="no session waits to be resumed with this id"))
            return
        not_found = "no session waits to be resumed with this id"
        move = Move(str(full.bare), full.resource or "", f"{holder[0]}|{holder[1]}|")
        remote.begin_move(full)  # what arrives for it from now on waits until it is here
        try:
            reply = await remote.control.request(holder[0], TAKEOVER, {"id": previd, "jid": str(full), "h": h}, remote.handover_timeout, move)
        except ControlFailed as exc:
            session.log.info("stream management: resuming %s held by node %s failed: %s", full, holder[0], exc)
            if exc.previous:
                await remote.control.restore(move, exc.previous)
            await remote.end_move(full, None)
            session.send_nonza(_failed("item-not-found", text=not_found))
            return
        p = reply.payload
        if p.get("error"):  # not handed over: the entry goes back to the node that has it
            if reply.previous:
                await remote.control.restore(move, reply.previous)
            await remote.end_move(full, None)
            condition = "unexpected-request" if p["error"] == "unexpected-request" else "item-not-found"
            session.send_nonza(_failed(condition, p.get("h") if isinstance(p.get("h"), int) else None, p.get("text") or not_found))
            return
        if session.is_closed or session.jid is not None:
            await remote.control.orphan(TAKEOVER, p, str(full))  # the client left meanwhile
            return
        self._install_moved(session, previd, full, p)
        # Deliver what was held back, then bind once nothing is held or on its way here
        # through this node's outbox (no await between that check and the bind): from then on
        # stanzas find the session directly, after every older one.
        for _ in range(100):
            await remote.quiesce()
            held = remote.take_moved(full)
            if not held and remote.idle:
                break
            await remote.deliver_moved(session, held)
        try:
            session.bind_moved()
        except ResourceLimitExceeded as exc:
            session.close(StreamErrorCondition.RESOURCE_CONSTRAINT, f"resource-limit-exceeded: {exc}")
            await remote.end_move(full, None)
            return
        await remote.end_move(full, session)

    def _install_moved(self, session: "Session", previd: str, full: JID, p: dict) -> None:  # type: ignore[type-arg]
        """Take the handed-over session's state, answer <resumed/> and resend what the client
        had not acknowledged (the session is bound here after what was held back for it)."""
        presence = p.get("presence")
        session.resume_moved(
            full, available=bool(p.get("available")), priority=int(p.get("priority") or 0),
            presence=etree.fromstring(presence.encode(), _PARSER) if presence else None,
            interested=bool(p.get("interested")), data=dict(p.get("data") or {}),
        )
        sm = SmSession(self, session, previd)
        sm.counters.handled = int(p["handled"])
        sm.counters.sent = int(p["sent"])
        sm.counters.unacked.extend((d.encode(), float(w)) for d, w in p.get("unacked") or ())
        session.observer = sm
        self._resumable[previd] = sm
        self._resumed(session, sm, previd, sm.counters.handled)

    async def _serve_takeover(self, req: dict, asker: str) -> Answer:  # type: ignore[type-arg]
        """Another node resumes one of our sessions: close it here, hand over its state and what
        the client has not acknowledged; it leaves this node only once the answer is written."""
        not_found = Answer({"error": "item-not-found"})
        previd = str(req.get("id") or "")
        sm = self._resumable.get(previd)
        old = sm.session if sm is not None else None
        try:
            full = JID.parse(str(req.get("jid")))
            h = parse_h(str(req.get("h")))
        except (JIDError, ValueError):
            return not_found
        if sm is None or old is None or old.jid != full or old.is_closed and not old.hibernating:
            return not_found
        if not old.hibernating:
            # Still attached: the balancer moved the client and this node has not noticed its
            # connection is dead. It ends now (and hibernates until handed over).
            old.log.info("stream management: resumed on node %s while still connected here", asker)
            old.transport.abort()
        if sm.timer is not None:
            sm.timer.cancel()
            sm.timer = None
        handled = await sm.durable()
        if self._resumable.get(previd) is not sm or sm.session is not old or old._closed:
            return not_found
        try:
            sm.acked(h)
        except HandledCountTooHigh as exc:
            return Answer({"error": "unexpected-request", "h": sm.counters.handled, "text": f"bad h: {exc}"})
        counters = sm.counters
        n = len(counters.unacked)
        payload = {
            "jid": str(full), "handled": handled, "sent": counters.sent,
            "unacked": [[d.decode(), w] for d, w in counters.unacked],
            "available": old.available, "priority": old.priority,
            "presence": etree.tostring(old.presence, encoding="unicode") if old.presence is not None else None,
            "interested": old.interested, "data": _plain(old.data),
        }

        async def sent(ok: bool) -> None:
            if not ok:  # not handed over: it stays here, resumable as before
                if old.hibernating and sm.timer is None and self._resumable.get(previd) is sm:
                    self.hibernate(sm)
                return
            if self._resumable.get(previd) is sm:
                del self._resumable[previd]
            if sm.timer is not None:
                sm.timer.cancel()
                sm.timer = None
            late = [(d, w) for d, w in list(counters.unacked)[n:] if d]  # delivered here meanwhile
            counters.unacked.clear()
            sm.kept = []
            self.ctx.router.unkeep(full)  # its queue and what features kept: it lives on there
            now = self.ctx.clock.now()
            late.extend((d, now) for d in old.retire())
            for data, when in late:
                self._forward(full, data, when)
            remote = self.ctx.router.remote
            if remote is not None:  # the entry is the new node's; if it came back here, it goes
                await remote.drop_own(full)

        return Answer(payload, sent)

    def _forward(self, full: JID, data: bytes, when: float) -> None:
        """A stanza that reached a session after it was handed over: to its new node, in order
        (through the outbox, behind the answer); if it is bound nowhere else, re-routed as an
        unacknowledged stanza of a closed session."""
        remote = self.ctx.router.remote
        try:
            stanza = etree.fromstring(data, _PARSER)
            frm = JID.parse(stanza.get("from") or self.ctx.domain)
        except (etree.XMLSyntaxError, JIDError):
            return

        async def nowhere(r: Routed) -> None:
            await self._reroute_for(full, [(data, when)], None)

        r = Routed(stanza, etree.QName(stanza).localname, frm, full, None)
        if remote is None or not remote.to_full(r, full, nowhere):
            self.ctx.spawn(nowhere(r), name="smacks re-route")

    async def _orphan_takeover(self, payload: dict) -> None:  # type: ignore[type-arg]
        """A handed-over session nobody took (the resuming client left, or its node died): its
        unacknowledged messages go where a closed session's go (XEP-0198 §5)."""
        if payload.get("error") or not payload.get("jid"):
            return
        full = JID.parse(str(payload["jid"]))
        unacked = [(d.encode(), float(w)) for d, w in payload.get("unacked") or () if d]
        if unacked:
            await self._reroute_for(full, unacked, None)

    # ---------------------------------------------------------------- hibernation

    def hibernate(self, sm: SmSession) -> bool:
        """The connection of ``sm.session`` was lost: keep the session for resumption?"""
        if sm.resume_id is None or self._resumable.get(sm.resume_id) is not sm:
            return False
        if self.ctx.lifecycle.stopping and self.ctx.router.remote is None:
            return False  # nothing to resume into: the server is stopping (in a cluster another
            # node may take it over while this one leaves: the server ends it after cluster.handover_timeout)
        timeout = sm.session.data.get("smacks_max", self.options.resume_timeout)
        sm.timer = asyncio.get_running_loop().call_later(timeout, self._expire, sm)
        if self.ctx.router.clustered:
            self.keep_queued(sm, list(sm.counters.unacked))
        return True

    def keep_queued(self, sm: SmSession, queued: list[tuple[bytes, float]]) -> None:
        """In a cluster: the messages in a hibernating session's queue are kept in Redis beside
        it (``Router.keep``, ``sm:<n>``), so that if this node dies the survivor that cleans up
        sends them where a closed session's go (XEP-0198 §5: another resource or offline storage;
        ``on_sessions_lost``). Removed once the session is resumed, handed over or closed."""
        jid = sm.session.jid
        if jid is None:
            return
        for data, when in queued:
            if data.startswith(b"<message"):
                name = f"sm:{len(sm.kept)}"  # the order they were queued in
                sm.kept.append(name)
                self.ctx.router.keep(jid, name, f"{when!r}\n{data.decode()}")

    def unkeep(self, sm: SmSession, jid: JID | None) -> None:
        """What ``keep_queued`` kept: removed (the queue is the session's again, or handled)."""
        if sm.kept and jid is not None:
            for name in sm.kept:
                self.ctx.router.keep(jid, name, None)
        sm.kept = []

    @hook(H.SESSIONS_LOST)
    async def on_sessions_lost(self, event: H.SessionsLost) -> Flow:
        """A dead node's hibernating sessions: the messages their queues held (kept in Redis)
        go where a closed session's unacknowledged messages go, in their order."""
        for full, kept in event.kept.items():
            queued = []
            for name, value in kept.items():
                if not name.startswith("sm:"):
                    continue
                when, _, data = value.partition("\n")
                try:
                    queued.append((int(name[3:]), data.encode(), float(when)))
                except (ValueError, IndexError):
                    continue
            if queued:
                queued.sort()
                await self._reroute_for(full, [(data, when) for _, data, when in queued], None)
                self.log.info("%d messages queued for %s on node %s, which died, were sent on", len(queued), full, event.node)
        return Flow.CONTINUE

    def _expire(self, sm: SmSession) -> None:
        sm.timer = None
        session = sm.session
        if session.hibernating:
            session.log.info("stream management: not resumed within the timeout")
            session.close(None, "stream management: not resumed in time")

    @hook(H.SESSION_CLOSED, priority=100)
    async def on_closed(self, event: SessionEvent) -> Flow:
        sm = event.session.observer
        if not isinstance(sm, SmSession) or sm.session is not event.session:
            return Flow.CONTINUE
        if sm.resume_id is not None and self._resumable.get(sm.resume_id) is sm:
            del self._resumable[sm.resume_id]
        if sm.timer is not None:
            sm.timer.cancel()
            sm.timer = None
        self.unkeep(sm, event.session.jid)
        unacked = list(sm.counters.unacked)
        sm.counters.unacked.clear()
        if unacked:
            assert event.session.jid is not None
            await self._reroute_for(event.session.jid, unacked, event.session)
        return Flow.CONTINUE

    async def _reroute_for(self, jid: JID, unacked: list[tuple[bytes, float]], session: "Session | None") -> None:
        """XEP-0198 §5: unacknowledged messages go where messages for a gone resource go."""
        bare = jid.bare
        others = [s for s in self.ctx.sessions.of(bare) if s is not session and s.available and not s.is_closed]
        carbons = self.ctx.feature("carbons") if self.ctx.has_feature("carbons") else None
        with_carbons = carbons is not None and any(carbons.enabled(s) for s in others)
        reach_bare = any(s.priority >= 0 for s in others)
        for data, when in unacked:
            try:
                msg = etree.fromstring(data, _PARSER)
            except etree.XMLSyntaxError:
                continue
            if msg.tag != ns.MESSAGE or (msg.get("type") or "normal") not in ("normal", "chat"):
                continue
            if any(child.tag in _CARBON_TAGS for child in msg):
                continue  # a copy: the original is elsewhere
            to_s = msg.get("to") or str(jid)
            addressed_bare = "/" not in to_s
            if with_carbons or (addressed_bare and reach_bare):
                continue  # another resource already had it
            if not any(c.tag == _DELAY and c.get("from") == self.ctx.domain for c in msg):
                d = etree.SubElement(msg, _DELAY, {
                    "from": self.ctx.domain,
                    "stamp": timestamps.millis(when),
                }, nsmap={None: ns.DELAY})
                d.text = "Resent: not acknowledged by the client"
            msg.set("to", str(bare))
            frm = msg.get("from") or self.ctx.domain
            try:
                await self.ctx.router.route(Routed(msg, "message", JID.parse(frm), bare, None))
            except Exception:
                self.log.exception("re-routing an unacknowledged message of %s failed", jid)

    def resumable_count(self) -> int:
        return len(self._resumable)

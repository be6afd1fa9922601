"""Customer-service queues across cluster nodes (docs/cluster.md §5, docs/customer-service.md):
one owner node per queue, by lease, exactly as rooms.

Made by ``CustomerService.join_cluster`` when ``cluster.redis_url`` is set; without it none of
this exists and the service keeps every queue in its own memory as on one node.

- Every stanza for a queue (to the queue JID, to a chat's session JID ``s-<id>``, an iq naming a
  chat or a queue) is handled on the holder of the lease ``csq:<queue>``; another node forwards
  it there through the router's bus (``ClusterPort.forward``, envelope tag ``csq``). A queue
  nobody owns is acquired by its preferred node (rendezvous hashing), which claims the queue's
  fencing token in the database (``cs_queues.fence``) and loads the queue, its members and its
  open chats (the waiting line, offers, active chats: all durable in ``cs_sessions``).
- The owner writes every chat with the lease's token (``repository.FencedOut``); a renewal that
  fails, or a fenced write, drops the queue from memory at once.
- Agents' presence is the one thing only memory holds: every node remembers the last presence
  its own sessions sent to the service, and sends it again when a queue's owner went away (a
  node down or gone), so that the new owner learns who is available and serves the line.
- Graceful stop (``leave``): the owner gives its queues' leases back and drops them; what comes
  for them afterwards is forwarded to the other nodes, where the next stanza acquires the queue.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from lxml import etree

from xmppd.cluster.gates import Gates
from xmppd.core.hooks import Flow, NodeEvent, Routed
from xmppd.errors import Condition, StanzaError
from xmppd.jid import JID
from xmppd.xml import ns

from .presence import SUBSCRIPTION_TYPES
from .protocol import NS
from .repository import FencedOut

if TYPE_CHECKING:
    from .feature import CustomerService

log = logging.getLogger("xmppd.features.cs.cluster")  # beside the feature's own logger (shown at INFO)

TAG = "csq"  # the bus envelopes for a queue's owner
KIND = "csq"  # the leases
MAX_HOPS = 3
MAX_CACHED = 100_000  # chat -> queue, queue -> owner entries remembered
_QUEUE_IQS = (f"{{{NS}}}queue", f"{{{NS}}}delete-queue")
_HANDED = f"{{{NS}#cluster}}handed-over"  # between nodes only: a chat transferred into a queue
_FREED = f"{{{NS}#cluster}}seat-freed"  # between nodes only: an agent of the queue has a seat free
_RELOAD = f"{{{NS}#cluster}}reload"  # between nodes only: the queue's record or members changed in storage
_CLOSE = f"{{{NS}#cluster}}close"  # between nodes only: close the chat (as a supervisor: the REST API)
# From the node of an anonymous visitor whose session ended, to each queue it wrote to (handled
# by that queue's owner, as the visitor's messages are): the visitor is gone.
_VISITOR_GONE = f"{{{NS}#cluster}}visitor-gone"
_ASKS = (_HANDED, _FREED, _RELOAD, _CLOSE)  # what the component itself sends
MAX_GUEST_QUEUES = 16  # queues remembered per anonymous visitor of this node


def _unreachable() -> tuple[type[BaseException], ...]:
    from xmppd.cluster.connection import unreachable_errors

    return unreachable_errors()


class QueueCluster:
    def __init__(self, cs: "CustomerService", port: Any) -> None:
        self.cs = cs
        self.port = port
        self.leases = port.leases
        self.name: str = port.name
        self.leaving = False
        self._clock = asyncio.get_running_loop().time
        self._owners: dict[str, tuple[str, float]] = {}  # queue -> (owner node, until)
        self.owner_seen: dict[str, str] = {}  # queue -> the node this node last forwarded to
        self._chat_queue: dict[str, str] = {}  # chat id -> its queue (read once from storage)
        self._gates = Gates()  # one look-up (and acquisition, and load) at a time per queue
        self._tokens: dict[str, int] = {}  # queue -> the last token this node held it with
        # Presence this node's own sessions sent to the service: (full JID, to) -> the stanza.
        self.sent: dict[tuple[JID, JID], etree._Element] = {}
        # The queues each anonymous visitor of this node wrote to (their owners are told when its
        # session ends, ``guest_gone``).
        self.guest_queues: dict[JID, set[str]] = {}
        self._removers = [port.serve(TAG, self._from_bus), self.leases.on_lost(KIND, self._lost)]

    # ---------------------------------------------------------------- ownership

    def owns(self, queue: str) -> bool:
        return self.leases.token(KIND, queue) is not None

    def token(self, queue: str) -> int:
        """The token to write ``queue``'s chats with: the lease's; while the queue is still loaded
        here after its lease was lost, the last one held (such a write is refused by the fence
        once another node claimed the queue, never unfenced); 0 for a queue not held here (a
        chat transferred there: the write that hands it over)."""
        token = self.leases.token(KIND, queue)
        if token is not None:
            return token
        if any(s.queue == queue for s in self.cs.open.values()):
            return self._tokens.get(queue, 0)
        return 0

    def unload(self, queue: str) -> None:
        """Forget ``queue``'s live state here: its chats stay in storage for the next owner."""
        self.cs.state.unindex_queue(queue)

    async def _load(self, queue: str, token: int) -> bool:
        """Claim the queue's token in storage and load it; False: a newer owner wrote it."""
        cs = self.cs
        if not await cs.repo.claim_queue(queue, token):
            return False
        if len(self._tokens) >= MAX_CACHED:
            self._tokens.clear()
        self._tokens[queue] = token
        qr = await cs.repo.get_queue(queue)
        self.unload(queue)
        if qr is None:  # no such queue (yet: a queue being created is written by its owner)
            cs.queues.pop(queue, None)
            cs.members.pop(queue, None)
            log.info("queue %s now lives on node %s (token %d, not stored yet)", queue, self.name, token)
            return True
        cs.queues[queue] = qr
        cs.members[queue] = {m.jid: m for m in await cs.repo.members(queue)}
        line = 0
        for s in await cs.repo.open_sessions(queue):
            if s.state == "offered":  # an offer does not survive its node: back in line, same place
                s = s.replace(state="waiting", agent=None)
                await cs.repo.save_session(s, token)
            cs.state.index(s)
            line += s.state == "waiting"
        log.info("queue %s now lives on node %s (token %d, %d chats open, %d waiting)", queue, self.name, token,
                 sum(1 for s in cs.open.values() if s.queue == queue), line)
        return True

    # ---------------------------------------------------------------- where a stanza goes

    async def queue_of(self, r: Routed) -> str | None:
        """The queue a stanza concerns, or None: handled by the node that received it."""
        to = r.to
        assert to is not None
        local = to.local
        if local is None:
            if r.kind != "iq" or not len(r.stanza):
                return None
            payload = r.stanza[0]
            if payload.tag in _QUEUE_IQS:
                return payload.get("name") or None
            sid = payload.get("session")
            return await self._queue_of_chat(sid) if sid else None
        if local.startswith("s-"):
            return await self._queue_of_chat(local[2:])
        if r.kind != "presence":
            visitor = str(r.from_jid.bare)
            held = self.cs.state.visitor_session(local, visitor)
            if held is not None:  # the visitor's chat is here (perhaps transferred into a queue held here)
                return held.queue
            if self.owns(local):  # no chat here: one transferred to a queue another node holds?
                stored = await self.cs.repo.open_chat(local, visitor)
                if stored is not None and stored.queue != local:
                    return stored.queue
        return local

    async def _queue_of_chat(self, sid: str) -> str | None:
        s = self.cs.open.get(sid)
        if s is not None:
            return s.queue
        queue = self._chat_queue.get(sid)
        if queue is not None and self.owns(queue):  # ours, yet not open here: closed or transferred since
            queue = None
        if queue is None:
            stored = await self.cs.repo.get_session(sid)
            if stored is None:
                return None
            queue = stored.queue
            if stored.state != "closed":  # a transfer may still move it: remember open chats only
                if len(self._chat_queue) >= MAX_CACHED:
                    self._chat_queue.clear()
                self._chat_queue[sid] = queue
        return queue

    async def here(self, r: Routed, hops: int) -> bool:
        """True when this node handles ``r`` (it owns the queue, acquired now if nobody did, or
        the stanza concerns no queue). False: forwarded to the owner, or answered with an error."""
        queue = await self.queue_of(r)
        # Owned and loaded (while a stanza acquires and loads it, the others wait at its gate).
        if queue is None or self.owns(queue) and not self.leaving and queue not in self._gates:
            return True
        cached = self._owners.get(queue)
        if cached is not None and hops == 0 and not self.leaving:
            if cached[1] > self._clock() and self.port.is_live(cached[0]):
                self._forward(cached[0], r, hops)
                return False
            del self._owners[queue]
        async with self._gates.hold(queue):
            return await self._locate(r, hops, queue)

    async def _locate(self, r: Routed, hops: int, queue: str) -> bool:
        if self.owns(queue) and not self.leaving:
            return True
        try:
            lease = await self.leases.owner(KIND, queue)
            if lease is not None and lease.node != self.name:
                self._drop_stale(queue)
                if await self.port.alive(lease.node):
                    if len(self._owners) >= MAX_CACHED:
                        self._owners.clear()
                    self._owners[queue] = (lease.node, self._clock() + self.port.heartbeat)
                    self._forward(lease.node, r, hops)
                    return False
                if not await self.leases.break_dead(KIND, queue, lease):
                    await self._refuse(r, "the queue is changing nodes: try again")
                    return False
                log.info("queue %s: its owner node %s is down, taking the queue over", queue, lease.node)
                lease = None
            if lease is None:
                if self.leaving:  # stopping: the next owner is one of the others
                    others = [n for n in self.port.live_nodes() if n != self.name]
                    if others and hops < MAX_HOPS:
                        from xmppd.cluster.leases import rendezvous

                        self._forward(rendezvous(others, queue), r, hops)
                    else:
                        await self._refuse(r, "the queue's node is stopping: try again")
                    return False
                if hops == 0:
                    preferred = self.port.preferred(queue)
                    if preferred != self.name and await self.port.present(preferred):
                        self._forward(preferred, r, hops)
                        return False
                lease = await self.leases.acquire(KIND, queue, await self.cs.repo.queue_fence(queue))
                if lease is None or lease.node != self.name:  # another node was quicker
                    if lease is not None:
                        self._forward(lease.node, r, hops)
                    else:
                        await self._refuse(r, "the queue is changing nodes: try again")
                    return False
            elif self.leases.token(KIND, queue) is None and not await self.leases.adopt(KIND, queue, lease):
                await self._refuse(r, "the queue is changing nodes: try again")
                return False
            if not await self._load(queue, lease.token):
                await self.leases.release(KIND, queue)
                await self._refuse(r, "the queue is changing nodes: try again")
                return False
            self.acquired(queue)
            return True
        except _unreachable() as exc:
            if any(s.queue == queue for s in self.cs.open.values()):
                return True  # cut off from Redis: serve what we hold until the lease runs out
            log.warning("queue %s: the cluster cannot be reached (%s)", queue, exc or type(exc).__name__)
            await self._refuse(r, "the queue cannot be reached now")
            return False
        except Exception:
            log.exception("queue %s could not be located or loaded", queue)
            self.unload(queue)
            await self.leases.release(KIND, queue)
            await self._refuse(r, "the queue could not be loaded", Condition.INTERNAL_SERVER_ERROR)
            return False

    def _forward(self, node: str, r: Routed, hops: int) -> None:
        if hops >= MAX_HOPS:
            self.cs.ctx.spawn(self._refuse(r, "the queue is changing nodes: try again"), name="cs-refuse")
            return
        queue = self._queue_hint(r)
        if queue is not None:
            self.owner_seen[queue] = node
        self.port.forward(node, TAG, r, hops, self._not_taken)

    @staticmethod
    def _queue_hint(r: Routed) -> str | None:
        local = r.to.local if r.to is not None else None
        return local if local and not local.startswith("s-") else None

    async def _not_taken(self, r: Routed) -> None:
        await self._refuse(r, "the queue's node cannot be reached now")

    async def _refuse(self, r: Routed, text: str, condition: Condition = Condition.SERVICE_UNAVAILABLE) -> None:
        if r.kind == "presence" or r.stanza.get("type") == "error":
            return  # presence is never answered with an error here; it is sent again on a move
        self.cs.ctx.router.bounce(r, StanzaError(condition, text))

    async def _from_bus(self, r: Routed, hops: int, origin: str) -> None:
        """A stanza another node forwarded to this node as the queue's (preferred) owner, or a
        new owner's request for its agents' presence."""
        if r.kind == "presence" and r.stanza.get("type") == "probe" and r.from_jid.domain == self.cs.domain \
                and r.from_jid.local is not None and r.to is not None and r.to.local == r.from_jid.local:
            await self.resend(f"queue {r.from_jid.local} moved to node {origin}", r.from_jid.local)
            return
        await self.cs.receive(r, hops=hops)

    def acquired(self, queue: str) -> None:
        """A queue came here: every node (this one too) sends its agents' presence for it again."""
        me = JID(queue, self.cs.domain)
        for node in self.port.live_nodes():
            if node == self.name:
                self.cs.ctx.spawn(self.resend(f"queue {queue} moved here", queue), name="cs-resend-presence")
                continue
            p = etree.Element(f"{{{ns.CLIENT}}}presence", {"type": "probe", "from": str(me), "to": str(me)}, nsmap={None: ns.CLIENT})
            self.port.forward(node, TAG, Routed(p, "presence", me, me), 0, None)

    # ---------------------------------------------------------------- agents' presence

    def remember(self, r: Routed) -> None:
        """What a stanza to the service tells this node to keep: presence one of its own sessions
        sent (until unavailable, sent again when a queue moves), the queue an anonymous visitor
        of this node wrote to (told when the visitor goes, ``guest_gone``)."""
        if r.kind != "presence":
            self._remember_guest(r)
            return
        if r.stanza.get("type") in (*SUBSCRIPTION_TYPES, "probe", "error"):
            return
        if r.to is None or self.cs.ctx.sessions.get(r.from_jid) is None:
            return
        key = (r.from_jid, r.to.bare)
        if r.stanza.get("type") == "unavailable":
            self.sent.pop(key, None)
        elif len(self.sent) < MAX_CACHED or key in self.sent:
            self.sent[key] = r.stanza

    def _remember_guest(self, r: Routed) -> None:
        """A message or iq (``<join/>``) one of this node's anonymous visitors sent to a queue."""
        to = r.to
        if r.origin is None or to is None or not to.local or to.local.startswith("s-"):
            return
        if r.from_jid.domain != self.cs.ctx.config.anonymous.domain:
            return
        queues = self.guest_queues.setdefault(r.from_jid, set())
        if len(queues) < MAX_GUEST_QUEUES:
            queues.add(to.local)

    async def split_presence(self, r: Routed) -> None:
        """An agent's presence to the component itself: one copy to each queue they serve as an
        agent (as storage says), handled by that queue's owner."""
        cs = self.cs
        who = str(r.from_jid.bare)
        for m in await cs.repo.members():
            if m.jid == who and m.role == "agent":
                p = etree.fromstring(etree.tostring(r.stanza))
                to = JID(m.queue, cs.domain)
                p.set("to", str(to))
                await cs.receive(Routed(p, "presence", r.from_jid, to))

    def session_gone(self, full: JID) -> None:
        for key in [k for k in self.sent if k[0] == full]:
            del self.sent[key]

    async def resend(self, why: str, queue: str | None = None) -> None:
        """Send this node's agents' last presence to the service again (each to its queue's
        owner now, acquiring the queue if nobody holds it); ``queue``: only what concerns it."""
        items = [(k, p) for k, p in self.sent.items() if queue is None or k[1].local in (None, queue)]
        if not items:
            return
        log.info("customer service: sending %d agents' presence to the queues' owners again (%s)", len(items), why)
        for (full, to), p in items:
            if self.cs.ctx.sessions.get(full) is None:
                self.sent.pop((full, to), None)
                continue
            try:
                await self.cs.receive(Routed(p, "presence", full, to))
            except Exception:
                log.exception("sending %s's presence to %s again failed", full, to)

    # ---------------------------------------------------------------- chats moving between queues

    async def hand_over(self, s: Any) -> None:
        """A chat this node transferred to a queue another node holds (stored already): that
        queue's owner learns of it (acquiring the queue if nobody holds it). Call without the lock."""
        await self._tell(s.queue, _HANDED, session=s.id)

    async def nudge(self, agent: str) -> None:
        """``agent`` freed a seat on this node: the other queues they serve (as storage says)
        that another node holds serve their line again, since that node may have passed the
        agent over as full (their capacity counts every queue's chats). Call without the lock."""
        for m in await self.cs.repo.members():
            if m.jid == agent and m.role == "agent" and not self.owns(m.queue):
                await self._tell(m.queue, _FREED, agent=agent)

    async def reload(self, queue: str) -> None:
        """This node (not the owner: the REST API, an ad-hoc command) changed ``queue``'s record
        or members in storage: its owner reads them again and serves its line (acquiring the
        queue if nobody holds it). Call without the lock."""
        if not self.owns(queue):
            await self._tell(queue, _RELOAD)

    async def close_chat(self, sid: str) -> None:
        """The REST API on a node not holding the chat's queue: its owner closes the chat as a
        supervisor would (sent to the chat's session JID, which routes to that owner)."""
        await self._tell(f"s-{sid}", _CLOSE)

    async def _tell(self, local: str, tag: str, **attrs: str) -> None:
        await self.cs.receive(self._internal(JID(None, self.cs.domain), local, tag, **attrs))

    def _internal(self, frm: JID, local: str, tag: str, /, **attrs: str) -> Routed:
        """A message between nodes only, from ``frm`` to ``local`` at the service, carrying ``tag``."""
        to = JID(local, self.cs.domain)
        m = etree.Element(f"{{{ns.CLIENT}}}message", {"from": str(frm), "to": str(to), "type": "normal"}, nsmap={None: ns.CLIENT})
        etree.SubElement(m, tag, attrs)
        return Routed(m, "message", frm, to)

    async def guest_gone(self, visitor: JID) -> None:
        """An anonymous visitor of this node is gone: the owner of each queue it wrote to (this
        node or another) closes its chats, told by a message from the visitor, routed as its
        lines are (to the queue a transferred chat is in now)."""
        for queue in self.guest_queues.pop(visitor, ()):
            try:
                await self.cs.receive(self._internal(visitor, queue, _VISITOR_GONE))
            except Exception:
                log.exception("telling queue %s that visitor %s is gone failed", queue, visitor)

    async def internal(self, r: Routed) -> bool:
        """(On the queue's owner.) A message between nodes only, handled here (True): from the
        component itself, a chat handed over (``hand_over``), a seat freed (``nudge``), a queue
        to read again (``reload``), a chat to close (``close_chat``); from an anonymous
        visitor's node, the visitor gone (``guest_gone``). False: any other stanza."""
        if r.kind != "message":
            return False
        cs = self.cs
        to = r.to
        if r.from_jid == JID(None, cs.domain) and to is not None and to.local:
            el = next((el for el in r.stanza if el.tag in _ASKS), None)
            if el is not None:
                async with cs.locked():
                    if el.tag == _HANDED:
                        await self.take(to.local, el.get("session") or "")
                    elif el.tag == _CLOSE:
                        s = cs.open.get(to.local[2:])
                        if s is not None:
                            await cs.close(s, "supervisor")
                    else:
                        if el.tag == _RELOAD:
                            await self.learn_queue(to.local)
                        else:
                            cs.state.forget_tries()
                        await cs.dispatch(to.local)
                return True
        if r.stanza.find(_VISITOR_GONE) is not None:
            if r.from_jid.domain == cs.ctx.config.anonymous.domain:  # (a visitor may end its own chats)
                await cs.visitor_gone(str(r.from_jid.bare))
            return True
        return False

    async def learn_queue(self, name: str) -> None:
        """A queue another node created: its record and members from storage (a mirror here)."""
        qr = await self.cs.repo.get_queue(name)
        if qr is not None:
            self.cs.queues[name] = qr
            self.cs.members[name] = {m.jid: m for m in await self.cs.repo.members(name)}
        else:  # deleted
            self.cs.queues.pop(name, None)
            self.cs.members.pop(name, None)

    async def take(self, queue: str, sid: str) -> None:
        """(Under the lock.) A chat transferred into ``queue``, which this node holds: load it
        from storage and serve the line."""
        cs = self.cs
        s = await cs.repo.get_session(sid)
        if s is None or s.state == "closed" or s.queue != queue or not self.owns(queue):
            return
        if s.entry not in cs.queues:  # the visitor writes to the queue they came in through
            await self.learn_queue(s.entry)
        cs.state.index(s)
        await self.cs.dispatch(queue)

    # ---------------------------------------------------------------- ownership ends

    def _drop_stale(self, queue: str) -> None:
        if self.leases.token(KIND, queue) is None and any(s.queue == queue for s in self.cs.open.values()):
            log.warning("queue %s is owned by another node now: dropped here", queue)
            self.unload(queue)

    async def fenced_out(self, queue: str, exc: FencedOut) -> None:
        log.warning("queue %s: %s; another node owns it, dropped here", queue, exc)
        self.leases.forget(KIND, queue)
        self.unload(queue)

    async def _lost(self, name: str, token: int) -> None:
        # Not from the heartbeat loop itself: a chat being handled finishes first (under the lock).
        self.cs.ctx.spawn(self._unload_locked(name), name=f"cs-unload {name}")

    async def _unload_locked(self, name: str) -> None:
        async with self.cs.lock:
            if self.leases.token(KIND, name) is None:
                self.unload(name)

    async def leave(self) -> None:
        """Graceful stop: give every queue's lease back; the next stanza acquires it elsewhere.
        The chats are in storage already (every change is written through)."""
        self.leaving = True
        for queue in self.leases.held(KIND):
            self.unload(queue)
            await self.leases.release(KIND, queue)
            log.info("queue %s released: another node takes it at its next stanza", queue)

    def detach(self) -> None:
        for remove in self._removers:
            remove()
        self._removers = []

    # ---------------------------------------------------------------- nodes

    async def node_down(self, ev: NodeEvent) -> Flow:
        gone = {q for q, n in self.owner_seen.items() if n == ev.node}
        gone |= {q for q, (n, _) in self._owners.items() if n == ev.node}
        for q in gone:
            self.owner_seen.pop(q, None)
            self._owners.pop(q, None)
        if self.sent:
            self.cs.ctx.spawn(self.resend(f"node {ev.node} {'left' if ev.graceful else 'is down'}"), name="cs-resend-presence")
        return Flow.CONTINUE


__all__ = ["KIND", "TAG", "QueueCluster"]

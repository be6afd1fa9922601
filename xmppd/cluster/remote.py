"""What the router asks when a recipient has no session here (docs/cluster.md §3).

``Router.remote`` is one of these when ``cluster.redis_url`` is set, None otherwise. It finds a
JID's sessions on the other nodes (``ClusterSessions``) and publishes the stanza to their nodes'
streams (``Bus``), serialised once per node; on the receiving node ``receive`` writes it to the
sessions named in the envelope through the router's last step (``Router.deliver``: the DELIVER
hooks run there), without the sender-side hooks and checks, which ran on the sender's node.

Publishing never makes the sender's session wait for Redis: ``to_full`` and ``to_entries``
queue the envelope in one outbox, and one writer task sends what is queued in one pipeline (one
round trip for many stanzas) in queue order, so one sender's stanzas keep their order. What no
node took (the full JID is bound nowhere else, or Redis failed) comes back to the router's
fallback, in the writer task: the path of a recipient without a session.

Redis unreachable: lookups answer "none" and publications fail into that fallback, so the router
goes on as for a recipient without a session (a message to the account's other resources or to offline storage,
an iq answered ``service-unavailable``), so nothing is dropped silently and local delivery never
waits for Redis.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lxml import etree

from ..core.hooks import Routed
from ..errors import Condition
from ..i18n import core_error
from ..jid import JID
from .bus import Bus
from .connection import unreachable_errors
from .control import CONTROL, Control, Request
from .sessions import ClusterSessions, Entry

if TYPE_CHECKING:
    from ..core.router import Router
    from ..core.session import Session

log = logging.getLogger(__name__)

Fallback = Callable[[Routed], Awaitable[None]]
MAX_HOPS = 2
BATCH = 200  # a stanza re-sent by nodes that no longer held its recipient, at most this often
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class RemoteSessions:
    def __init__(self, router: "Router", sessions: ClusterSessions, bus: Bus, handover_timeout: float = 5.0) -> None:
        self.router = router
        self.sessions = sessions
        self.bus = bus
        self.node = sessions.node
        self.handover_timeout = handover_timeout
        self._warned = False
        self._outbox: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # the outbox is empty and nothing it sent is unsettled
        self._idle.set()
        # Full JIDs whose session is being moved here (XEP-0198 resumption of a session another
        # node held): what arrives for them waits, in order, until the session is in place.
        self.moving: dict[JID, list[tuple[str, Any]]] = {}
        # Requests between nodes that are not stanzas (XEP-0198 resumption elsewhere): control.py.
        self.control = Control(self)
        self._writer = asyncio.create_task(self._write(), name=f"cluster outbox {self.node}")

    # ------------------------------------------------------------------ sending side

    def to_full(self, r: Routed, full: JID, fallback: Fallback, hops: int = 0) -> bool:
        """Queue ``r`` for the node holding ``full``, if another one does; the writer runs
        ``fallback(r)`` when none does or Redis fails. False: not queued (too many hops)."""
        if hops >= MAX_HOPS:
            return False
        fields = self._envelope(r, [full], hops)
        self._queue(_Item(r, fallback, None, fields, (self.sessions.keys.sess(str(full.bare)), full.resource or "")))
        return True

    async def others(self, bare: JID, hops: int = 0) -> list[Entry]:
        """``bare``'s sessions on the other nodes, and those moving here from another node
        (held back until they are in place); [] when Redis cannot be reached."""
        if hops >= MAX_HOPS:
            return []
        try:
            return [e for e in await self.sessions.of(bare) if e.node != self.node or e.full in self.moving]
        except unreachable_errors() as exc:
            self._unreachable(exc)
            return []

    async def holder(self, full: JID) -> tuple[str, str] | None:
        """``(node, incarnation)`` of the live node holding ``full``, or None (bound nowhere, its
        node is dead or not cleaned up yet, or Redis cannot be reached)."""
        try:
            found = await self.sessions.holder(full)
            if found is None:
                return None
            if found[0] != self.node and await self.bus.redis.hget(self.bus.keys.node(found[0]), "incarnation") != found[1]:
                return None
            return found
        except unreachable_errors() as exc:
            self._unreachable(exc)
            return None

    async def drop_own(self, full: JID) -> None:
        """Remove ``full``'s entry if this node holds it (a session handed over elsewhere)."""
        try:
            await self.sessions.drop_entry(str(full.bare), full.resource or "", self.node, self.sessions.incarnation)
        except unreachable_errors() as exc:
            self._unreachable(exc)

    def to_entries(self, r: Routed, entries: list[Entry], hops: int, fallback: Fallback | None) -> None:
        """Queue ``r`` once per node of ``entries``; ``fallback(r)`` runs if no node took it."""
        by_node: dict[str, list[JID]] = defaultdict(list)
        for e in entries:
            by_node[e.node].append(e.full)
        group = _Group(len(by_node))
        data = etree.tostring(r.stanza, encoding="unicode")
        for node, fulls in by_node.items():
            # One resource on that node: looked up again as it is published (one script), so
            # that a session that moved meanwhile (XEP-0198 resumption elsewhere) is followed.
            full = (self.sessions.keys.sess(str(fulls[0].bare)), fulls[0].resource or "") if len(fulls) == 1 else None
            self._queue(_Item(r, fallback, node, self._envelope(r, fulls, hops, data), full, group))

    def _envelope(self, r: Routed, fulls: list[JID], hops: int, data: str | None = None) -> dict[str, str]:
        if data is None:
            data = etree.tostring(r.stanza, encoding="unicode")
        return {
            "k": r.kind, "f": str(r.from_jid), "t": str(r.to) if r.to is not None else "",
            "r": " ".join(str(f) for f in fulls), "h": str(hops), "o": self.node, "x": data,
        }

    # ------------------------------------------------------------------ the outbox

    def _queue(self, item: "_Item") -> None:
        self._outbox.append(item)
        self._idle.clear()
        self._wake.set()

    def queue_request(self, req: Request) -> None:
        """A control request (control.py), sent in order with the stanzas queued before it."""
        self._queue(_Item(None, None, req.node, req.fields, None, None, req))

    @property
    def idle(self) -> bool:
        return self._idle.is_set() and not self._outbox

    async def quiesce(self) -> None:
        """Until everything queued so far was sent and settled."""
        await self._idle.wait()

    async def _write(self) -> None:
        outbox = self._outbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            while outbox:
                batch = [outbox.popleft() for _ in range(min(BATCH, len(outbox)))]
                batch = [i for i in batch if i.ctl is None or not i.ctl.sent.done()]  # (a request given up: not sent)
                if not batch:
                    continue
                results: list[Any]
                try:
                    async with self.bus.redis.pipeline(transaction=False) as pipe:
                        for item in batch:
                            if item.ctl is not None:
                                await self.control.script(item.ctl, pipe)
                            elif item.full is not None:
                                await self.bus.publish_to_full(item.full[0], item.full[1], item.fields, client=pipe)
                            else:
                                pipe.xadd(self.bus.keys.bus(item.node or ""), item.fields, maxlen=self.bus.bus_max, approximate=True)
                        results = await pipe.execute(raise_on_error=False)
                except unreachable_errors() as exc:
                    self._unreachable(exc)
                    results = [exc] * len(batch)
                else:
                    if any(not isinstance(x, Exception) for x in results):
                        self._warned = False
                for item, result in zip(batch, results, strict=True):
                    if item.ctl is not None:
                        if not item.ctl.sent.done():
                            item.ctl.sent.set_result(result)
                        continue
                    if item.full is not None and result == self.node:
                        await self._settle(item, await self._here(item))
                        continue
                    ok = bool(result) and not isinstance(result, Exception)
                    if isinstance(result, Exception) and not isinstance(result, unreachable_errors()):
                        log.error("publishing a stanza on the cluster bus failed: %s", result)
                    await self._settle(item, ok)
            if not outbox:
                self._idle.set()

    async def _here(self, item: "_Item") -> bool:
        """The registry says this node holds the recipient: a session moving here (held back
        until it is in place), or bound here since the sender looked; False: neither."""
        assert item.routed is not None
        full = JID.parse(item.fields["r"])
        held = self.moving.get(full)
        if held is not None:
            held.append(("here", item))
            return True
        session = self.router.sessions.get(full)
        if session is None:
            return False
        await self.router.deliver(session, item.routed.stanza, item.routed.kind)
        return True

    async def _settle(self, item: "_Item", ok: bool) -> None:
        if item.routed is None:
            return
        group = item.group
        if group is not None:
            group.pending -= 1
            group.ok = group.ok or ok
            if group.pending or group.ok:
                return
        elif ok:
            return
        if item.fallback is not None:
            try:
                await item.fallback(item.routed)
            except Exception:
                log.exception("the fallback of a stanza for another node failed (to %s)", item.routed.to)

    def send_soon(self, stanza: etree._Element, to: JID) -> None:
        """An error reply for a session on another node, from a synchronous path (``bounce``)."""
        r = Routed(stanza, etree.QName(stanza).localname, JID.parse(stanza.get("from") or self.router.domain), to, None)
        self.to_full(r, to, _drop)

    def _unreachable(self, exc: BaseException) -> None:
        if not self._warned:
            log.warning("Redis unreachable (%s): stanzas for other nodes' sessions go to offline storage or are answered with errors", exc or type(exc).__name__)
            self._warned = True

    # ------------------------------------------------------------------ receiving side

    async def receive(self, fields: dict[str, str]) -> None:
        """An envelope from the bus (or from a dead node's stream): deliver it to the sessions it
        names; what finds none of them goes on as for a resource that is gone (RFC 6121 §8.5.3.2)."""
        if fields.get("k") == CONTROL:
            await self.control.receive(fields)
            return
        router = self.router
        stanza = etree.fromstring(fields["x"].encode(), _PARSER)
        kind = fields["k"]
        to_s = fields.get("t")
        r = Routed(stanza, kind, JID.parse(fields["f"]), JID.parse(to_s) if to_s else None, None)
        hops = int(fields.get("h") or 0) + 1
        targets = [JID.parse(t) for t in fields.get("r", "").split()]
        if len(targets) == 1 and targets[0] in self.moving:
            self.moving[targets[0]].append(("bus", fields))  # delivered once the session is here
            return
        sessions = [s for s in (router.sessions.get(t) for t in targets) if s is not None]
        for i, s in enumerate(sessions):
            await router.deliver(s, stanza if i == len(sessions) - 1 else _copy(stanza), kind)
        if sessions or not targets:
            return
        if len(targets) == 1 and targets[0].resource is not None and hops < MAX_HOPS:
            # The session may have moved to another node (XEP-0198 resumption there) after the
            # sender looked it up: the registry says where; if nowhere else, it is gone.
            full = targets[0]

            async def gone(r: Routed) -> None:
                await self._gone(r, [full], hops)

            self.to_full(r, full, gone, hops)
            return
        await self._gone(r, targets, hops)

    async def _gone(self, r: Routed, targets: list[JID], hops: int) -> None:
        """What was for ``targets``, bound nowhere now: as for a resource that is gone."""
        router = self.router
        stanza, kind = r.stanza, r.kind
        typ = stanza.get("type")
        if kind == "message" and typ in (None, "normal", "chat"):
            r.to = targets[0].bare
            await router.deliver_message_to_bare(r, hops)
        elif kind == "iq" and typ in ("get", "set"):
            router.bounce(r, core_error(Condition.SERVICE_UNAVAILABLE, "recipient_unavailable"))
        # other messages, presence and iq answers to a session that is gone: dropped, as locally

    # ------------------------------------------------------------------ a session moving here

    def begin_move(self, full: JID) -> None:
        self.moving.setdefault(full, [])

    def take_moved(self, full: JID) -> list[tuple[str, Any]]:
        """What was held back for ``full`` so far, oldest first (the hold goes on)."""
        held = self.moving.get(full)
        if not held:
            return []
        self.moving[full] = []
        return held

    async def deliver_moved(self, session: "Session", items: list[tuple[str, Any]]) -> None:
        """Deliver what was held back to the session that moved here (not bound here yet)."""
        for how, x in items:
            if how == "bus":
                stanza = etree.fromstring(x["x"].encode(), _PARSER)
                await self.router.deliver(session, stanza, x["k"])
            else:
                await self.router.deliver(session, x.routed.stanza, x.routed.kind)
                await self._settle(x, True)

    async def end_move(self, full: JID, session: "Session | None") -> None:
        """The hold ends: what is left goes to ``session`` (bound here now), or, when the move
        failed (its entry went back, or away), on as if it had never been held."""
        items = self.moving.pop(full, None) or []
        if session is not None:
            await self.deliver_moved(session, items)
            return
        for how, x in items:
            if how == "bus":
                await _handle_safely(self.receive, x)
            else:
                self._queue(x)  # published again: the registry says where it is now

    async def stop(self) -> None:
        """Stop the writer; what is still queued takes its fallback (offline storage, errors)."""
        self.control.cancel_all()
        self._writer.cancel()
        try:
            await self._writer
        except asyncio.CancelledError:
            pass
        while self._outbox:
            await self._settle(self._outbox.popleft(), False)


def _copy(el: etree._Element) -> etree._Element:
    import copy

    return copy.deepcopy(el)


async def _handle_safely(handle: Callable[[dict[str, str]], Awaitable[None]], fields: dict[str, str]) -> None:
    try:
        await handle(fields)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("a stanza held for a moving session could not be handled (to %s)", fields.get("t"))


async def _drop(r: Routed) -> None:
    """An error reply whose recipient is gone everywhere: dropped (no error about an error)."""


class _Group:
    __slots__ = ("pending", "ok")

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.ok = False


class _Item:
    """A queued envelope: for the node holding ``full`` (``(sess key, resource)``), or ``node``;
    or a control request (``ctl``)."""

    __slots__ = ("routed", "fallback", "node", "fields", "full", "group", "ctl")

    def __init__(self, routed: Routed | None, fallback: Fallback | None, node: str | None, fields: dict[str, str],
                 full: tuple[str, str] | None, group: _Group | None = None, ctl: Request | None = None) -> None:
        self.ctl = ctl
        self.routed = routed
        self.fallback = fallback
        self.node = node
        self.fields = fields
        self.full = full
        self.group = group

"""What the router asks when a recipient has no session here (docs/cluster.md §3).

``Router.remote`` is one of these when ``cluster.redis_url`` is set, None otherwise. It finds a
JID's sessions on the other nodes (``ClusterSessions``) and publishes the stanza to their nodes'
streams (``Bus``), serialised once per node; on the receiving node ``receive`` writes it to the
sessions named in the envelope through the router's last step (``Router.deliver``: the DELIVER
hooks run there), without the sender-side hooks and checks, which ran on the sender's node.

Redis unreachable: every method answers "not delivered" and the router goes on as for a
recipient without a session (a message to the account's other resources or to offline storage,
an iq answered ``service-unavailable``), so nothing is dropped silently and local delivery never
waits for Redis.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from lxml import etree

from ..core.hooks import Routed
from ..errors import Condition
from ..i18n import core_error
from ..jid import JID
from .bus import Bus
from .connection import unreachable_errors
from .sessions import ClusterSessions, Entry

if TYPE_CHECKING:
    from ..core.router import Router

log = logging.getLogger(__name__)

MAX_HOPS = 2  # a stanza re-sent by nodes that no longer held its recipient, at most this often
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class RemoteSessions:
    def __init__(self, router: "Router", sessions: ClusterSessions, bus: Bus) -> None:
        self.router = router
        self.sessions = sessions
        self.bus = bus
        self.node = sessions.node
        self._tasks: set[asyncio.Task[Any]] = set()
        self._warned = False

    # ------------------------------------------------------------------ sending side

    async def to_full(self, r: Routed, full: JID, hops: int = 0) -> bool:
        """``full`` is bound on another node: publish ``r`` there. False: not delivered (no
        such session in the cluster, or Redis unreachable)."""
        if hops >= MAX_HOPS:
            return False
        try:
            node = await self.sessions.where(full)
            if node is None or node == self.node:
                return False
            await self.publish(node, r, [full], hops)
        except unreachable_errors() as exc:
            self._unreachable(exc)
            return False
        return True

    async def others(self, bare: JID, hops: int = 0) -> list[Entry]:
        """``bare``'s sessions on the other nodes ([] when Redis cannot be reached)."""
        if hops >= MAX_HOPS:
            return []
        try:
            return [e for e in await self.sessions.of(bare) if e.node != self.node]
        except unreachable_errors() as exc:
            self._unreachable(exc)
            return []

    async def to_entries(self, r: Routed, entries: list[Entry], hops: int = 0) -> bool:
        """Publish ``r`` once per node of ``entries``; True when at least one node got it."""
        by_node: dict[str, list[JID]] = defaultdict(list)
        for e in entries:
            by_node[e.node].append(e.full)
        sent = False
        data = None
        for node, fulls in by_node.items():
            try:
                data = await self.publish(node, r, fulls, hops, data)
                sent = True
            except unreachable_errors() as exc:
                self._unreachable(exc)
        return sent

    async def publish(self, node: str, r: Routed, fulls: list[JID], hops: int, data: str | None = None) -> str:
        if data is None:
            data = etree.tostring(r.stanza, encoding="unicode")
        await self.bus.publish(node, {
            "k": r.kind, "f": str(r.from_jid), "t": str(r.to) if r.to is not None else "",
            "r": " ".join(str(f) for f in fulls), "h": str(hops), "o": self.node, "x": data,
        })
        self._warned = False
        return data

    def send_soon(self, stanza: etree._Element, to: JID) -> None:
        """An error reply for a session on another node, from a synchronous path (``bounce``)."""
        r = Routed(stanza, etree.QName(stanza).localname, JID.parse(stanza.get("from") or self.router.domain), to, None)
        task = asyncio.create_task(self.to_full(r, to))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _unreachable(self, exc: BaseException) -> None:
        if not self._warned:
            log.warning("Redis unreachable (%s): stanzas for other nodes' sessions go to offline storage or are answered with errors", exc or type(exc).__name__)
            self._warned = True

    # ------------------------------------------------------------------ receiving side

    async def receive(self, fields: dict[str, str]) -> None:
        """An envelope from the bus (or from a dead node's stream): deliver it to the sessions it
        names; what finds none of them goes on as for a resource that is gone (RFC 6121 §8.5.3.2)."""
        router = self.router
        stanza = etree.fromstring(fields["x"].encode(), _PARSER)
        kind = fields["k"]
        to_s = fields.get("t")
        r = Routed(stanza, kind, JID.parse(fields["f"]), JID.parse(to_s) if to_s else None, None)
        hops = int(fields.get("h") or 0) + 1
        targets = [JID.parse(t) for t in fields.get("r", "").split()]
        sessions = [s for s in (router.sessions.get(t) for t in targets) if s is not None]
        for i, s in enumerate(sessions):
            await router.deliver(s, stanza if i == len(sessions) - 1 else _copy(stanza), kind)
        if sessions or not targets:
            return
        typ = stanza.get("type")
        if kind == "message" and typ in (None, "normal", "chat"):
            r.to = targets[0].bare
            await router.deliver_message_to_bare(r, hops)
        elif kind == "iq" and typ in ("get", "set"):
            router.bounce(r, core_error(Condition.SERVICE_UNAVAILABLE, "recipient_unavailable"))
        # other messages, presence and iq answers to a session that is gone: dropped, as locally

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _copy(el: etree._Element) -> etree._Element:
    import copy

    return copy.deepcopy(el)

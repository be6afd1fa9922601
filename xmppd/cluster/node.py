"""Joining the cluster from a running ``Server``: the node's name, what it publishes, the loop,
the session registry and the bus, and the cleanup after a dead node."""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..core import hooks as H
from ..core.hooks import Flow, NodeEvent, Routed
from ..jid import JID
from .bus import Bus
from .connection import unreachable_errors
from .invalidation import ClusterInvalidations
from .keys import Keys
from .leases import Leases, rendezvous
from .membership import Membership
from .remote import Fallback, RemoteSessions
from .sessions import ClusterSessions

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ..app import Server


def default_node_name(port: int | None) -> str:
    """``<host name>:<port>``: unique per machine and listener, stable across restarts."""
    host = socket.gethostname()
    return f"{host}:{port}" if port else host


class ClusterPort:
    """What a feature that owns things by lease (rooms, customer-service queues) gets of the
    cluster, through its ``join_cluster(port)`` method: the leases, the live nodes, and the bus
    to the owner node of what it serves (docs/cluster.md §5)."""

    def __init__(self, node: "ClusterNode") -> None:
        self._node = node
        self.name = node.name
        self.leases = node.leases
        self.heartbeat = node.membership.heartbeat

    def live_nodes(self) -> list[str]:
        """This node and the peers the membership loop saw alive at its last look."""
        return [self.name, *self._node.membership.peers]

    def is_live(self, node: str) -> bool:
        return node == self.name or node in self._node.membership.peers

    async def alive(self, node: str) -> bool:
        """Whether ``node`` is live: a peer seen at the last look, or its registry entry exists
        (a node that joined since)."""
        if self.is_live(node):
            return True
        return bool(await self._node.membership.redis.exists(self._node.keys.node(node)))

    def preferred(self, name: str) -> str:
        """The live node that should own ``name`` (rendezvous hashing): things spread over nodes."""
        return rendezvous(self.live_nodes(), name)

    def forward(self, node: str, tag: str, r: Routed, hops: int, fallback: Fallback | None) -> None:
        """Queue ``r`` for the handler ``tag`` on ``node`` (one ``XADD`` into its bus stream)."""
        self._node.remote.to_owner(node, tag, r, hops, fallback)

    def serve(self, tag: str, handler: Callable[[Routed, int, str], Awaitable[None]]) -> Callable[[], None]:
        """``handler(routed, hops, origin node)`` takes what other nodes ``forward`` under ``tag``."""
        owners = self._node.remote.owners
        owners[tag] = handler
        return lambda: owners.pop(tag, None)  # type: ignore[func-returns-value]


class ClusterNode:
    """This node in the cluster: membership, its sessions in the registry, its bus."""

    def __init__(self, server: "Server", membership: Membership) -> None:
        cfg = server.config.cluster
        self.membership = membership
        self.keys = Keys(cfg.prefix)
        self.name = membership.name
        self.sessions = ClusterSessions(membership.redis, self.keys, self.name, membership.incarnation, server.sessions)
        self.bus = Bus(membership.redis, cfg.redis_url, self.keys, self.name, cfg.bus_max, cfg.heartbeat)
        self.remote = RemoteSessions(server.router, self.sessions, self.bus)
        self.router = server.router
        # A lease lives as long as the registry entry (renewed right after it): by the time the
        # others notice this node is down, its leases are gone too.
        self.leases = Leases(membership.redis, self.keys, self.name, membership.ttl)
        membership.after_beat.append(self.leases.renew)
        self._detach: list[Callable[[], Awaitable[None]]] = []
        self.hooks = server.hooks
        self._invalidations = server.invalidations
        self.invalidation = ClusterInvalidations(
            membership.redis, cfg.redis_url, self.keys, self.name, server.invalidations, cfg.heartbeat,
        )
        self._removers = self.sessions.install(server.hooks)
        self._removers.append(server.hooks.add(H.NODE_DOWN, self._node_down))
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def peers(self) -> dict[str, str]:
        return self.membership.peers

    def start(self) -> None:
        self.router.remote = self.remote
        self.bus.start(self.remote.receive, self.sessions.republish)
        self._invalidations.transport = self.invalidation
        self.invalidation.start()

    async def attach(self, features: Any) -> None:
        """Give each feature that owns things by lease its ``ClusterPort``."""
        port = ClusterPort(self)
        for feature in features:
            join_cluster = getattr(feature, "join_cluster", None)
            if join_cluster is not None:
                self._detach.append(await join_cluster(port))

    async def stop(self) -> None:
        # First what features own by lease: stored, released, their occupants told (the bus and
        # Redis still work meanwhile).
        for detach in reversed(self._detach):
            try:
                await detach()
            except Exception:
                log.exception("a feature failed to leave the cluster cleanly")
        if self._detach:
            await self.remote.flush(self.membership.heartbeat)
        self._detach = []
        self.membership.after_beat.clear()
        self.router.remote = None
        self._invalidations.transport = None
        await self.invalidation.stop()
        for remove in self._removers:
            remove()
        await self.bus.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.remote.stop()
        await self.membership.stop()

    async def _node_down(self, ev: NodeEvent) -> Flow:
        task = asyncio.create_task(self._clean_after(ev), name=f"cluster cleanup of {ev.node}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Flow.CONTINUE

    async def _clean_after(self, ev: NodeEvent) -> None:
        """One survivor (the holder of ``P:lease:cleanup:<node>``) removes the dead node's
        sessions from the registry, then hands what is left in its stream to offline storage
        (messages) or answers it with errors (iq)."""
        redis = self.membership.redis
        try:
            lease_ms = int(self.membership.node_timeout * 1000)
            if not await redis.set(self.keys.cleanup_lease(ev.node), self.name, nx=True, px=lease_ms):
                return
            available: list[JID] = []
            removed = await self.sessions.clean(ev.node, ev.incarnation, available=available)

            async def still_dead() -> bool:
                return not await redis.exists(self.keys.node(ev.node))

            drained = await self.bus.drain(ev.node, self.remote.receive, still_dead)
            log.info("cleaned up after node %s: %d sessions removed from the registry, %d stanzas of its bus handled here", ev.node, removed, drained)
            if available:  # their contacts, on every node, learn they are gone (presence)
                await self.hooks.run(H.SESSIONS_LOST, H.SessionsLost(ev.node, tuple(available)))
                log.info("told the contacts of node %s's %d available sessions that they are unavailable", ev.node, len(available))
        except unreachable_errors() as exc:
            log.warning("could not clean up after node %s (Redis: %s)", ev.node, exc or type(exc).__name__)
        except Exception:
            log.exception("cleaning up after node %s failed", ev.node)


async def join(server: "Server") -> ClusterNode:
    """Register this node (its listeners are bound) and keep it registered until ``stop``."""
    cfg = server.config.cluster
    ports = server.ports
    name = cfg.node or default_node_name(ports.get("c2s") or ports.get("c2s_tls") or ports.get("http"))

    def describe() -> dict[str, Any]:
        rooms = getattr(getattr(server.features.get("muc"), "service", None), "rooms", None)
        return {
            "domain": server.domain,
            "ports": ",".join(f"{k}={v}" for k, v in sorted(ports.items())),
            "sessions": len(server.sessions),
            "rooms": len(rooms) if isinstance(rooms, dict) else 0,
        }

    membership = Membership(
        url=cfg.redis_url, name=name, prefix=cfg.prefix, heartbeat=cfg.heartbeat,
        node_timeout=cfg.node_timeout, hooks=server.hooks, describe_node=describe,
    )
    await membership.start()
    node = ClusterNode(server, membership)
    node.start()
    await node.attach(list(server.features.values()))
    return node

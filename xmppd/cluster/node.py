"""Joining the cluster from a running ``Server``: the node's name, what it publishes, the loop,
the session registry and the bus, and the cleanup after a dead node."""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..config import parse_hostport
from ..core import hooks as H
from ..core.hooks import Flow, NodeEvent, Routed
from ..jid import JID
from .bus import Bus
from .connection import unreachable_errors
from .invalidation import ClusterInvalidations
from .kept import KeptState
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
        self.redis = node.membership.redis
        self.keys = node.keys

    def every_beat(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Run ``fn`` after every heartbeat of this node while Redis answers; returns its remover."""
        async def after(reachable: bool) -> None:
            if reachable:
                await fn()

        beats = self._node.membership.after_beat
        beats.append(after)
        return lambda: beats.remove(after) if after in beats else None

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

    async def present(self, node: str) -> bool:
        """Whether ``node``'s registry entry exists now (not the last look's view: a node that
        left gracefully a moment ago is still among the peers until the next heartbeat)."""
        if node == self.name:
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
        self.remote = RemoteSessions(server.router, self.sessions, self.bus, cfg.handover_timeout)
        self.kept = KeptState(membership.redis, self.keys, self.name, membership.incarnation)
        self.handover_timeout = cfg.handover_timeout
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
        self.router.kept = self.kept
        self.kept.start()
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
        self.router.kept = None
        await self.kept.stop()
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

    async def other_host(self) -> str | None:
        """The address of another live node for this node's clients (see-other-host when it
        leaves): the one with the fewest sessions; None when no other node is up."""
        best: tuple[int, str] | None = None
        try:
            async with self.membership.redis.pipeline(transaction=False) as pipe:
                for peer in self.peers:
                    pipe.hmget(self.keys.node(peer), "address", "sessions")
                rows = await pipe.execute()
        except unreachable_errors() as exc:
            log.warning("cannot read the other nodes' addresses (Redis: %s)", exc or type(exc).__name__)
            return None
        for address, sessions in rows:
            if address:
                load = int(sessions) if sessions and sessions.isdigit() else 0
                if best is None or load < best[0]:
                    best = (load, address)
        return best[1] if best else None

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
            kept = await self.kept.take(ev.node, ev.incarnation) if ev.incarnation else {}
            if available or kept:  # their contacts, on every node, learn they are gone (presence)
                await self.hooks.run(H.SESSIONS_LOST, H.SessionsLost(ev.node, tuple(available), kept))
                log.info("told the contacts of node %s's %d available sessions that they are unavailable", ev.node, len(available))
        except unreachable_errors() as exc:
            log.warning("could not clean up after node %s (Redis: %s)", ev.node, exc or type(exc).__name__)
        except Exception:
            log.exception("cleaning up after node %s failed", ev.node)


def client_address(server: "Server") -> str:
    """``host:port`` clients use to reach this node (``cluster.address``; by default the c2s
    listen address when it names one, else the host name, with the c2s port); "" without c2s."""
    cfg = server.config
    port = server.ports.get("c2s") or server.ports.get("c2s_tls")
    given = cfg.cluster.address
    if given:
        if given.startswith("[") and "]:" in given or not given.startswith("[") and given.count(":") == 1:
            return given  # with its port
        host = given.strip("[]")
    else:
        listen = parse_hostport(cfg.listen.c2s or cfg.listen.c2s_tls, "listen.c2s")
        host = listen[0] if listen and listen[0] not in ("0.0.0.0", "::", "") else socket.gethostname()
    if not port:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def join(server: "Server") -> ClusterNode:
    """Register this node (its listeners are bound) and keep it registered until ``stop``."""
    cfg = server.config.cluster
    ports = server.ports
    name = cfg.node or default_node_name(ports.get("c2s") or ports.get("c2s_tls") or ports.get("http"))

    address = client_address(server)

    def describe() -> dict[str, Any]:
        rooms = getattr(getattr(server.features.get("muc"), "service", None), "rooms", None)
        return {
            "domain": server.domain,
            "address": address,
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

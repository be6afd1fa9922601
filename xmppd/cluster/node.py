"""Joining the cluster from a running ``Server``: the node's name, what it publishes, the loop,
the session registry and the bus, and the cleanup after a dead node."""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any

from ..core import hooks as H
from ..core.hooks import Flow, NodeEvent
from .bus import Bus
from .connection import unreachable_errors
from .invalidation import ClusterInvalidations
from .keys import Keys
from .membership import Membership
from .remote import RemoteSessions
from .sessions import ClusterSessions

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ..app import Server


def default_node_name(port: int | None) -> str:
    """``<host name>:<port>``: unique per machine and listener, stable across restarts."""
    host = socket.gethostname()
    return f"{host}:{port}" if port else host


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

    async def stop(self) -> None:
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
            removed = await self.sessions.clean(ev.node, ev.incarnation)

            async def still_dead() -> bool:
                return not await redis.exists(self.keys.node(ev.node))

            drained = await self.bus.drain(ev.node, self.remote.receive, still_dead)
            log.info("cleaned up after node %s: %d sessions removed from the registry, %d stanzas of its bus handled here", ev.node, removed, drained)
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
    return node

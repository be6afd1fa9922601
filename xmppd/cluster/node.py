"""Joining the cluster from a running ``Server``: the node's name, what it publishes, the loop."""
from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from .membership import Membership

if TYPE_CHECKING:
    from ..app import Server


def default_node_name(port: int | None) -> str:
    """``<host name>:<port>``: unique per machine and listener, stable across restarts."""
    host = socket.gethostname()
    return f"{host}:{port}" if port else host


async def join(server: "Server") -> Membership:
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
    return membership

"""``xmppctl cluster status``: the nodes in the registry, their sessions and rooms, heartbeats."""
from __future__ import annotations

import argparse
import time
from typing import Any

from .connection import connect, describe, unreachable_errors
from .keys import Keys
from .registry import NodeInfo, NodeRegistry


def add_cli(sub: Any) -> None:
    cluster = sub.add_parser("cluster", help="cluster: status").add_subparsers(dest="verb", metavar="VERB", required=True)
    cluster.add_parser("status", help="the nodes of the cluster, their sessions, rooms and last heartbeat").set_defaults(func=status)


async def status(ctl: Any, args: argparse.Namespace) -> int:
    from ..cli import CtlError

    cfg = ctl.config.cluster
    if not cfg.redis_url:
        print("one node (cluster.redis_url is empty)")
        return 0
    redis = connect(cfg.redis_url, timeout=5)
    try:
        nodes = await NodeRegistry(redis, Keys(cfg.prefix)).nodes()
    except unreachable_errors() as exc:
        raise CtlError(f"cluster.redis_url {describe(cfg.redis_url)} cannot be reached: {exc}") from None
    finally:
        await redis.aclose()
    print(render(nodes, describe(cfg.redis_url), cfg.prefix, cfg.node_timeout))
    return 0


async def check_reachable(url: str) -> None:
    """For ``xmppctl check``: Redis answers a PING, else one line naming the key."""
    from ..cli import CtlError

    redis = connect(url, timeout=5)
    try:
        await redis.ping()
    except Exception as exc:
        raise CtlError(f"cluster.redis_url {describe(url)} cannot be reached: {exc}") from None
    finally:
        await redis.aclose()


def render(nodes: list[NodeInfo], where: str, prefix: str, node_timeout: float) -> str:
    live = [n for n in nodes if n.alive]
    lines = [f"cluster {prefix!r} on {where}: {len(live)} node{'s' if len(live) != 1 else ''} up"]
    rows = [("NODE", "STATE", "PID", "HOST", "PORTS", "SESSIONS", "ROOMS", "HEARTBEAT", "UP")]
    for n in nodes:
        if not n.alive:
            rows.append((n.name, "down", "-", "-", "-", "-", "-", f"> {node_timeout:g} s ago", "-"))
            continue
        age = n.age()
        up = max(0.0, time.time() - n.int_field("started") / 1000)
        rows.append((
            n.name, "up", n.fields.get("pid", "?"), n.fields.get("host", "?"), n.fields.get("ports", ""),
            str(n.int_field("sessions")), str(n.int_field("rooms")),
            f"{age:.1f} s ago" if age is not None else "?", _duration(up),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if not nodes:
        lines.append("(no node has registered: is any xmppd running with this cluster.redis_url and cluster.prefix?)")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h"

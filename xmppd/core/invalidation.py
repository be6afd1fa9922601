"""Caches that another node can make stale, and how they hear about it (docs/cluster.md §2).

Every in-process cache of something stored in the shared database, which another node may
write, registers here under a name (``ctx.invalidation(name, drop, flush)``) and gets an
:class:`Invalidation`:

* its own writes call ``publish(key)`` after they committed: the other nodes run the cache's
  ``drop(key)`` (forget, or reload, what is kept under ``key``); this node's cache updated itself;
* ``flush()`` forgets (or reloads) everything: it runs whenever invalidations may have been
  missed (the connection to the other nodes was lost), and when the transport starts.

With one node (``cluster.redis_url`` empty) nothing is attached: ``publish`` does nothing and
nothing of ``xmppd.cluster`` is imported. A cluster node attaches a transport
(``xmppd/cluster/invalidation.py``: Redis pub/sub on ``P:inval``) that calls :meth:`received`
and :meth:`flush_all`.
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

Drop = Callable[[str], "Awaitable[None] | None"]
Flush = Callable[[], "Awaitable[None] | None"]

#: The name a transport uses for "flush every cache" (a publisher that lost invalidations).
ALL = "*"


class Transport(Protocol):
    def publish(self, name: str, key: str) -> None:
        """Tell the other nodes, soon and in order (never waits)."""


class Invalidation:
    """One cache's channel: ``publish(key)`` after a write of what ``key`` names."""

    __slots__ = ("name", "_drop", "_flush", "_owner")

    def __init__(self, owner: "Invalidations", name: str, drop: Drop, flush: Flush | None) -> None:
        self._owner = owner
        self.name = name
        self._drop = drop
        self._flush = flush

    def publish(self, key: str) -> None:
        transport = self._owner.transport
        if transport is not None:
            transport.publish(self.name, key)

    def close(self) -> None:
        if self._owner._caches.get(self.name) is self:
            del self._owner._caches[self.name]


class Invalidations:
    """The registry of invalidatable caches of one server."""

    def __init__(self) -> None:
        self._caches: dict[str, Invalidation] = {}
        self.transport: Transport | None = None
        self.received_count = 0  # for tests and diagnostics
        self.flushes = 0

    def register(self, name: str, drop: Drop, flush: Flush | None = None) -> Invalidation:
        if not name or name == ALL or "\n" in name:
            raise ValueError(f"not a cache name: {name!r}")
        if name in self._caches:
            raise ValueError(f"a cache named {name!r} is registered already")
        inv = self._caches[name] = Invalidation(self, name, drop, flush)
        return inv

    def names(self) -> list[str]:
        return sorted(self._caches)

    async def received(self, name: str, key: str) -> None:
        """Another node wrote what ``key`` names in cache ``name``."""
        if name == ALL:
            await self.flush_all()
            return
        inv = self._caches.get(name)
        if inv is None:
            return  # a feature not loaded here
        self.received_count += 1
        await _call(inv._drop, key, what=f"invalidating {name} {key!r}")

    async def flush_all(self) -> None:
        """Invalidations may have been missed: every cache forgets (or reloads) everything."""
        self.flushes += 1
        for inv in list(self._caches.values()):
            if inv._flush is not None:
                await _call(inv._flush, what=f"flushing the {inv.name} cache")


async def _call(fn: Callable[..., "Awaitable[None] | None"], *args: str, what: str) -> None:
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("%s failed", what)

"""Leases: one owner node at a time for a named thing, with fencing tokens (docs/cluster.md §5).

A room is the first user (kind ``"room"``); a customer-service queue uses the same class with its
own kind. ``P:lease:<kind>:<name>`` holds ``<node>|<token>`` for ``ttl`` (``cluster.node_timeout``);
``P:fence:<kind>:<name>`` is the counter whose ``INCR`` at every acquisition gives the token. Both
are written by one script, so that a failed acquisition spends no token.

The holder renews every lease it holds after each heartbeat of the membership loop (one pipeline
of compare-and-pexpire scripts). A renewal that finds the lease gone or taken drops it at once
(the ``on_lost`` handler of its kind runs), and so does a holder that could not renew for ``ttl``
seconds (Redis unreachable): by then the lease may have expired in Redis and another node may
hold it. A lease alone does not protect against a paused process; the token does, when every
durable write of the owner is conditioned on it (``WHERE fence <= :token``).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .connection import unreachable_errors
from .keys import Keys

log = logging.getLogger(__name__)

# KEYS: lease, fence counter. ARGV: node, ttl ms, floor (the highest token the database has seen:
# a Redis that restarted empty must not hand out tokens a stale owner already used).
# Returns the lease's value after the call: ours if acquired, the holder's otherwise.
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
local token = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if token <= floor then
  token = floor + 1
  redis.call('SET', KEYS[2], token)
end
local v = ARGV[1] .. '|' .. token
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return v
"""

# KEYS: lease. ARGV: our value, ttl ms. 1: renewed; 0: gone or another node's.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lease. ARGV: our value. Compare-and-delete.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

LostHandler = Callable[[str, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Lease:
    node: str
    token: int

    @property
    def value(self) -> str:
        return f"{self.node}|{self.token}"

    @classmethod
    def parse(cls, value: str | None) -> "Lease | None":
        if not value:
            return None
        node, _, token = value.rpartition("|")
        try:
            return cls(node, int(token))
        except ValueError:
            return None


class Leases:
    """The leases this node holds, and the scripts that take, renew and give them back."""

    def __init__(self, redis: Any, keys: Keys, node: str, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis
        self.keys = keys
        self.node = node
        self.ttl = ttl
        self.clock = clock
        self._ttl_ms = int(ttl * 1000)
        self._held: dict[tuple[str, str], tuple[int, float]] = {}  # (kind, name) -> token, valid until (monotonic)
        self._lost: dict[str, LostHandler] = {}
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def on_lost(self, kind: str, handler: LostHandler) -> Callable[[], None]:
        """``handler(name, token)`` runs when a lease of ``kind`` this node held is lost."""
        self._lost[kind] = handler
        return lambda: self._lost.pop(kind, None)  # type: ignore[func-returns-value]

    def token(self, kind: str, name: str) -> int | None:
        """Our token if we hold the lease and renewed it less than ``ttl`` ago, else None."""
        held = self._held.get((kind, name))
        if held is None or held[1] <= self.clock():
            return None
        return held[0]

    def held(self, kind: str) -> list[str]:
        return [n for k, n in self._held if k == kind]

    async def owner(self, kind: str, name: str) -> Lease | None:
        """Who holds the lease now (one GET), or None."""
        return Lease.parse(await self.redis.get(self.keys.lease(kind, name)))

    async def acquire(self, kind: str, name: str, floor: int = 0) -> Lease | None:
        """Take the lease if nobody holds it; the holder's lease either way (ours: ``node`` is
        this node's name). ``floor``: the highest token already written with (the database's)."""
        started = self.clock()
        value = await self._acquire(keys=[self.keys.lease(kind, name), self.keys.fence(kind, name)],
                                    args=[self.node, self._ttl_ms, int(floor)])
        lease = Lease.parse(value)
        if lease is not None and lease.node == self.node:
            self._held[(kind, name)] = (lease.token, started + self.ttl)
        return lease

    async def adopt(self, kind: str, name: str, lease: Lease) -> bool:
        """Hold a lease Redis says is this node's although this process did not take it (an
        earlier life of the node under the same name): renewed now if it is still that value."""
        if lease.node != self.node:
            return False
        started = self.clock()
        if await self._renew(keys=[self.keys.lease(kind, name)], args=[lease.value, self._ttl_ms]) != 1:
            return False
        self._held[(kind, name)] = (lease.token, started + self.ttl)
        return True

    async def break_dead(self, kind: str, name: str, lease: Lease) -> bool:
        """Delete ``lease`` if it still has that value: its node is known dead (its registry
        entry is gone), so nobody need wait for the lease to expire. Safe because the dead
        holder's token is older than the next one: its writes, if it was only paused, are
        refused by the fence."""
        return bool(await self._release(keys=[self.keys.lease(kind, name)], args=[lease.value]))

    async def release(self, kind: str, name: str) -> None:
        """Give a lease back now (a graceful stop, a room that is gone); errors are logged."""
        held = self._held.pop((kind, name), None)
        if held is None:
            return
        try:
            await self._release(keys=[self.keys.lease(kind, name)], args=[Lease(self.node, held[0]).value])
        except unreachable_errors() as exc:
            log.warning("could not release the lease of %s %s (Redis: %s): it expires within %g s", kind, name, exc or type(exc).__name__, self.ttl)

    def forget(self, kind: str, name: str) -> None:
        """Stop holding (and renewing) a lease without telling Redis: it expires on its own."""
        self._held.pop((kind, name), None)

    async def renew(self, reachable: bool = True) -> None:
        """After each heartbeat: renew every lease held, in one pipeline; drop those lost."""
        if not self._held:
            return
        started = self.clock()
        items = list(self._held.items())
        lost: list[tuple[str, str, int]] = []
        if reachable:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for (kind, name), (token, _) in items:
                        await self._renew(keys=[self.keys.lease(kind, name)], args=[Lease(self.node, token).value, self._ttl_ms], client=pipe)
                    results = await pipe.execute(raise_on_error=False)
            except unreachable_errors():
                results = [None] * len(items)
            for ((kind, name), (token, _)), result in zip(items, results, strict=True):
                if result == 1:
                    if (kind, name) in self._held and self._held[(kind, name)][0] == token:
                        self._held[(kind, name)] = (token, started + self.ttl)
                elif result == 0:
                    lost.append((kind, name, token))
        now = self.clock()
        for (kind, name), (token, until) in list(self._held.items()):
            if until <= now and (kind, name, token) not in lost:
                lost.append((kind, name, token))
        for kind, name, token in lost:
            if self._held.get((kind, name), (None,))[0] != token:
                continue
            del self._held[(kind, name)]
            log.warning("lost the lease of %s %s (token %d): dropping it here", kind, name, token)
            handler = self._lost.get(kind)
            if handler is not None:
                try:
                    await handler(name, token)
                except Exception:
                    log.exception("dropping %s %s after its lease was lost failed", kind, name)


def rendezvous(nodes: list[str], name: str) -> str:
    """The preferred owner of ``name`` among ``nodes`` (highest random weight): every node
    computes the same answer from the same list, and a node's loss moves only its own names."""
    import hashlib

    def weight(node: str) -> bytes:
        return hashlib.blake2b(f"{node}\x00{name}".encode(), digest_size=8).digest()

    return max(nodes, key=weight)

"""The node registry in Redis: one expiring HASH per live node, and a SET naming them.

Every write is a Lua script, so that it is atomic and stamped with Redis's own clock (``TIME``):
heartbeat ages then mean the same on every machine, whatever their clocks say. A node's entry
carries its incarnation (a random id per process start), so that a second process given the same
``cluster.node`` is refused instead of silently sharing the name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .keys import Keys

# KEYS: node hash, nodes set. ARGV: name, incarnation, ttl ms, then field/value pairs.
# Returns {status, incarnation}: "created" (no entry: first registration, or Redis lost it),
# "renewed", or "taken" (another incarnation holds the name; nothing written).
_REGISTER = """
local cur = redis.call('HGET', KEYS[1], 'incarnation')
if cur and cur ~= ARGV[2] then
  return {'taken', cur}
end
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
if not cur then
  redis.call('HSET', KEYS[1], 'registered', now)
end
redis.call('HSET', KEYS[1], 'heartbeat', now, 'incarnation', ARGV[2], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
if cur then return {'renewed', ARGV[2]} end
return {'created', ARGV[2]}
"""

# KEYS: node hash, nodes set, left marker. ARGV: name, incarnation, marker ttl ms.
_LEAVE = """
if redis.call('HGET', KEYS[1], 'incarnation') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# KEYS: node hash, nodes set. ARGV: name. Drops a name from the index once its entry is gone.
_FORGET = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.call('SREM', KEYS[2], ARGV[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as the registry describes it; ``fields`` is empty when its entry has expired."""

    name: str
    fields: dict[str, str]
    now_ms: int  # Redis's clock when read

    @property
    def alive(self) -> bool:
        return bool(self.fields)

    @property
    def incarnation(self) -> str | None:
        return self.fields.get("incarnation")

    def age(self) -> float | None:
        """Seconds since the last heartbeat."""
        hb = self.fields.get("heartbeat")
        return None if hb is None else max(0.0, (self.now_ms - int(hb)) / 1000)

    def int_field(self, name: str) -> int:
        try:
            return int(self.fields.get(name, 0))
        except ValueError:
            return 0


class NodeRegistry:
    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._register = redis.register_script(_REGISTER)
        self._leave = redis.register_script(_LEAVE)
        self._forget = redis.register_script(_FORGET)

    async def register(self, name: str, incarnation: str, ttl: float, fields: dict[str, Any]) -> tuple[str, str]:
        """Create or renew ``name``'s entry for ``ttl`` seconds; (status, holder's incarnation)."""
        args: list[Any] = [name, incarnation, int(ttl * 1000)]
        for k, v in fields.items():
            args += [k, str(v)]
        status, holder = await self._register(keys=[self.keys.node(name), self.keys.nodes], args=args)
        return status, holder

    async def leave(self, name: str, incarnation: str, marker_ttl: float) -> bool:
        """Remove our entry now (graceful stop) and leave a marker saying so."""
        keys = [self.keys.node(name), self.keys.nodes, self.keys.left(name)]
        return bool(await self._leave(keys=keys, args=[name, incarnation, int(marker_ttl * 1000)]))

    async def forget(self, name: str) -> None:
        await self._forget(keys=[self.keys.node(name), self.keys.nodes], args=[name])

    async def left_gracefully(self, name: str, incarnation: str | None) -> bool:
        marker = await self.redis.get(self.keys.left(name))
        return marker is not None and (incarnation is None or marker == incarnation)

    async def nodes(self) -> list[NodeInfo]:
        """Every registered node, expired entries included (``alive`` False), sorted by name."""
        names = sorted(await self.redis.smembers(self.keys.nodes))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for name in names:
                pipe.hgetall(self.keys.node(name))
            results = await pipe.execute()
        sec, usec = results[0]
        now_ms = int(sec) * 1000 + int(usec) // 1000
        return [NodeInfo(name, dict(fields or {}), now_ms) for name, fields in zip(names, results[1:], strict=True)]

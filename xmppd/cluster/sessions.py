"""The cluster session registry (docs/cluster.md §2): where every bound session lives.

``P:sess:<bare>`` maps each resource of an account to ``node|incarnation|priority|available``
and ``P:nsess:<node>`` names the accounts with a session on that node, so that a dead node's
entries can be removed by a survivor (ejabberd's Redis session backend does the same). This node
writes its own sessions' entries from the session hooks (bound, closed, presence changed); every
write compares the owner, so a late unbind here never removes the entry of the same resource
bound since on another node. The local ``SessionRegistry`` stays the authority for this node's
sessions: after a Redis outage they are all published again (``republish``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core import hooks as H
from ..core.hooks import Flow, Routed, SessionEvent
from ..jid import JID
from .connection import unreachable_errors
from .keys import Keys

if TYPE_CHECKING:
    from ..core.session import Session
    from ..core.sessions import SessionRegistry

log = logging.getLogger(__name__)

# KEYS: sess hash, nsess set. ARGV: resource, "node|incarnation|", new value, take ("1": a new
# bind, which replaces whatever held the resource), bare JID. A presence change ("0") writes the
# entry unless another node's session holds that resource now (it replaced ours).
_PUT = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, #ARGV[2]) ~= ARGV[2] and ARGV[4] == '0' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[5])
return 1
"""

# KEYS: sess hash, nsess set. ARGV: resource, "node|incarnation|", bare, "node|".
# Remove the entry if it is ours; drop the account from the node's set when it has no other.
_DROP = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, #ARGV[2]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  if string.sub(v, 1, #ARGV[4]) == ARGV[4] then return 1 end
end
redis.call('SREM', KEYS[2], ARGV[3])
return 1
"""

# KEYS: nsess set, then sess hashes. ARGV: node, incarnation, mode ("is": remove that
# incarnation's entries; "not": every other incarnation's), then the bare JIDs of the hashes.
# Returns the number of entries removed, then the "bare/resource" of those that were available.
_CLEAN = """
local prefix = ARGV[1] .. '|'
local removed = 0
local gone = {}
for i = 2, #KEYS do
  local h = redis.call('HGETALL', KEYS[i])
  local left = false
  for j = 1, #h, 2 do
    local v = h[j + 1]
    if string.sub(v, 1, #prefix) == prefix then
      local inc = string.match(v, '^[^|]*|([^|]*)|')
      if (ARGV[3] == 'is') == (inc == ARGV[2]) then
        redis.call('HDEL', KEYS[i], h[j])
        removed = removed + 1
        if string.sub(v, -2) == '|1' then gone[#gone + 1] = ARGV[i + 2] .. '/' .. h[j] end
      else
        left = true
      end
    end
  end
  if not left then redis.call('SREM', KEYS[1], ARGV[i + 2]) end
end
table.insert(gone, 1, removed)
return gone
"""

BATCH = 200


def _entries(bare: JID, mapping: dict[str, str]) -> list["Entry"]:
    entries = []
    for resource, value in mapping.items():
        parts = value.split("|")
        if len(parts) != 4:
            continue
        try:
            priority = int(parts[2])
        except ValueError:
            continue
        entries.append(Entry(bare.with_resource(resource), parts[0], parts[1], priority, parts[3] == "1"))
    return entries


@dataclass(frozen=True, slots=True)
class Entry:
    """One session as the cluster registry describes it."""

    full: JID
    node: str
    incarnation: str
    priority: int
    available: bool


class ClusterSessions:
    def __init__(self, redis: Any, keys: Keys, node: str, incarnation: str, local: "SessionRegistry") -> None:
        self.redis = redis
        self.keys = keys
        self.node = node
        self.incarnation = incarnation
        self.local = local
        self.owner = f"{node}|{incarnation}|"
        self.dirty = False  # a write failed: publish everything again once Redis answers
        self._put = redis.register_script(_PUT)
        self._drop = redis.register_script(_DROP)
        self._clean = redis.register_script(_CLEAN)

    def install(self, hooks: H.HookChains) -> list[Any]:
        return [
            hooks.add(H.SESSION_BOUND, self._bound, priority=10_000),
            hooks.add(H.SESSION_CLOSED, self._closed, priority=10_000),
            # First in the chain: the router has just set the session's availability and priority.
            hooks.add(H.PRESENCE_BROADCAST, self._presence, priority=10_000),
        ]

    # ------------------------------------------------------------------ this node's writes

    def _value(self, session: "Session") -> str:
        return f"{self.owner}{session.priority}|{int(bool(session.available))}"

    async def publish(self, session: "Session", *, take: bool = False) -> None:
        jid = session.jid
        if jid is None:
            return
        bare = str(jid.bare)
        try:
            await self._put(
                keys=[self.keys.sess(bare), self.keys.nsess(self.node)],
                args=[jid.resource or "", self.owner, self._value(session), "1" if take else "0", bare],
            )
        except unreachable_errors() as exc:
            self._failed(exc)

    async def _bound(self, ev: SessionEvent) -> Flow:
        await self.publish(ev.session, take=True)  # the newest bind of a full JID wins
        return Flow.CONTINUE

    async def _presence(self, r: Routed) -> Flow:
        session = r.origin
        if session is not None and session.jid is not None and self.local.get(session.jid) is session:
            await self.publish(session)
        return Flow.CONTINUE

    async def _closed(self, ev: SessionEvent) -> Flow:
        jid = ev.session.jid
        if jid is None or self.local.get(jid) is not None:
            return Flow.CONTINUE  # still bound (stream management keeps it), or bound anew here
        bare = str(jid.bare)
        try:
            await self._drop(
                keys=[self.keys.sess(bare), self.keys.nsess(self.node)],
                args=[jid.resource or "", self.owner, bare, f"{self.node}|"],
            )
        except unreachable_errors() as exc:
            self._failed(exc)
        return Flow.CONTINUE

    async def drop_entry(self, bare: str, resource: str, node: str, incarnation: str) -> None:
        """Remove ``bare/resource``'s entry if that incarnation of ``node`` holds it."""
        await self._drop(keys=[self.keys.sess(bare), self.keys.nsess(node)], args=[resource, f"{node}|{incarnation}|", bare, f"{node}|"])

    async def holder(self, full: JID) -> tuple[str, str] | None:
        """``(node, incarnation)`` of the session bound to ``full`` anywhere, or None."""
        value = await self.redis.hget(self.keys.sess(str(full.bare)), full.resource or "")
        parts = value.split("|") if value else []
        return (parts[0], parts[1]) if len(parts) == 4 else None

    def _failed(self, exc: BaseException) -> None:
        if not self.dirty:
            log.warning("session registry not updated (Redis: %s): republished when Redis answers", exc or type(exc).__name__)
        self.dirty = True

    async def republish(self) -> None:
        """Write every local session again (after an outage, or Redis restarted empty), and
        remove what this node's name left behind in an earlier life or since."""
        self.dirty = False
        await self.clean(self.node, self.incarnation, mine=True)
        sessions = list(self.local)
        for i in range(0, len(sessions), BATCH):
            async with self.redis.pipeline(transaction=False) as pipe:
                for s in sessions[i:i + BATCH]:
                    if s.jid is not None:
                        bare = str(s.jid.bare)
                        pipe.hset(self.keys.sess(bare), s.jid.resource or "", self._value(s))
                        pipe.sadd(self.keys.nsess(self.node), bare)
                await pipe.execute()
        if sessions:
            log.info("published %d sessions in the cluster registry", len(sessions))

    # ------------------------------------------------------------------ reads

    async def of(self, bare: JID) -> list[Entry]:
        """The sessions of ``bare`` on every node (this one's included)."""
        return _entries(bare, await self.redis.hgetall(self.keys.sess(str(bare))))

    async def of_many(self, bares: list[JID]) -> dict[JID, list[Entry]]:
        """``of`` for several accounts, in one pipeline."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for b in bares:
                pipe.hgetall(self.keys.sess(str(b.bare)))
            found = await pipe.execute()
        return {b.bare: _entries(b.bare, h) for b, h in zip(bares, found, strict=True)}

    async def accounts(self) -> set[str]:
        """The bare JIDs with a session on any registered node (one ``SUNION``)."""
        nodes = await self.redis.smembers(self.keys.nodes)
        if not nodes:
            return set()
        return set(await self.redis.sunion([self.keys.nsess(n) for n in nodes]))

    # ------------------------------------------------------------------ cleanup

    async def clean(self, node: str, incarnation: str, *, mine: bool = False, available: list[JID] | None = None) -> int:
        """Remove ``node``'s entries: that incarnation's (a dead node), or every other one's
        (``mine``: this node's earlier lives). Batched through ``P:nsess:<node>``. The full JIDs
        of the removed entries that were available are added to ``available``."""
        nsess = self.keys.nsess(node)
        removed = 0
        cursor = 0
        while True:
            cursor, bares = await self.redis.sscan(nsess, cursor, count=BATCH)
            if bares:
                out = await self._clean(
                    keys=[nsess, *(self.keys.sess(b) for b in bares)],
                    args=[node, incarnation, "not" if mine else "is", *bares],
                )
                removed += int(out[0])
                if available is not None:
                    available.extend(JID.parse(f) for f in out[1:])
            if cursor == 0:
                break
        return removed

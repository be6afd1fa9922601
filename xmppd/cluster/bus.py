"""The bus between nodes (docs/cluster.md §3, §4): one Redis stream per node, ``P:bus:<node>``.

A node appends (``XADD … MAXLEN ~ cluster.bus_max``) an envelope to the destination node's
stream; each node reads its own stream with one task (``XREAD BLOCK``), hands every entry to a
handler in order, then deletes what it handled. One sender's stanzas to one node are appended
in the order its session task routes them and read in that order by one task: per-sender order
holds across nodes. A stream keeps what nobody read yet (pub/sub would not): a reader that lost
its connection resumes, and a dead node's stream is drained by a survivor (``drain``).

Envelope fields: ``k`` kind, ``f`` from, ``t`` the routed ``to``, ``r`` the full JIDs on the
destination node it is for (space-separated), ``h`` hops (a stanza re-sent by a node that no
longer held its recipient), ``o`` the origin node, ``x`` the stanza serialised once. A fan-out
envelope (``Router.fan_out``/``deliver_to``) has ``m``: ``fan`` (``x`` has no ``to``: each
recipient gets its own, ``r`` full JIDs bound there, ``b`` bare JIDs whose available resources
there get it) or ``to`` (``x`` keeps its ``to``; ``r`` the full JIDs it is for).

On the wire an envelope is one stream field, ``env``: its field/value strings joined with NUL
(which neither a JID nor XML can hold; an envelope holding one is sent field by field), because
redis-py's command packing costs about 2.5 µs of CPU per argument -- 22 arguments per message
were a third of a cross-node message's cost on the sender's node (docs/cluster.md §9). Fields
beside ``env`` (added by a script) are merged into it on reading; an entry without ``env`` (an
older node's) is read as it is.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.tasks import stop_tasks
from .connection import connect, unreachable_errors
from .keys import Keys

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, str]], Awaitable[None]]
ENV = "env"
_SEP = "\x00"


def pack(fields: dict[str, str]) -> dict[str, str]:
    """The envelope as one stream field (see the module doc)."""
    flat = [x for kv in fields.items() for x in kv]
    joined = _SEP.join(flat)
    if joined.count(_SEP) != len(flat) - 1:
        return fields  # a NUL inside a value: field by field
    return {ENV: joined}


def unpack(fields: dict[str, str]) -> dict[str, str]:
    """A stream entry's envelope, whichever way it was written."""
    packed = fields.get(ENV)
    if packed is None:
        return fields
    parts = packed.split(_SEP)
    out = dict(zip(parts[::2], parts[1::2], strict=True))
    if len(fields) > 1:
        out.update((k, v) for k, v in fields.items() if k != ENV)
    return out
READ_COUNT = 100
DELETE_EVERY = 0.1  # seconds: handled entries are deleted in batches, at least this often

# KEYS: the recipient's sess hash. ARGV: resource, this node's name, the bus key prefix
# ("P:bus:"), maxlen, then the envelope's field/value pairs. One round trip for a full JID:
# where the session is and, when that is another node, the append to its stream. Returns the
# node it was appended for, or false (bound nowhere). The stream's key is computed from
# the found node: one Redis server (or Sentinel), never Redis Cluster (docs/cluster.md). This
# node's own name when the entry says "here" (bound here since the sender looked, or moving here).
_TO_FULL = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
local node = string.match(v, '^([^|]*)|')
if not node then return false end
if node == ARGV[2] then return node end
redis.call('XADD', ARGV[3] .. node, 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
return node
"""

# Lua shared by the fan-out scripts: ``group(key, res, jid, skip)`` adds one target (the sess
# hash ``key``; ``res`` a resource, or "" for the bare JID's available resources but ``skip``) to
# the node holding it, if another than ``me``: ``fulls[node]``/``bares[node]`` in ``order``.
_GROUP = """
local fulls, bares, order = {}, {}, {}
local function at(node)
  if not fulls[node] then fulls[node] = {}; bares[node] = {}; order[#order + 1] = node end
end
local function group(me, key, res, jid, skip)
  if res ~= '' then
    local v = redis.call('HGET', key, res)
    if v then
      local node = string.match(v, '^([^|]*)|')
      if node and node ~= me then at(node); local t = fulls[node]; t[#t + 1] = jid end
    end
  else
    local seen = {}
    local h = redis.call('HGETALL', key)
    for j = 1, #h, 2 do
      local node, avail = string.match(h[j + 1], '^([^|]*)|[^|]*|[^|]*|(%d)$')
      if node and node ~= me and avail == '1' and not seen[node] and h[j] ~= skip then
        seen[node] = true; at(node); local t = bares[node]; t[#t + 1] = jid
      end
    end
  end
end
"""

# KEYS: the recipients' sess hashes (one per target, repeated when needed). ARGV: this node's
# name, the bus key prefix, maxlen, n (the count of the envelope's field/value strings), those n
# strings, then per key: the resource ("" for a bare JID), the JID as the envelope names it, and
# (a bare JID) a resource not to count (the recipient itself: no envelope for it alone).
# One envelope per node holding any of them: ``r`` the full JIDs bound there, ``b`` the bare
# JIDs with an available resource there. Returns the number of envelopes appended. (The batch
# script's op ``M`` does the same; this one is for an envelope that cannot be an op.)
_FAN = _GROUP + """
local me, prefix, maxlen, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local base = 4 + n
for i = 1, #KEYS do
  group(me, KEYS[i], ARGV[base + 3 * i - 2], ARGV[base + 3 * i - 1], ARGV[base + 3 * i])
end
for _, node in ipairs(order) do
  local args = {prefix .. node, 'MAXLEN', '~', maxlen, '*'}
  for j = 5, base do args[#args + 1] = ARGV[j] end
  args[#args + 1] = 'r'; args[#args + 1] = table.concat(fulls[node], ' ')
  args[#args + 1] = 'b'; args[#args + 1] = table.concat(bares[node], ' ')
  redis.call('XADD', unpack(args))
end
return #order
"""

# ARGV: this node's name, the bus key prefix, maxlen, then one string per envelope of the
# outbox's batch (``op_full``, ``op_node``, ``op_fan`` below: its parts joined with SOH, \1,
# which neither XML nor a JID can hold), in queue order. Every kind of envelope in one command
# with one argument each: redis-py packs each argument in Python (about 2.5 µs here), and a run
# cut by another kind (a carbon copy's look-up between two messages) would make one command per
# envelope. The sess keys are named inside the ops: one Redis server (or Sentinel), as for the
# streams. Returns per op: ``F`` the node it was appended for, this node's name (here: not
# appended) or "" (bound nowhere); ``N`` 1; ``L`` 1, or 0 when the node is not registered (not
# appended: see ``_TO_LIVE``); ``M`` the number of envelopes appended.
_BATCH = _GROUP + """
local me, prefix, maxlen = ARGV[1], ARGV[2], ARGV[3]
local function split(s)
  local t, i = {}, 1
  while true do
    local j = string.find(s, '\\1', i, true)
    if not j then t[#t + 1] = string.sub(s, i); return t end
    t[#t + 1] = string.sub(s, i, j - 1); i = j + 1
  end
end
local out = {}
for a = 4, #ARGV do
  local op = split(ARGV[a])
  local kind = op[1]
  if kind == 'F' then  -- op_full: sess key, resource, env
    local v = redis.call('HGET', op[2], op[3])
    local node = v and string.match(v, '^([^|]*)|')
    if node and node ~= me then
      redis.call('XADD', prefix .. node, 'MAXLEN', '~', maxlen, '*', 'env', op[4])
      out[#out + 1] = node
    elseif node then
      out[#out + 1] = node  -- here (bound or moving here since the sender looked)
    else
      out[#out + 1] = ''
    end
  elseif kind == 'N' then  -- op_node: node, env
    redis.call('XADD', prefix .. op[2], 'MAXLEN', '~', maxlen, '*', 'env', op[3])
    out[#out + 1] = 1
  elseif kind == 'L' then  -- op_live: the node's registry key, node, env
    if redis.call('EXISTS', op[2]) == 1 then
      redis.call('XADD', prefix .. op[3], 'MAXLEN', '~', maxlen, '*', 'env', op[4])
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  else  -- 'M', op_fan: env, then per target: sess key, resource or '', JID, resource not counted
    fulls, bares, order = {}, {}, {}
    for i = 3, #op - 3, 4 do group(me, op[i], op[i + 1], op[i + 2], op[i + 3]) end
    for _, node in ipairs(order) do
      redis.call('XADD', prefix .. node, 'MAXLEN', '~', maxlen, '*', 'env', op[2],
                 'r', table.concat(fulls[node], ' '), 'b', table.concat(bares[node], ' '))
    end
    out[#out + 1] = #order
  end
end
return out
"""
_SOH = "\x01"


def op_full(sess_key: str, resource: str, env: str) -> str | None:
    """The batch's op for an envelope (``env``, packed) to the node holding ``resource`` of
    ``sess_key``; None when a part holds SOH (then: ``publish_to_full``)."""
    op = f"F\x01{sess_key}\x01{resource}\x01{env}"
    return op if op.count(_SOH) == 3 else None


def op_node(node: str, env: str) -> str | None:
    """The batch's op for an envelope to ``node``'s stream; None when a part holds SOH."""
    op = f"N\x01{node}\x01{env}"
    return op if op.count(_SOH) == 2 else None


def op_live(node_key: str, node: str, env: str) -> str | None:
    """The batch's op for an envelope to ``node``'s stream only while its registry entry
    (``node_key``) exists — what a node owns by lease (``_TO_LIVE``); None when a part holds SOH."""
    op = f"L\x01{node_key}\x01{node}\x01{env}"
    return op if op.count(_SOH) == 3 else None


def op_fan(env: str, targets: list[tuple[str, str, str, str]]) -> str | None:
    """The batch's op for one envelope per node holding any of ``targets`` (``(sess key,
    resource or "", JID, resource not counted or "")``, as ``publish_fan``); None when a part
    holds SOH."""
    parts = ["M", env]
    for t in targets:
        parts += t
    op = _SOH.join(parts)
    return op if op.count(_SOH) == len(parts) - 1 else None

# KEYS: the destination node's registry entry (``P:node:<node>``), its stream. ARGV: maxlen, the
# envelope's field/value pairs. An envelope for what a node owns by lease (a room, a component's
# domain: ``RemoteSessions.to_owner``) is appended only while that node is registered: a node
# that left (or whose entry expired) has had its stream drained once by a survivor and nobody
# reads it any more, so an append there would be lost. Returns the entry id, or false (the
# sender's fallback then locates the owner again).
_TO_LIVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 2))
"""


class Bus:
    def __init__(self, redis: Any, url: str, keys: Keys, node: str, bus_max: int, heartbeat: float) -> None:
        self.redis = redis
        self.url = url
        self.keys = keys
        self.node = node
        self.bus_max = bus_max
        self.block = min(1.0, heartbeat)
        self.heartbeat = heartbeat
        self._task: asyncio.Task[None] | None = None
        self._to_full = redis.register_script(_TO_FULL)
        self._fan = redis.register_script(_FAN)
        self._to_live = redis.register_script(_TO_LIVE)
        self._batch = redis.register_script(_BATCH)

    async def publish_to_full(self, sess_key: str, resource: str, fields: dict[str, str], client: Any = None) -> Any:
        """Append to the stream of the node holding ``resource`` in ``sess_key``, if another;
        returns that node's name (this node's: not appended, it is here), or None (with
        ``client`` a pipeline: queued in it)."""
        flat = [x for kv in pack(fields).items() for x in kv]
        return await self._to_full(keys=[sess_key], args=[resource, self.node, self.keys.bus(""), self.bus_max, *flat], client=client)

    async def publish_fan(self, targets: list[tuple[str, str, str, str]], fields: dict[str, str], client: Any = None) -> Any:
        """One envelope (``fields`` plus ``r`` and ``b``) per node holding any of ``targets``
        (``(sess key, resource or "", JID, resource not counted or "")``), in one script;
        returns how many were appended."""
        flat = [x for kv in pack(fields).items() for x in kv]
        pairs = [x for _, res, jid, skip in targets for x in (res, jid, skip)]
        return await self._fan(keys=[key for key, _, _, _ in targets],
                               args=[self.node, self.keys.bus(""), self.bus_max, len(flat), *flat, *pairs], client=client)

    async def publish_batch(self, ops: list[str], client: Any = None) -> Any:
        """Several envelopes in one script (``op_full``, ``op_node``, ``op_fan``), in order;
        returns the list of their results (``client``: queued in it)."""
        return await self._batch(keys=[], args=[self.node, self.keys.bus(""), self.bus_max, *ops], client=client)

    async def publish_to_live(self, node: str, fields: dict[str, str], client: Any = None) -> Any:
        """Append to ``node``'s stream only while its registry entry exists (``_TO_LIVE``);
        returns the entry id or None (with ``client`` a pipeline: queued in it)."""
        flat = [x for kv in pack(fields).items() for x in kv]
        return await self._to_live(keys=[self.keys.node(node), self.keys.bus(node)], args=[self.bus_max, *flat], client=client)

    # ------------------------------------------------------------------ this node's reader

    def start(self, handle: Handler, on_connected: Callable[[], Awaitable[None]]) -> None:
        self._task = asyncio.create_task(self._read(handle, on_connected), name=f"cluster bus {self.node}")

    async def stop(self) -> None:
        await stop_tasks(self._task)
        self._task = None

    async def _read(self, handle: Handler, on_connected: Callable[[], Awaitable[None]]) -> None:
        stream = self.keys.bus(self.node)
        reader = connect(self.url, timeout=self.block + self.heartbeat)
        failures = 0
        connected = False
        last = "0-0"  # what an earlier life of this node left unread is handled too
        handled: list[str] = []
        flushed = asyncio.get_running_loop().time()
        try:
            while True:
                try:
                    if not connected:
                        await on_connected()  # (re)publish this node's sessions first
                        connected = True
                        if failures:
                            log.info("cluster bus of node %s reads again", self.node)
                        failures = 0
                    # Nothing pending to delete: block; else look without waiting, and delete
                    # when idle, every DELETE_EVERY seconds or every READ_COUNT entries.
                    block = int(self.block * 1000) if not handled else None
                    batch = await reader.xread({stream: last}, count=READ_COUNT, block=block)
                    for _, entries in batch or ():
                        for entry_id, fields in entries:
                            last = entry_id
                            handled.append(entry_id)
                            await _handle_one(handle, fields)
                    now = asyncio.get_running_loop().time()
                    if handled and (not batch or len(handled) >= READ_COUNT or now - flushed >= DELETE_EVERY):
                        await self.redis.xdel(stream, *handled)
                        handled = []
                        flushed = now
                except unreachable_errors() as exc:
                    if not failures:
                        log.warning("cluster bus of node %s cannot read (Redis: %s): retrying", self.node, exc or type(exc).__name__)
                    failures += 1
                    connected = False
                    last = "0-0"  # a restarted Redis numbers its entries anew
                    handled = []  # not deleted: handled again (at most one batch twice)
                    await asyncio.sleep(min(self.heartbeat * 2 ** (failures - 1), 5.0))
        finally:
            await reader.aclose()

    # ------------------------------------------------------------------ a dead node's stream

    async def drain(self, node: str, handle: Handler, still_dead: Callable[[], Awaitable[bool]]) -> int:
        """Handle what is left in dead ``node``'s stream (its recipients are gone: messages end in
        offline storage, iq are answered with errors), and delete it. Stops if the node returns."""
        stream = self.keys.bus(node)
        handled = 0
        while await still_dead():
            entries = await self.redis.xrange(stream, "-", "+", count=READ_COUNT)
            if not entries:
                break
            for _, fields in entries:
                await _handle_one(handle, fields)
            await self.redis.xdel(stream, *(i for i, _ in entries))
            handled += len(entries)
        if await still_dead():
            await self.redis.delete(stream)
        return handled


async def _handle_one(handle: Handler, fields: dict[str, str]) -> None:
    try:
        fields = unpack(fields)
        await handle(fields)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("a stanza from the cluster bus could not be handled (from %s to %s)", fields.get("f"), fields.get("t"))

"""The bus between nodes (docs/cluster.md §3, §4): one Redis stream per node, ``P:bus:<node>``.

A node appends (``XADD … MAXLEN ~ cluster.bus_max``) an envelope to the destination node's
stream; each node reads its own stream with one task (``XREAD BLOCK``), hands every entry to a
handler in order, then deletes what it handled. One sender's stanzas to one node are appended
in the order its session task routes them and read in that order by one task: per-sender order
holds across nodes. A stream keeps what nobody read yet (pub/sub would not): a reader that lost
its connection resumes, and a dead node's stream is drained by a survivor (``drain``).

Envelope fields: ``k`` kind, ``f`` from, ``t`` the routed ``to``, ``r`` the full JIDs on the
destination node it is for (space-separated), ``h`` hops (a stanza re-sent by a node that no
longer held its recipient), ``o`` the origin node, ``x`` the stanza serialised once.
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

    async def publish_to_full(self, sess_key: str, resource: str, fields: dict[str, str], client: Any = None) -> Any:
        """Append to the stream of the node holding ``resource`` in ``sess_key``, if another;
        returns that node's name (this node's: not appended, it is here), or None (with
        ``client`` a pipeline: queued in it)."""
        flat = [x for kv in fields.items() for x in kv]
        return await self._to_full(keys=[sess_key], args=[resource, self.node, self.keys.bus(""), self.bus_max, *flat], client=client)

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
        await handle(fields)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("a stanza from the cluster bus could not be handled (from %s to %s)", fields.get("f"), fields.get("t"))

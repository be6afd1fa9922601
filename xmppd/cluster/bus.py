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

from .connection import connect, unreachable_errors
from .keys import Keys

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, str]], Awaitable[None]]
READ_COUNT = 100


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

    async def publish(self, node: str, fields: dict[str, str]) -> None:
        """Append to ``node``'s stream; raises the client's errors when Redis cannot be reached."""
        await self.redis.xadd(self.keys.bus(node), fields, maxlen=self.bus_max, approximate=True)

    # ------------------------------------------------------------------ this node's reader

    def start(self, handle: Handler, on_connected: Callable[[], Awaitable[None]]) -> None:
        self._task = asyncio.create_task(self._read(handle, on_connected), name=f"cluster bus {self.node}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _read(self, handle: Handler, on_connected: Callable[[], Awaitable[None]]) -> None:
        stream = self.keys.bus(self.node)
        reader = connect(self.url, timeout=self.block + self.heartbeat)
        failures = 0
        connected = False
        last = "0-0"  # what an earlier life of this node left unread is handled too
        try:
            while True:
                try:
                    if not connected:
                        await on_connected()  # (re)publish this node's sessions first
                        connected = True
                        if failures:
                            log.info("cluster bus of node %s reads again", self.node)
                        failures = 0
                    batch = await reader.xread({stream: last}, count=READ_COUNT, block=int(self.block * 1000))
                    for _, entries in batch or ():
                        ids = []
                        for entry_id, fields in entries:
                            last = entry_id
                            ids.append(entry_id)
                            await _handle_one(handle, fields)
                        await self.redis.xdel(stream, *ids)
                except unreachable_errors() as exc:
                    if not failures:
                        log.warning("cluster bus of node %s cannot read (Redis: %s): retrying", self.node, exc or type(exc).__name__)
                    failures += 1
                    connected = False
                    last = "0-0"  # a restarted Redis numbers its entries anew
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
        return handled


async def _handle_one(handle: Handler, fields: dict[str, str]) -> None:
    try:
        await handle(fields)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("a stanza from the cluster bus could not be handled (from %s to %s)", fields.get("f"), fields.get("t"))

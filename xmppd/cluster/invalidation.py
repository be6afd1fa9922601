"""Cache invalidations between nodes: Redis pub/sub on ``P:inval`` (docs/cluster.md §2, §3).

The transport behind ``xmppd/core/invalidation.py``. A node's cache that wrote something calls
``publish(name, key)``; one writer task sends what is queued (``PUBLISH P:inval
"<node>\\n<name>\\n<key>"``, many in one pipeline), and one reader task, subscribed on its own
connection, hands every other node's message to ``Invalidations.received``.

Pub/sub delivers only to whoever is subscribed at that moment, so whenever a message may have
been missed every cache is flushed:

* the reader flushes every cache each time its subscription is (re)established -- at start (a
  write between a cache's load at set-up and the subscription) and after any lost connection
  (a Redis restart, a failover, a network cut), and a connection that stops answering its
  pings for two heartbeats counts as lost;
* a publication that failed is kept (at most ``PENDING_MAX`` distinct keys, beyond that one
  "flush everything" message replaces them) and sent once Redis answers again, so the other
  nodes, which may never have lost their own connection, still hear of this node's writes.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

from ..core.invalidation import ALL, Invalidations
from ..core.tasks import stop_tasks
from .connection import connect, unreachable_errors
from .keys import Keys

log = logging.getLogger(__name__)

PENDING_MAX = 10_000
BATCH = 500


class ClusterInvalidations:
    def __init__(self, redis: Any, url: str, keys: Keys, node: str, invalidations: Invalidations, heartbeat: float) -> None:
        self.redis = redis
        self.url = url
        self.channel = keys.inval
        self.node = node
        self.invalidations = invalidations
        self.heartbeat = heartbeat
        self._queue: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()  # set while the reader is subscribed (tests wait on it)
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.received = 0

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write(), name=f"cluster invalidation writer {self.node}"),
            asyncio.create_task(self._read(), name=f"cluster invalidation reader {self.node}"),
        ]

    async def stop(self) -> None:
        await stop_tasks(*self._tasks)
        self._tasks = []
        if self._queue:  # a graceful stop still tells the others of its last writes (one try)
            try:
                async with asyncio.timeout(self.heartbeat):
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for name, key in self._queue:
                            pipe.publish(self.channel, f"{self.node}\n{name}\n{key}")
                        await pipe.execute()
                self._queue.clear()
            except (TimeoutError, *unreachable_errors()) as exc:
                log.warning("%d cache invalidations could not be published before stopping (%s)", len(self._queue), exc or type(exc).__name__)

    # ------------------------------------------------------------------ publishing

    def publish(self, name: str, key: str) -> None:
        """Queue ``name``/``key`` for the other nodes (never waits for Redis)."""
        q = self._queue
        if (ALL, "") in q:
            return  # everything is flushed anyway
        q[(name, key)] = None
        if len(q) > PENDING_MAX:
            q.clear()
            q[(ALL, "")] = None
        self._wake.set()

    async def _write(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = list(self._queue)[:BATCH]
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for name, key in batch:
                            pipe.publish(self.channel, f"{self.node}\n{name}\n{key}")
                        await pipe.execute()
                except unreachable_errors() as exc:
                    if not failures:
                        log.warning("cannot publish cache invalidations (Redis: %s): kept until Redis answers",
                                    exc or type(exc).__name__)
                    failures += 1
                    await asyncio.sleep(min(self.heartbeat * 2 ** (failures - 1), 5.0))
                    continue
                if failures:
                    log.info("cache invalidations kept during the Redis outage were published")
                    failures = 0
                for item in batch:
                    self._queue.pop(item, None)
                self.published += len(batch)

    # ------------------------------------------------------------------ receiving

    async def _read(self) -> None:
        failures = 0
        while True:
            client = connect(self.url, timeout=self.heartbeat * 2)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                await self._confirmed(pubsub)
                # Subscribed: whatever was published before is covered by the flush.
                await self.invalidations.flush_all()
                if failures:
                    log.info("cache invalidations are received again: every cache was flushed")
                failures = 0
                self._subscribed.set()
                await self._listen(pubsub)
            except unreachable_errors() as exc:
                self._subscribed.clear()
                if not failures:
                    log.warning("cache invalidations cannot be received (Redis: %s): caches are flushed when it answers",
                                exc or type(exc).__name__)
                failures += 1
            finally:
                self._subscribed.clear()
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:  # the connection is gone already
                    pass
            await asyncio.sleep(min(self.heartbeat * 2 ** (failures - 1), 5.0))

    async def _confirmed(self, pubsub: Any) -> None:
        """Wait for Redis's confirmation of the subscription: from then on nothing is missed."""
        deadline = time.monotonic() + 2 * self.heartbeat + 1.0
        while time.monotonic() < deadline:
            msg = await pubsub.get_message(timeout=min(1.0, self.heartbeat))
            if msg is None:
                continue
            if msg.get("type") == "subscribe":
                return
            if msg.get("type") == "message":  # (cannot come before the confirmation; harmless)
                await self._handle(msg.get("data") or "")
        raise ConnectionError("the subscription was not confirmed")

    async def _listen(self, pubsub: Any) -> None:
        last_heard = time.monotonic()
        last_ping = last_heard
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(1.0, self.heartbeat))
            now = time.monotonic()
            if msg is not None:
                last_heard = now
                if msg.get("type") == "message":
                    await self._handle(msg.get("data") or "")
                continue
            if now - last_heard > 2 * self.heartbeat + 1.0:
                raise ConnectionError(f"no answer to pings for {now - last_heard:.1f} s")
            if now - last_ping >= self.heartbeat:
                last_ping = now
                await pubsub.ping()  # answered with a pong message: proves the connection lives

    async def _handle(self, data: str) -> None:
        origin, _, rest = data.partition("\n")
        name, sep, key = rest.partition("\n")
        if not sep or origin == self.node:
            return
        self.received += 1
        await self.invalidations.received(name, key)

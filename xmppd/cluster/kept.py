"""What a session leaves for its survivors (docs/cluster.md §6, "Node loss"): small named values
a feature keeps in Redis beside the session, so that the survivor that cleans up after a dead
node can act on them in the session's name (``SESSIONS_LOST``'s ``kept``).

``P:kept:<node>:<incarnation>`` is a HASH, field ``<full JID>\\n<name>``, value the feature's
string. Presence keeps there the recipients of a session's directed presence (RFC 6121 §4.6.3:
they must get unavailable presence when the session ends, and a node's death ends it). A feature
calls ``Router.keep(full, name, value)`` (``None`` removes); the writes are queued and sent by one
task, the latest value of each field only, in one pipeline per round: the session's stanzas
never wait for them. A graceful stop deletes the hash (every session ended there already); the
survivor's cleanup reads and deletes it. Nothing is kept without a cluster.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..core.tasks import stop_tasks
from ..jid import JID
from .connection import unreachable_errors
from .keys import Keys

log = logging.getLogger(__name__)

RETRY = 1.0  # seconds before a round that Redis refused is tried again
MAX_PENDING = 100_000  # fields waiting for Redis; beyond, the oldest values are dropped (logged)


class KeptState:
    def __init__(self, redis: Any, keys: Keys, node: str, incarnation: str) -> None:
        self.redis = redis
        self.key = keys.kept(node, incarnation)
        self._keys = keys
        self._pending: dict[str, str | None] = {}
        self._names: dict[JID, set[str]] = {}  # what each session keeps now
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._write(), name="cluster kept state")

    def keep(self, full: JID, name: str, value: str | None) -> None:
        names = self._names.get(full)
        if value is not None:
            if names is None:
                names = self._names[full] = set()
            names.add(name)
        elif names is not None:
            names.discard(name)
            if not names:
                del self._names[full]
        self._queue(f"{full}\n{name}", value)

    def drop(self, full: JID) -> None:
        """Everything ``full`` keeps (the session moved to another node: it is not lost here)."""
        for name in self._names.pop(full, ()):
            self._queue(f"{full}\n{name}", None)

    def _queue(self, field: str, value: str | None) -> None:
        self._pending.pop(field, None)  # re-queued at the end: the latest value wins
        if len(self._pending) >= MAX_PENDING:
            dropped = next(iter(self._pending))
            del self._pending[dropped]
            log.warning("kept session state waits for Redis beyond %d values: %r dropped", MAX_PENDING, dropped)
        self._pending[field] = value
        self._wake.set()

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, {}
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for field, value in batch.items():
                            if value is None:
                                pipe.hdel(self.key, field)
                            else:
                                pipe.hset(self.key, field, value)
                        await pipe.execute()
                    self._warned = False
                except unreachable_errors() as exc:
                    if not self._warned:
                        log.warning("kept session state cannot be written (Redis: %s): retrying", exc or type(exc).__name__)
                        self._warned = True
                    for field, value in batch.items():  # what was queued since is newer
                        self._pending.setdefault(field, value)
                    await asyncio.sleep(RETRY)

    async def stop(self) -> None:
        """A graceful stop: every session ended here, nothing is left to act on."""
        await stop_tasks(self._task)
        self._task = None
        self._pending.clear()
        try:
            await self.redis.delete(self.key)
        except unreachable_errors():
            pass

    async def take(self, node: str, incarnation: str) -> dict[JID, dict[str, str]]:
        """What dead ``node``'s sessions kept, by full JID, removed from Redis."""
        key = self._keys.kept(node, incarnation)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.delete(key)
            raw, _ = await pipe.execute()
        out: dict[JID, dict[str, str]] = {}
        for field, value in raw.items():
            full, _, name = field.partition("\n")
            try:
                jid = JID.parse(full)
            except ValueError:
                continue
            out.setdefault(jid, {})[name] = value
        return out


__all__ = ["KeptState"]

"""One lock per key (a room, a customer-service queue), kept only while a stanza holds or waits
for it: the stanzas that arrive together for something this node does not hold yet look it up
(and acquire and load it) one at a time, never twice (docs/cluster.md §5)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable


class Gates:
    def __init__(self) -> None:
        self._gates: dict[Hashable, tuple[asyncio.Lock, list[int]]] = {}

    def __contains__(self, key: Hashable) -> bool:
        """Whether a stanza holds or waits at ``key``'s gate now."""
        return key in self._gates

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = (asyncio.Lock(), [0])
        lock, users = gate
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._gates[key]

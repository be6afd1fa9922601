"""xmppd.cluster.gates: one lock per key, gone when nobody holds or waits for it (sans I/O)."""
from __future__ import annotations

import asyncio

from xmppd.cluster.gates import Gates


async def test_stanzas_for_one_key_pass_one_at_a_time_and_the_gate_goes_with_the_last() -> None:
    gates = Gates()
    inside: list[str] = []
    most = 0

    async def stanza(key: str, name: str) -> None:
        nonlocal most
        async with gates.hold(key):
            inside.append(name)
            most = max(most, sum(1 for n in inside if n.startswith(key)))
            await asyncio.sleep(0.01)
            inside.remove(name)

    task = asyncio.gather(*(stanza("room", f"room{i}") for i in range(5)), stanza("queue", "queue0"))
    await asyncio.sleep(0)
    assert "room" in gates and "queue" in gates
    await task
    assert most == 1  # never two at once for one key
    assert "room" not in gates and "queue" not in gates


async def test_the_gate_is_released_when_the_holder_fails() -> None:
    gates = Gates()
    try:
        async with gates.hold("room"):
            raise RuntimeError("load failed")
    except RuntimeError:
        pass
    assert "room" not in gates
    async with asyncio.timeout(1):
        async with gates.hold("room"):
            pass

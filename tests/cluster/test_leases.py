"""Leases and fencing tokens (xmppd/cluster/leases.py, docs/cluster.md §5) against a real Redis:
the shared one under a key prefix of the test's own."""
from __future__ import annotations

from typing import Any

import pytest

from xmppd.cluster.connection import connect
from xmppd.cluster.keys import Keys
from xmppd.cluster.leases import Lease, Leases, rendezvous

from .procs import SHARED_REDIS


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def redis(prefix: str) -> Any:
    client = connect(SHARED_REDIS, timeout=5)
    yield client
    await client.aclose()


def two(redis: Any, prefix: str, clock: Clock | None = None) -> tuple[Leases, Leases]:
    keys = Keys(prefix)
    return (Leases(redis, keys, "alpha", 5.0, clock or Clock()), Leases(redis, keys, "beta", 5.0, clock or Clock()))


async def test_one_owner_at_a_time_and_tokens_only_grow(redis, prefix):
    a, b = two(redis, prefix)
    got = await a.acquire("room", "r@conference.localhost")
    assert got == Lease("alpha", 1) and a.token("room", "r@conference.localhost") == 1
    assert await b.acquire("room", "r@conference.localhost") == Lease("alpha", 1)  # taken: the holder, no token spent
    assert b.token("room", "r@conference.localhost") is None
    assert await b.owner("room", "r@conference.localhost") == Lease("alpha", 1)
    assert await redis.pttl(f"{prefix}:lease:room:r@conference.localhost") > 4000
    await a.release("room", "r@conference.localhost")
    assert await b.owner("room", "r@conference.localhost") is None
    assert await b.acquire("room", "r@conference.localhost") == Lease("beta", 2)
    # a floor (the database's highest token) is never handed out again, e.g. after Redis lost the counter
    await b.release("room", "r@conference.localhost")
    assert await a.acquire("room", "r@conference.localhost", floor=41) == Lease("alpha", 42)


async def test_renewal_keeps_the_lease_and_a_lost_one_is_dropped_at_once(redis, prefix):
    clock = Clock()
    a, b = two(redis, prefix, clock)
    lost: list[tuple[str, int]] = []

    async def on_lost(name: str, token: int) -> None:
        lost.append((name, token))

    a.on_lost("room", on_lost)
    await a.acquire("room", "x")
    await a.acquire("room", "y")
    await redis.pexpire(f"{prefix}:lease:room:x", 1000)
    await a.renew()
    assert await redis.pttl(f"{prefix}:lease:room:x") > 4000 and lost == []
    # another node took "y" meanwhile (it expired, say): the next renewal drops it here
    await redis.set(f"{prefix}:lease:room:y", "beta|7")
    await a.renew()
    assert lost == [("y", 1)] and a.token("room", "y") is None and a.token("room", "x") == 1
    assert await redis.get(f"{prefix}:lease:room:y") == "beta|7"  # not touched
    # Redis unreachable for longer than the lease: dropped, although nobody said so
    clock.t += 6
    await a.renew(reachable=False)
    assert lost == [("y", 1), ("x", 1)] and a.held("room") == []


async def test_a_dead_nodes_lease_is_broken_only_if_unchanged_and_an_earlier_life_is_adopted(redis, prefix):
    a, b = two(redis, prefix)
    await a.acquire("room", "z")
    assert not await b.break_dead("room", "z", Lease("alpha", 99))  # not its value: kept
    assert await b.break_dead("room", "z", Lease("alpha", 1))
    assert await b.acquire("room", "z") == Lease("beta", 2)
    # a restarted beta (same name, new process) finds its earlier life's lease and adopts it
    _, b2 = two(redis, prefix)
    assert await b2.adopt("room", "z", Lease("beta", 2)) and b2.token("room", "z") == 2
    assert not await b2.adopt("room", "z", Lease("alpha", 2))


def test_rendezvous_spreads_and_moves_only_the_lost_nodes_names():
    nodes = ["alpha", "beta", "gamma"]
    names = [f"room{i}@conference.localhost" for i in range(300)]
    owners = {n: rendezvous(nodes, n) for n in names}
    counts = {node: sum(1 for o in owners.values() if o == node) for node in nodes}
    assert all(c > 50 for c in counts.values()), counts
    after = {n: rendezvous(["alpha", "beta"], n) for n in names}
    assert all(after[n] == owners[n] for n in names if owners[n] != "gamma")

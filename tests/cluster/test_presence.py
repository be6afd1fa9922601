"""Presence and sessions across nodes (issue 17, docs/cluster.md §3): the router's fan-out and
``deliver_to`` reach sessions on other nodes, one envelope per destination node.

Real ``xmppd`` processes (tests/cluster/test_routing.py's ``Two``: one SQLite file, the shared
Redis under a prefix of the test's own); slixmpp clients on different nodes.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import slix, slix_close
from .test_routing import Two, _redis, two_nodes


@pytest.fixture
async def two(tmp_path: Path, prefix: str) -> AsyncIterator[Two]:
    async with two_nodes(Two(tmp_path, prefix)) as t:
        yield t


async def _until(cond: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.05)


async def befriend(two: Two, a: str, b: str) -> None:
    """``a`` and ``b`` subscribed to each other (both on alpha for the handshake), then gone."""
    ca = await slix(two.nodes["alpha"].as_server(), f"{a}@localhost")
    cb = await slix(two.nodes["alpha"].as_server(), f"{b}@localhost")
    try:
        await cb.get_roster()
        await ca.get_roster()
        cb.send_presence()
        ca.send_presence()
        ca.send_presence_subscription(pto=f"{b}@localhost")
        await _until(lambda: ca.client_roster[f"{b}@localhost"]["subscription"] == "both")
    finally:
        await slix_close(ca)
        await slix_close(cb)


def presences(client: Any, of: str) -> asyncio.Queue[Any]:
    """Available and unavailable presence from ``of`` (a bare JID) as the client receives it."""
    q: asyncio.Queue[Any] = asyncio.Queue()

    def got(p: Any) -> None:
        if p["from"].bare == of and p["type"] in ("available", "unavailable", "away", "chat", "dnd", "xa"):
            q.put_nowait(p)

    client.add_event_handler("presence", got)
    return q


async def next_with(q: asyncio.Queue[Any], pred: Any, timeout: float = 10) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            p = await q.get()
            if pred(p):
                return p


def bus_added(two: Two, node: str) -> int:
    """Entries ever appended to ``node``'s bus stream (they are deleted once handled)."""
    r = _redis()
    try:
        return int(r.xinfo_stream(f"{two.prefix}:bus:{node}")["entries-added"])
    finally:
        r.close()


async def test_a_presence_broadcast_reaches_contacts_on_the_other_node_in_one_envelope_per_node(two):
    await befriend(two, "alice", "bob")
    bob1 = await two.login("beta", "bob@localhost")
    bob2 = await two.login("beta", "bob@localhost")
    alice = await two.login("alpha", "alice@localhost")
    try:
        q1, q2 = presences(bob1, "alice@localhost"), presences(bob2, "alice@localhost")
        await asyncio.sleep(0.5)  # what the logins caused is handled
        before = bus_added(two, "beta")
        alice.send_presence(pstatus="across nodes")
        for q in (q1, q2):
            p = await next_with(q, lambda p: p["status"] == "across nodes")
            assert (p["from"].full, p["to"].full) == (alice.boundjid.full, "bob@localhost")
        assert bus_added(two, "beta") - before == 1  # two recipients there: one envelope
        alice.send_presence(ptype="unavailable")
        for q in (q1, q2):
            await next_with(q, lambda p: p["type"] == "unavailable" and p["from"].full == alice.boundjid.full)
    finally:
        for c in (alice, bob1, bob2):
            await slix_close(c)

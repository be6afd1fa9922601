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
from .procs import Two, two_nodes
from .procs import redis_client as _redis


@pytest.fixture
async def two(tmp_path: Path, prefix: str) -> AsyncIterator[Two]:
    t = Two(tmp_path, prefix)
    t.users.append("carol")
    async with two_nodes(t) as t:
        yield t


async def _until(cond: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - polling client and server state the test cannot subscribe to
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


async def stored_roster(client: Any) -> Any:
    """The whole roster as the client's node answers it (no version: every item)."""
    iq = client.Iq()
    iq["type"] = "get"
    iq.enable("roster")
    return (await iq.send(timeout=10))["roster"]["items"]


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


async def test_subscription_handshake_across_nodes_pushes_rosters_and_exchanges_presence(two):
    alice = await two.login("alpha", "alice@localhost", available=False)
    bob = await two.login("beta", "bob@localhost", available=False)
    try:
        requests: asyncio.Queue[Any] = asyncio.Queue()
        bob.add_event_handler("presence_subscribe", requests.put_nowait)
        await alice.get_roster()
        await bob.get_roster()
        seen_by_alice, seen_by_bob = presences(alice, "bob@localhost"), presences(bob, "alice@localhost")
        bob.send_presence(pstatus="bob on beta")
        alice.send_presence(pstatus="alice on alpha")
        await two.wait_entry("bob@localhost", bob.boundjid.resource, "beta|", available=True)
        await two.wait_entry("alice@localhost", alice.boundjid.resource, "alpha|", available=True)
        alice.send_presence_subscription(pto="bob@localhost")  # bob's slixmpp approves and asks back
        req = await asyncio.wait_for(requests.get(), 10)
        assert req["from"].full == "alice@localhost"
        # roster pushes reached each side on its own node
        await _until(lambda: alice.client_roster["bob@localhost"]["subscription"] == "both"
                     and bob.client_roster["alice@localhost"]["subscription"] == "both")
        p = await next_with(seen_by_alice, lambda p: p["status"] == "bob on beta")
        assert p["from"].full == bob.boundjid.full
        p = await next_with(seen_by_bob, lambda p: p["status"] == "alice on alpha")
        assert p["from"].full == alice.boundjid.full
        # the stored rosters say the same on both nodes (beta's cache was not left stale)
        assert (await stored_roster(bob))["alice@localhost"]["subscription"] == "both"
        assert (await stored_roster(alice))["bob@localhost"]["subscription"] == "both"
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_probes_are_answered_by_the_node_holding_the_contacts_sessions(two):
    await befriend(two, "alice", "bob")
    bob = await two.login("beta", "bob@localhost", available=False)
    try:
        bob.send_presence(pstatus="probe me")
        await two.wait_entry("bob@localhost", bob.boundjid.resource, "beta|", available=True)
        alice = await two.login("alpha", "alice@localhost", available=False)
        seen = presences(alice, "bob@localhost")
        alice.send_presence()  # initial presence: the implicit probe of bob, answered by beta
        p = await next_with(seen, lambda p: p["status"] == "probe me")
        assert (p["from"].full, p["to"].full) == (bob.boundjid.full, alice.boundjid.full)
        alice.send_presence(pto="bob@localhost", ptype="probe")  # an explicit probe too
        p = await next_with(seen, lambda p: p["status"] == "probe me")
        assert p["from"].full == bob.boundjid.full
        await slix_close(bob)
        await two.wait_entry("bob@localhost", bob.boundjid.resource, None)
        await next_with(seen, lambda p: p["type"] == "unavailable")  # bob left: told across nodes
        alice.send_presence(pto="bob@localhost", ptype="probe")  # nobody anywhere: unavailable
        p = await next_with(seen, lambda p: p["type"] == "unavailable")
        assert p["from"].full == "bob@localhost"
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_directed_presence_reaches_full_and_bare_jids_on_the_other_node(two):
    alice = await two.login("alpha", "alice@localhost")
    bob1 = await two.login("beta", "bob@localhost")
    bob2 = await two.login("beta", "bob@localhost")
    try:
        q1, q2 = presences(bob1, "alice@localhost"), presences(bob2, "alice@localhost")
        alice.send_presence(pto=bob1.boundjid.full, pstatus="to one resource")
        p = await next_with(q1, lambda p: p["status"] == "to one resource")
        assert p["to"].full == bob1.boundjid.full
        alice.send_presence(pto="bob@localhost", pstatus="to the account")
        for q in (q1, q2):
            p = await next_with(q, lambda p: p["status"] == "to the account")
            assert p["to"].full == "bob@localhost"
        alice.send_presence(pto="bob@localhost", ptype="unavailable")  # directed: so it is delivered
        for q in (q1, q2):
            await next_with(q, lambda p: p["type"] == "unavailable")
        assert all(p["status"] != "to one resource" for p in list(q2._queue))  # type: ignore[attr-defined]
    finally:
        for c in (alice, bob1, bob2):
            await slix_close(c)


async def test_carbons_reach_the_accounts_resources_on_the_other_node(two):
    alice1 = await two.login("alpha", "alice@localhost", plugins=("xep_0280",))
    alice2 = await two.login("beta", "alice@localhost", plugins=("xep_0280",))
    alice3 = await two.login("beta", "alice@localhost", plugins=("xep_0280",))  # carbons off
    bob = await two.login("alpha", "bob@localhost")
    try:
        await alice2.plugin["xep_0280"].enable()
        sent: asyncio.Queue[Any] = asyncio.Queue()
        received: asyncio.Queue[Any] = asyncio.Queue()
        alice2.add_event_handler("carbon_sent", sent.put_nowait)
        alice2.add_event_handler("carbon_received", received.put_nowait)
        other: asyncio.Queue[Any] = asyncio.Queue()
        for ev in ("carbon_sent", "carbon_received"):
            alice3.add_event_handler(ev, other.put_nowait)
        alice1.send_message(mto="bob@localhost", mbody="sent from alpha", mtype="chat")
        m = await asyncio.wait_for(sent.get(), 10)
        inner = m["carbon_sent"]
        assert (inner["body"], inner["to"].bare, m["to"].full) == ("sent from alpha", "bob@localhost", alice2.boundjid.full)
        bob.send_message(mto=alice1.boundjid.full, mbody="to alice on alpha", mtype="chat")
        m = await asyncio.wait_for(received.get(), 10)
        assert (m["carbon_received"]["body"], m["from"].full) == ("to alice on alpha", "alice@localhost")
        # a message to alice2 itself gives it no copy, and alice3 (carbons off) got none at all
        bob.send_message(mto=alice2.boundjid.full, mbody="to alice2 itself", mtype="chat")
        bob.send_message(mto=alice1.boundjid.full, mbody="last", mtype="chat")
        m = await asyncio.wait_for(received.get(), 10)
        assert m["carbon_received"]["body"] == "last"
        assert other.empty()
    finally:
        for c in (alice1, alice2, alice3, bob):
            await slix_close(c)


async def test_a_killed_nodes_available_users_appear_unavailable_to_their_contacts_on_every_node(two):
    """Also to carol, who is not bob's contact but got his directed presence (RFC 6121 §4.6.3):
    the recipients were kept in Redis beside bob's session, and the survivor that cleaned up
    after gamma tells her."""
    import signal

    await befriend(two, "alice", "bob")
    await two.start("gamma")
    await two.nodes["alpha"].wait_log("node gamma is up")
    await two.nodes["beta"].wait_log("node gamma is up")
    alice1 = await two.login("alpha", "alice@localhost")
    alice2 = await two.login("beta", "alice@localhost")
    carol = await two.login("beta", "carol@localhost")
    bob = await two.login("gamma", "bob@localhost", available=False)
    try:
        q1, q2 = presences(alice1, "bob@localhost"), presences(alice2, "bob@localhost")
        q3 = presences(carol, "bob@localhost")
        bob.send_presence(pstatus="on gamma")
        for q in (q1, q2):
            await next_with(q, lambda p: p["status"] == "on gamma")
        bob.send_presence(pto="carol@localhost", pstatus="just for carol")
        await next_with(q3, lambda p: p["status"] == "just for carol")
        r = _redis()
        try:  # kept beside bob's session (written by gamma's writer task, not on the stanza's path)
            await _until(lambda: any(f"{bob.boundjid.full}\ndirected" in r.hkeys(k) for k in r.keys(f"{two.prefix}:kept:gamma:*")))
        finally:
            r.close()
        gamma = two.nodes["gamma"]
        gamma.proc.send_signal(signal.SIGKILL)
        await gamma.wait()
        for q in (q1, q2):  # one survivor cleaned up; both alice resources were told
            p = await next_with(q, lambda p: p["type"] == "unavailable", timeout=20)
            assert p["from"].full == bob.boundjid.full
        p = await next_with(q3, lambda p: p["type"] == "unavailable", timeout=20)
        assert p["from"].full == bob.boundjid.full
        line = "told the contacts of node gamma's 1 available sessions that they are unavailable"
        await _until(lambda: any(line in two.nodes[n].log for n in ("alpha", "beta")))
        assert sum(line in two.nodes[n].log for n in ("alpha", "beta")) == 1
    finally:
        for c in (alice1, alice2, carol):
            await slix_close(c)
        bob.abort()

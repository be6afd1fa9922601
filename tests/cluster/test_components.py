"""External components (XEP-0114) in a cluster (issue 17, docs/cluster.md §5, docs/components.md):
a component attached to one node serves its domain for every node — the node holding it takes
the lease ``comp:<domain>``, the others forward the domain's stanzas to that node's bus.

Two real ``xmppd`` processes (tests/cluster/test_routing.py's ``Two``), each with a component
listener on a port of its own; slixmpp's ``ComponentXMPP`` on alpha, alice on beta.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import slixmpp
from slixmpp import ET

from ..helpers import slix_close, slix_component
from .procs import Two, two_nodes
from .procs import redis_client as _redis

DOMAIN = "bots.localhost"
SECRET = "a-long-enough-shared-secret"


@pytest.fixture
async def two(tmp_path: Path, prefix: str) -> AsyncIterator[Two]:
    t = Two(tmp_path, prefix)
    t.args += ["--set", "component.listen=127.0.0.1:0",
               "--set", f'component.components=[{{domain="{DOMAIN}", secret="{SECRET}"}}]']
    async with two_nodes(t) as t:
        yield t


async def component_port(two: Two, node: str) -> int:
    m = await two.nodes[node].wait_log(r"listening for components \(.*\) on 127\.0\.0\.1:(\d+)")
    return int(m.group(1))


def lease(two: Two) -> str | None:
    r = _redis(two.redis_url)
    try:
        return r.get(f"{two.prefix}:lease:comp:{DOMAIN}")
    finally:
        r.close()


async def until(cond: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - Redis state the test cannot subscribe to
            await asyncio.sleep(0.05)


async def test_a_component_on_one_node_serves_users_on_another(two):
    alice = await two.login("beta", "alice@localhost", plugins=("xep_0030",))
    got: asyncio.Queue[Any] = asyncio.Queue()
    alice_got: asyncio.Queue[Any] = asyncio.Queue()
    alice.add_event_handler("message", lambda m: alice_got.put_nowait(m) if m["body"] else None)
    try:
        async with slix_component(await component_port(two, "alpha"), DOMAIN, SECRET) as comp:
            await until(lambda: (lease(two) or "").startswith("alpha|"))
            comp.add_event_handler("message", got.put_nowait)
            comp.plugin["xep_0030"].add_feature("urn:example:echo")

            # alice (beta) -> the component (alpha): a message to a JID at its domain, an iq to it
            alice.send_message(mto=f"echo@{DOMAIN}", mbody="hello bot", mtype="chat")
            m = await asyncio.wait_for(got.get(), 10)
            assert m["body"] == "hello bot" and m["from"] == alice.boundjid and m["to"] == f"echo@{DOMAIN}"
            info = await alice.plugin["xep_0030"].get_info(jid=DOMAIN, cached=False, timeout=10)
            assert "urn:example:echo" in info["disco_info"]["features"]

            # the component -> alice on the other node
            comp.send_message(mto=alice.boundjid, mfrom=f"echo@{DOMAIN}/x", mbody="hello human", mtype="chat")
            r = await asyncio.wait_for(alice_got.get(), 10)
            assert r["body"] == "hello human" and r["from"] == f"echo@{DOMAIN}/x"

            # a second component for the domain on beta is closed: the domain is alpha's
            ended = asyncio.get_running_loop().create_future()
            second = slixmpp.ComponentXMPP(DOMAIN, SECRET, "127.0.0.1", await component_port(two, "beta"))
            second.add_event_handler("stream_error", lambda e: ended.done() or ended.set_result(e["condition"]))
            second.add_event_handler("disconnected", lambda _e: ended.done() or ended.set_result("disconnected"))
            second.connect()
            try:
                assert await asyncio.wait_for(ended, 10) == "conflict"
            finally:
                second.disconnect()
            await two.nodes["beta"].wait_log(rf"component {DOMAIN} detached")
            assert (lease(two) or "").startswith("alpha|")
            alice.send_message(mto=f"echo@{DOMAIN}", mbody="still there?", mtype="chat")
            assert (await asyncio.wait_for(got.get(), 10))["body"] == "still there?"

        # the component left: its lease is released, beta answers as one node does
        await until(lambda: lease(two) is None)
        iq = alice.make_iq_get(ito=DOMAIN)
        iq.append(ET.fromstring("<query xmlns='http://jabber.org/protocol/disco#info'/>"))
        with pytest.raises(slixmpp.exceptions.IqError) as err:
            await iq.send(timeout=10)
        assert err.value.iq["error"]["condition"] == "remote-server-not-found"

        # attached to beta now: served there, and alpha forwards to it
        async with slix_component(await component_port(two, "beta"), DOMAIN, SECRET) as comp:
            await until(lambda: (lease(two) or "").startswith("beta|"))
            comp.add_event_handler("message", got.put_nowait)
            bob = await two.login("alpha", "bob@localhost")
            try:
                bob.send_message(mto=f"echo@{DOMAIN}", mbody="from alpha", mtype="chat")
                m = await asyncio.wait_for(got.get(), 10)
                assert m["body"] == "from alpha" and m["from"] == bob.boundjid
            finally:
                await slix_close(bob)
    finally:
        await slix_close(alice)


def bus_added(two: Two, node: str) -> int:
    """Entries ever appended to ``node``'s bus stream (they are deleted once handled)."""
    r = _redis(two.redis_url)
    try:
        return int(r.xinfo_stream(f"{two.prefix}:bus:{node}")["entries-added"])
    finally:
        r.close()


async def test_forwarding_follows_a_moved_component_straight_to_its_new_node(two):
    """gamma remembers that the component is on alpha (no Redis read per stanza); it moves to
    beta, and alpha's and beta's invalidations (``component``, published after the lease's
    release and acquisition) make gamma forward to beta directly, not through alpha."""
    got: asyncio.Queue[Any] = asyncio.Queue()
    await two.start("gamma")
    for node in ("alpha", "beta"):
        await two.nodes["gamma"].wait_log(f"node {node} is up")
    bob = await two.login("gamma", "bob@localhost")
    try:
        async with slix_component(await component_port(two, "alpha"), DOMAIN, SECRET) as comp:
            await until(lambda: (lease(two) or "").startswith("alpha|"))
            comp.add_event_handler("message", got.put_nowait)
            for i in range(3):  # the first reads the lease; gamma remembers alpha for the others
                bob.send_message(mto=f"echo@{DOMAIN}", mbody=f"to alpha {i}", mtype="chat")
                assert (await asyncio.wait_for(got.get(), 10))["body"] == f"to alpha {i}"
        await until(lambda: lease(two) is None)
        async with slix_component(await component_port(two, "beta"), DOMAIN, SECRET) as comp:
            await until(lambda: (lease(two) or "").startswith("beta|"))
            comp.add_event_handler("message", got.put_nowait)
            via_alpha = bus_added(two, "alpha")
            bob.send_message(mto=f"echo@{DOMAIN}", mbody="to beta", mtype="chat")
            m = await asyncio.wait_for(got.get(), 10)
            assert m["body"] == "to beta" and m["from"] == bob.boundjid
            assert bus_added(two, "alpha") == via_alpha  # not forwarded through the old holder
    finally:
        await slix_close(bob)

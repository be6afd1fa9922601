"""One-to-one routing across nodes: the session registry and the bus (issue 17, docs/cluster.md).

Two real ``xmppd`` processes share one SQLite file and the shared Redis under a key prefix of the
test's own; alice logs in on node alpha, bob on node beta, each with slixmpp.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import slix, slix_close
from .procs import Two, redis_client, two_nodes

_redis = redis_client


@pytest.fixture
async def two(tmp_path: Path, prefix: str) -> AsyncIterator[Two]:
    async with two_nodes(Two(tmp_path, prefix)) as t:
        yield t


def _inbox(client: Any) -> asyncio.Queue[Any]:
    q: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler("message", lambda msg: q.put_nowait(msg) if msg["body"] else None)
    return q


async def _get(q: asyncio.Queue[Any]) -> Any:
    return await asyncio.wait_for(q.get(), 10)


async def test_chat_crosses_nodes_to_full_and_bare_jids_both_ways(two):
    alice = await two.login("alpha", "alice@localhost")
    bob = await two.login("beta", "bob@localhost")
    try:
        a_in, b_in = _inbox(alice), _inbox(bob)
        alice.send_message(mto=bob.boundjid.full, mbody="to your full JID", mtype="chat")
        msg = await _get(b_in)
        assert (msg["body"], msg["from"].full, msg["to"].full) == ("to your full JID", alice.boundjid.full, bob.boundjid.full)
        alice.send_message(mto="bob@localhost", mbody="to your bare JID", mtype="chat")
        msg = await _get(b_in)
        assert (msg["body"], msg["to"].full) == ("to your bare JID", "bob@localhost")
        bob.send_message(mto=alice.boundjid.full, mbody="back to your full JID", mtype="chat")
        assert (await _get(a_in))["body"] == "back to your full JID"
        bob.send_message(mto="alice@localhost", mbody="back to your bare JID", mtype="chat")
        assert (await _get(a_in))["body"] == "back to your bare JID"
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_a_bare_jid_message_goes_to_the_highest_priority_resource_whatever_its_node(two):
    alice = await two.login("alpha", "alice@localhost")
    bob_a = await two.login("alpha", "bob@localhost")  # on alice's node, priority 0
    bob_b = await slix(two.nodes["beta"].as_server(), "bob@localhost")
    try:
        in_a, in_b = _inbox(bob_a), _inbox(bob_b)
        bob_b.send_presence(ppriority=5)
        await two.wait_entry("bob@localhost", bob_b.boundjid.resource, "beta|", available=True, priority=5)
        alice.send_message(mto="bob@localhost", mbody="to the priority 5 one", mtype="chat")
        assert (await _get(in_b))["body"] == "to the priority 5 one"
        bob_a.send_presence(ppriority=9)  # now the local one wins
        await two.wait_entry("bob@localhost", bob_a.boundjid.resource, "alpha|", available=True, priority=9)
        alice.send_message(mto="bob@localhost", mbody="to the priority 9 one", mtype="chat")
        assert (await _get(in_a))["body"] == "to the priority 9 one"
        assert in_b.empty()
    finally:
        for c in (alice, bob_a, bob_b):
            await slix_close(c)


async def test_two_hundred_messages_from_one_sender_arrive_in_order_on_the_other_node(two):
    alice = await two.login("alpha", "alice@localhost")
    bob = await two.login("beta", "bob@localhost")
    try:
        b_in = _inbox(bob)
        for i in range(200):
            alice.send_message(mto=bob.boundjid.full if i % 2 else "bob@localhost", mbody=f"m{i}", mtype="chat")
        got = [(await _get(b_in))["body"] for _ in range(200)]
        assert got == [f"m{i}" for i in range(200)]
    finally:
        await slix_close(alice)
        await slix_close(bob)


@pytest.fixture
async def two_plain(tmp_path: Path, prefix: str) -> AsyncIterator[Two]:
    """Two nodes that let the raw client of the single-node tests in without TLS."""
    t = Two(tmp_path, prefix)
    t.args += ["--set", "c2s.require_tls=false", "--set", "smacks.request_every=0"]
    async with two_nodes(t) as t:
        yield t


async def test_the_recipients_node_runs_its_delivery_hooks_on_the_bytes_that_crossed(two_plain):
    """A message from another node goes to the socket as the bytes that crossed (docs/cluster.md
    §3, §9), and the recipient's node's DELIVER hooks still see the element when they need it:
    XEP-0352 (CSI) holds a chat state for bob's inactive client and lets a message with a body
    through after it; active again, the next chat state comes at once."""
    from ..features.smacks_support import SmClient

    two = two_plain
    C, CSI = "{jabber:client}", "urn:xmpp:csi:0"
    bob = await SmClient.authenticate(two.nodes["beta"].as_server(), "bob")
    await bob.bind("phone")
    bob.write("<presence/>")
    await two.wait_entry("bob@localhost", "phone", "beta|", available=True)
    alice = await two.login("alpha", "alice@localhost")

    def composing() -> None:
        m = alice.make_message(mto="bob@localhost/phone", mtype="chat")
        m.xml.append(ET.fromstring("<composing xmlns='http://jabber.org/protocol/chatstates'/>"))
        m.send()

    async def ping(n: int) -> None:  # a round trip on bob's stream: what he wrote before is handled
        bob.write(f"<iq type='get' id='p{n}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        await bob.expect(lambda e: e.get("id") == f"p{n}", count=False)

    def is_msg(e: Any) -> bool:
        return e.tag == f"{C}message"

    try:
        m1 = alice.make_message(mto="bob@localhost/phone", mbody="caf\u00e9 & <one>", mtype="chat")
        m1["id"] = "m1"
        m1.send()
        got = await bob.expect(is_msg, timeout=10)
        assert (got.findtext(f"{C}body"), got.get("from"), got.get("to"), got.get("type"), got.get("id")) == \
            ("caf\u00e9 & <one>", alice.boundjid.full, "bob@localhost/phone", "chat", "m1")
        bob.write(f"<inactive xmlns='{CSI}'/>")
        await ping(1)
        composing()
        assert [e for e in await bob.drain(1.0) if is_msg(e)] == []  # held on beta
        alice.send_message(mto="bob@localhost/phone", mbody="two", mtype="chat")
        first = await bob.expect(is_msg, timeout=10)
        second = await bob.expect(is_msg, timeout=10)
        assert first.find("{http://jabber.org/protocol/chatstates}composing") is not None and first.findtext(f"{C}body") is None
        assert second.findtext(f"{C}body") == "two"
        bob.write(f"<active xmlns='{CSI}'/>")
        await ping(2)
        composing()
        got = await bob.expect(is_msg, timeout=10)
        assert got.find("{http://jabber.org/protocol/chatstates}composing") is not None
    finally:
        await slix_close(alice)
        await bob.close()


async def test_an_iq_to_a_full_jid_on_the_other_node_is_answered_and_a_gone_one_bounced(two):
    alice = await two.login("alpha", "alice@localhost", plugins=("xep_0199",))
    bob = await two.login("beta", "bob@localhost", plugins=("xep_0199",))
    try:
        await alice.plugin["xep_0199"].send_ping(bob.boundjid.full, timeout=10)  # bob's client answers
        await bob.plugin["xep_0199"].send_ping(alice.boundjid.full, timeout=10)
        from slixmpp.exceptions import IqError

        with pytest.raises(IqError) as err:
            await alice.plugin["xep_0199"].send_ping("bob@localhost/nowhere", timeout=10)
        assert err.value.condition == "service-unavailable"
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_a_message_for_a_user_who_left_the_other_node_is_stored_and_delivered_at_login_anywhere(two):
    alice = await two.login("alpha", "alice@localhost")
    bob = await two.login("beta", "bob@localhost")
    resource = bob.boundjid.resource
    await slix_close(bob)
    await two.wait_entry("bob@localhost", resource, None)
    try:
        alice.send_message(mto="bob@localhost", mbody="while you were away", mtype="chat")
        alice.send_message(mto=f"bob@localhost/{resource}", mbody="to your old resource", mtype="chat")
        await asyncio.sleep(0.5)  # stored by alpha (no timing assertion: the login below checks)
        bob = await slix(two.nodes["alpha"].as_server(), "bob@localhost")
        b_in = _inbox(bob)
        bob.send_presence()  # initial presence: the offline messages come
        got = sorted([(await _get(b_in))["body"], (await _get(b_in))["body"]])
        assert got == ["to your old resource", "while you were away"]
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_a_killed_nodes_sessions_leave_the_registry_and_messages_to_them_go_offline(two):
    alice = await two.login("alpha", "alice@localhost")
    bob = await two.login("beta", "bob@localhost")
    resource = bob.boundjid.resource
    try:
        beta = two.nodes["beta"]
        beta.proc.send_signal(signal.SIGKILL)
        await beta.wait()
        # Before alpha notices (node_timeout, 4 s): still routed to beta's stream, where the
        # survivor's cleanup finds it.
        alice.send_message(mto=f"bob@localhost/{resource}", mbody="while beta was dying", mtype="chat")
        await two.nodes["alpha"].wait_log(r"cleaned up after node beta: 1 sessions removed from the registry, 1 stanzas of its bus handled here", timeout=15)
        await two.wait_entry("bob@localhost", resource, None, timeout=1)
        r = _redis()
        assert not r.exists(f"{two.prefix}:nsess:beta", f"{two.prefix}:sess:bob@localhost", f"{two.prefix}:bus:beta")
        r.close()
        alice.send_message(mto="bob@localhost", mbody="after beta died", mtype="chat")
        await asyncio.sleep(0.5)
        with contextlib.suppress(Exception):
            bob.abort()
        bob = await slix(two.nodes["alpha"].as_server(), "bob@localhost")
        b_in = _inbox(bob)
        bob.send_presence()
        assert [(await _get(b_in))["body"], (await _get(b_in))["body"]] == ["while beta was dying", "after beta died"]
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_while_redis_is_down_local_delivery_goes_on_and_remote_stanzas_are_stored_or_bounced(tmp_path, private_redis):
    from slixmpp.exceptions import IqError

    async with two_nodes(Two(tmp_path, "xmppd", private_redis.url)) as two:
        alice = await two.login("alpha", "alice@localhost", plugins=("xep_0199",))
        alice2 = await two.login("alpha", "alice@localhost")
        bob = await two.login("beta", "bob@localhost")
        b_in, a2_in = _inbox(bob), _inbox(alice2)
        try:
            private_redis.stop()
            await two.nodes["alpha"].wait_log("cluster bus of node alpha cannot read")
            alice.send_message(mto=alice2.boundjid.full, mbody="local, Redis or not", mtype="chat")
            assert (await _get(a2_in))["body"] == "local, Redis or not"
            alice.send_message(mto="bob@localhost", mbody="during the outage", mtype="chat")
            with pytest.raises(IqError) as err:
                await alice.plugin["xep_0199"].send_ping(bob.boundjid.full, timeout=10)
            assert err.value.condition == "service-unavailable"
            await two.nodes["alpha"].wait_log("Redis unreachable .*: stanzas for other nodes' sessions go to offline storage")

            private_redis.start()  # empty: every node publishes its sessions again
            await two.wait_entry("bob@localhost", bob.boundjid.resource, "beta|", available=True)
            await two.wait_entry("alice@localhost", alice.boundjid.resource, "alpha|", available=True)
            alice.send_message(mto="bob@localhost", mbody="after the outage", mtype="chat")
            assert (await _get(b_in))["body"] == "after the outage"
            assert b_in.empty()  # the outage's message was stored, not delivered twice
            bob2 = await slix(two.nodes["alpha"].as_server(), "bob@localhost")
            b2_in = _inbox(bob2)
            bob2.send_presence()
            assert (await _get(b2_in))["body"] == "during the outage"
            await slix_close(bob2)
        finally:
            for c in (alice, alice2, bob):
                await slix_close(c)

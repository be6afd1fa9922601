"""Sessions counted across nodes (issue 17, docs/cluster.md §3): the per-account limit counts
every node's sessions, a second bind of a full JID on another node replaces the first (the old
node closes it with ``conflict``), XEP-0133's online users are the cluster's.

Real ``xmppd`` processes (tests/cluster/test_routing.py's ``Two``); slixmpp clients.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from xmppd.features.admin import node
from xmppd.jid import JID

from ..aiox import aioxmpp_client
from ..features.test_adhoc import PLUGINS, form_of, run, xform
from ..features.test_admin import watch_end
from ..helpers import slix, slix_close
from .procs import Two, two_nodes


@pytest.fixture
async def two(tmp_path: Path, prefix: str) -> AsyncIterator[Two]:
    t = Two(tmp_path, prefix)
    t.args += ["--set", "c2s.max_sessions_per_account=2", "--set", 'server.admins=["boss@localhost"]']
    t.users.append("boss")
    async with two_nodes(t) as t:
        yield t


async def test_the_per_account_session_limit_counts_every_nodes_sessions(two):
    a1 = await two.login("alpha", "alice@localhost")
    a2 = await two.login("beta", "alice@localhost")
    try:
        # a third, on alpha (which holds one): refused at bind, with aioxmpp
        with pytest.raises(Exception, match="resource-constraint|resource-limit-exceeded"):
            async with asyncio.timeout(20):
                async with aioxmpp_client(two.nodes["alpha"].as_server(), "alice@localhost"):
                    pass
        await slix_close(a2)
        await two.wait_entry("alice@localhost", a2.boundjid.resource, None)
        a3 = await slix(two.nodes["alpha"].as_server(), "alice@localhost")  # room again
        await slix_close(a3)
    finally:
        await slix_close(a1)
        await slix_close(a2)


async def test_binding_a_full_jid_bound_on_another_node_replaces_it_with_conflict(two):
    bob = await two.login("alpha", "bob@localhost")
    old = await slix(two.nodes["alpha"].as_server(), "alice@localhost/phone")
    new = None
    try:
        ended = watch_end(old)
        old.send_presence(pstatus="old phone")
        await two.wait_entry("alice@localhost", "phone", "alpha|", available=True)
        new = await slix(two.nodes["beta"].as_server(), "alice@localhost/phone")
        assert new.boundjid.full == "alice@localhost/phone"
        assert await asyncio.wait_for(ended, 10) == "conflict"
        await two.wait_entry("alice@localhost", "phone", "beta|")
        await two.nodes["alpha"].wait_log("replaced by a new session for the same resource on node beta")
        b_in: asyncio.Queue[Any] = asyncio.Queue()
        bob.add_event_handler("message", lambda m: b_in.put_nowait(m) if m["body"] else None)
        got: asyncio.Queue[Any] = asyncio.Queue()
        new.add_event_handler("message", lambda m: got.put_nowait(m) if m["body"] else None)
        bob.send_message(mto="alice@localhost/phone", mbody="to the new phone", mtype="chat")
        assert (await asyncio.wait_for(got.get(), 10))["body"] == "to the new phone"
    finally:
        for c in (bob, old, new):
            if c is not None:
                await slix_close(c)


async def test_admin_online_users_count_and_list_are_cluster_wide(two):
    admin = await slix(two.nodes["alpha"].as_server(), "boss@localhost", plugins=PLUGINS)
    alice = await two.login("beta", "alice@localhost")
    bob = await two.login("beta", "bob@localhost")
    try:
        await two.wait_entry("boss@localhost", admin.boundjid.resource, "alpha|")
        done = await run(admin, node("get-online-users-num"))
        assert xform(done).field("onlineusersnum").values == ("3",)
        first = await run(admin, node("get-online-users-list"))
        done = await run(admin, node("get-online-users-list"), action="complete", sessionid=first.get("sessionid"),
                         payload=form_of(admin, max_items="none"))
        assert xform(done).field("onlineuserjids").value() == [JID.parse(j) for j in ("alice@localhost", "bob@localhost", "boss@localhost")]
        await slix_close(bob)
        await two.wait_entry("bob@localhost", bob.boundjid.resource, None)
        done = await run(admin, node("get-online-users-num"))
        assert xform(done).field("onlineusersnum").values == ("2",)
    finally:
        for c in (admin, alice, bob):
            await slix_close(c)

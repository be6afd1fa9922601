"""The REST API's sessions of a user under a cluster (issue 17, docs/cluster.md §3, docs/api.md):
the list covers every node's sessions (the registry), a kick ends a session on another node
(a control envelope on that node's bus), and disabling an account ends its sessions everywhere.

Two real ``xmppd`` processes (tests/cluster/test_routing.py's ``Two``), each with the REST API on
a port of its own; slixmpp clients on both nodes; the API called on alpha.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ..features.test_admin import watch_end
from ..helpers import slix_close
from .procs import Two, two_nodes


@pytest.fixture
async def two(tmp_path: Path, prefix: str) -> AsyncIterator[Two]:
    t = Two(tmp_path, prefix)
    t.api = True
    async with two_nodes(t) as t:
        yield t


async def test_the_sessions_list_covers_every_node_and_a_kick_ends_one_on_another_node(two):
    here = await two.login("alpha", "alice@localhost")
    there = await two.login("beta", "alice@localhost")
    idle = await two.login("beta", "alice@localhost", available=False)
    await two.wait_entry("alice@localhost", idle.boundjid.resource, "beta|")
    try:
        status, body = await two.call("alpha", "GET", "/users/alice/sessions")
        assert status == 200, body
        by_resource = {i["resource"]: i for i in body["items"]}
        assert set(by_resource) == {here.boundjid.resource, there.boundjid.resource, idle.boundjid.resource}
        mine = by_resource[here.boundjid.resource]
        assert mine["node"] == "alpha" and mine["transport"] == "tcp" and mine["address"] and mine["available"]
        theirs = by_resource[there.boundjid.resource]
        assert theirs == {"jid": there.boundjid.full, "resource": there.boundjid.resource, "node": "beta",
                          "transport": None, "address": None, "available": True, "priority": 0,
                          "connected_seconds": None}
        assert by_resource[idle.boundjid.resource]["available"] is False

        # one session on beta, kicked through alpha's API
        ended = watch_end(there)
        status, body = await two.call("alpha", "DELETE", f"/users/alice/sessions/{there.boundjid.resource}")
        assert (status, body) == (200, {"ended": 1})
        assert await asyncio.wait_for(ended, 10) == "policy-violation"
        await two.nodes["beta"].wait_log(r"ended from node alpha \(policy-violation\)")
        status, body = await two.call("alpha", "GET", "/users/alice/sessions")
        assert {i["resource"] for i in body["items"]} == {here.boundjid.resource, idle.boundjid.resource}
        # a resource bound nowhere: 404, as on one node
        status, body = await two.call("alpha", "DELETE", "/users/alice/sessions/nowhere")
        assert status == 404 and body["error"]["code"] == "session_not_found", body

        # every session, both nodes
        ends = [watch_end(here), watch_end(idle)]
        status, body = await two.call("alpha", "DELETE", "/users/alice/sessions")
        assert (status, body) == (200, {"ended": 2})
        assert await asyncio.wait_for(asyncio.gather(*ends), 10) == ["policy-violation", "policy-violation"]
        await two.wait_entry("alice@localhost", idle.boundjid.resource, None)
        status, body = await two.call("beta", "GET", "/users/alice/sessions")
        assert (status, body) == (200, {"items": []})
    finally:
        for c in (here, there, idle):
            await slix_close(c)


async def test_disabling_an_account_ends_its_sessions_on_every_node(two):
    bob = await two.login("beta", "bob@localhost")
    try:
        ended = watch_end(bob)
        status, body = await two.call("alpha", "POST", "/users/bob/disable", json={"reason": "spam"})
        assert status == 200 and body["disabled"] is True, body
        assert await asyncio.wait_for(ended, 10) == "not-authorized"
        await two.wait_entry("bob@localhost", bob.boundjid.resource, None)
    finally:
        await slix_close(bob)

"""The MUC service's own lists across nodes (issue 17, docs/cluster.md §5): the service's
disco#items lists the public rooms every node holds (persistent rooms from the database), a
user's ``urn:xmpp:mucsub:0`` subscriptions include rooms held by another node, and
``muc.max_rooms_per_user`` counts the rooms the user owns on every node.

Two real ``xmppd`` processes (tests/cluster/test_rooms.py's ``Three`` with two nodes); slixmpp
clients; room names chosen so that each node holds one (rendezvous hashing).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slixmpp import ET
from slixmpp.exceptions import PresenceError

from ..features.muc_support import configure
from .test_rooms import MESSAGES_NODE, MUCSUB, Three, join, room_owned_by, three_nodes

NODES = ("alpha", "beta")


@pytest.fixture
async def two(tmp_path: Path, prefix: str) -> AsyncIterator[Three]:
    t = Three(tmp_path, prefix)
    t.args += ["--set", "muc.max_rooms_per_user=2"]
    async with three_nodes(t, NODES) as t:
        yield t


async def test_service_lists_and_limits_cover_every_nodes_rooms(two):
    alice = await two.login("alpha", "alice")
    bob = await two.login("beta", "bob")
    on_alpha = room_owned_by("alpha", "here", NODES)
    on_beta = room_owned_by("beta", "there", NODES)
    for room, name in ((on_alpha, "Alpha Room"), (on_beta, "Beta Room")):
        await join(alice, room, "alice")
        await configure(alice, room, name=name, persistent=True, public=True)
    assert two.owner(on_alpha) == "alpha" and two.owner(on_beta) == "beta"
    hidden = room_owned_by("beta", "hidden", NODES)

    # disco#items of the service, asked on either node: both rooms
    for client in (alice, bob):
        items = await client.plugin["xep_0030"].get_items(jid="conference.localhost", timeout=10)
        listed = {(jid, name) for jid, _node, name in items["disco_items"]["items"]}
        assert listed == {(on_alpha, "Alpha Room"), (on_beta, "Beta Room")}, listed

    # MUC/Sub: bob (beta) subscribes to the room on alpha; his list, answered on beta, has it
    iq = bob.make_iq_set(ito=on_alpha)
    sub = ET.SubElement(iq.xml, f"{{{MUCSUB}}}subscribe", {"nick": "bobby"})
    ET.SubElement(sub, f"{{{MUCSUB}}}event", {"node": MESSAGES_NODE})
    await iq.send(timeout=10)
    iq = bob.make_iq_get(ito="conference.localhost")
    ET.SubElement(iq.xml, f"{{{MUCSUB}}}subscriptions")
    res = await iq.send(timeout=10)
    subs = res.xml.find(f"{{{MUCSUB}}}subscriptions")
    assert [(s.get("jid"), s.get("nick")) for s in subs] == [(on_alpha, "bobby")]
    assert [e.get("node") for e in subs[0]] == [MESSAGES_NODE]

    # max_rooms_per_user = 2: alice owns one room on each node, a third is refused on beta
    with pytest.raises(PresenceError) as err:
        await alice.plugin["xep_0045"].join_muc_wait(hidden, "alice", timeout=10)
    assert err.value.condition == "not-allowed"
    # bob, who owns none, may create it
    await join(bob, hidden, "bob")
    assert two.owner(hidden) == "beta"

    # a public temporary room lives only in beta's memory: alpha's list names it too (beta
    # publishes its temporary rooms after each heartbeat), and drops it once it is destroyed
    temporary = room_owned_by("beta", "fleeting", NODES)
    await join(bob, temporary, "bob")
    await configure(bob, temporary, name="Fleeting", persistent=False, public=True)
    await _until_listed(alice, (temporary, "Fleeting"), True)
    await bob.plugin["xep_0045"].destroy(temporary, timeout=10)
    await _until_listed(alice, (temporary, "Fleeting"), False)


async def _until_listed(client, item: tuple[str, str], present: bool) -> None:
    async with asyncio.timeout(10):
        while True:
            items = await client.plugin["xep_0030"].get_items(jid="conference.localhost", timeout=10)
            if (item in {(jid, name) for jid, _node, name in items["disco_items"]["items"]}) == present:
                return
            await asyncio.sleep(0.1)

"""Rooms across nodes (issue 17, docs/cluster.md §5): one room, occupants on THREE nodes.

Three real ``xmppd`` processes (alpha, beta, gamma) share one SQLite file and the shared Redis
under a key prefix of the test's own; slixmpp clients log in on different nodes. The room lives
on one node (the holder of ``P:lease:room:<jid>``); the others forward its stanzas there through
the bus, and the owner reaches the occupants on the other nodes through ``Router.fan_out``.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream import ET

from xmppd.cluster.leases import rendezvous
from xmppd_extensions.mute import slixmpp_plugin as mute_plugin

from ..features.muc_support import PLUGINS, Inbox, codes, configure
from ..helpers import PASSWORD, slix, slix_close
from .conftest import PrivateRedis
from .procs import SHARED_REDIS, Two, add_users, redis_client, status_rows, xmppctl

NODES = ("alpha", "beta", "gamma")
USERS = ("alice", "bob", "carol", "dave", "erin", "frank")
MUCSUB = "urn:xmpp:mucsub:0"
MESSAGES_NODE = "urn:xmpp:mucsub:nodes:messages"
PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"


def room_owned_by(node: str, stem: str, nodes: tuple[str, ...] = NODES) -> str:
    """A room JID whose preferred owner (rendezvous hashing over ``nodes``) is ``node``."""
    for i in range(1000):
        jid = f"{stem}{i}@conference.localhost"
        if rendezvous(list(nodes), jid) == node:
            return jid
    raise AssertionError("no such room name")


_redis = redis_client


class Three(Two):
    """``Two``'s nodes (alpha, beta, gamma here), with the rooms' clients (slixmpp with the MUC
    plugins and an inbox), closed at the end."""

    def __init__(self, tmp: Path, prefix: str, redis_url: str = SHARED_REDIS) -> None:
        super().__init__(tmp, prefix, redis_url)
        self.users = list(USERS)
        self.clients: list[Any] = []

    async def login(self, node: str, user: str) -> Any:  # type: ignore[override]
        c = await slix(self.nodes[node].as_server(), f"{user}@localhost", plugins=PLUGINS)
        c.register_plugin("mute", module=mute_plugin)
        c.inbox = Inbox(c)
        c.send_presence()
        self.clients.append(c)
        await self.wait_available(f"{user}@localhost", c.boundjid.resource, node)
        return c

    async def wait_available(self, bare: str, resource: str, node: str, timeout: float = 15) -> None:
        r = _redis(self.redis_url)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    value = r.hget(f"{self.prefix}:sess:{bare}", resource) or ""
                    if value.startswith(f"{node}|") and value.endswith("|1"):
                        return
                    await asyncio.sleep(0.05)
        finally:
            r.close()

    def owner(self, room: str, kind: str = "room") -> str | None:
        """The node holding the lease ``kind:<room>`` (``csq``: a customer-service queue)."""
        r = _redis(self.redis_url)
        try:
            value = r.get(f"{self.prefix}:lease:{kind}:{room}")
        finally:
            r.close()
        return value.rpartition("|")[0] if value else None


@contextlib.asynccontextmanager
async def three_nodes(t: Three, nodes: tuple[str, ...] = NODES) -> AsyncIterator[Three]:
    await add_users(t.storage, t.tmp, USERS, PASSWORD)
    try:
        for name in nodes:
            await t.start(name)
        for name in nodes:
            for other in nodes:
                if other != name:
                    await t.nodes[name].wait_log(f"node {other} is up")
        yield t
    finally:
        for c in t.clients:
            with contextlib.suppress(Exception):
                await slix_close(c)
        for proc in t.nodes.values():
            await proc.close()
        import os
        if os.environ.get("XMPPD_TEST_DUMP"):
            for name, proc in t.nodes.items():
                print(f"===== {name}\n{proc.log}")
    for proc in t.nodes.values():
        assert "Traceback" not in proc.log, proc.log


@pytest.fixture
async def three(tmp_path: Path, prefix: str) -> AsyncIterator[Three]:
    async with three_nodes(Three(tmp_path, prefix)) as t:
        yield t


def presence_of(room: str, nick: str, typ: str | None = None) -> Any:
    return lambda p: p["from"].full == f"{room}/{nick}" and (typ is None or p["type"] == typ)


def groupchat(body: str) -> Any:
    return lambda m: m["type"] == "groupchat" and m["body"] == body


def room_name(info: Any) -> str:
    (identity,) = info["disco_info"]["identities"]
    return identity[3]


async def join(c: Any, room: str, nick: str) -> Any:
    pres, *_ = await c.plugin["xep_0045"].join_muc_wait(room, nick, timeout=10)
    return pres


async def self_ping(c: Any, room: str, nick: str) -> None:
    await c.plugin["xep_0199"].send_ping(f"{room}/{nick}", timeout=10)


async def test_one_room_with_occupants_on_three_nodes(three):
    """Join, presence, messages, subject, history, configuration, kick, ban, MUC/Sub, mute and
    leave: every occupant sees one room, whichever node it is on and whichever node owns it."""
    room = room_owned_by("gamma", "club")
    alice = await three.login("alpha", "alice")
    bob = await three.login("beta", "bob")
    carol = await three.login("gamma", "carol")
    pres = await join(alice, room, "alice")  # alpha forwards to gamma, the preferred owner, which creates it
    assert "201" in codes(pres)
    assert three.owner(room) == "gamma"
    await configure(alice, room, name="The Club", persistent=True, history=10)

    pres = await join(bob, room, "bob")
    assert pres["muc"]["role"] == "participant"
    await alice.inbox.presence(presence_of(room, "bob"), timeout=10)
    await join(carol, room, "carol")
    await alice.inbox.presence(presence_of(room, "carol"), timeout=10)
    await bob.inbox.presence(presence_of(room, "carol"), timeout=10)

    # messages: one order for everyone
    for i in range(5):
        alice.send_message(mto=room, mbody=f"hello {i}", mtype="groupchat")
    for c in (alice, bob, carol):
        got = [(await c.inbox.message(lambda m: m["type"] == "groupchat" and m["body"].startswith("hello"), timeout=10))["body"] for _ in range(5)]
        assert got == [f"hello {i}" for i in range(5)]
    bob.send_message(mto=room, mbody="from beta", mtype="groupchat")
    for c in (alice, carol):
        m = await c.inbox.message(groupchat("from beta"), timeout=10)
        assert m["from"].full == f"{room}/bob"

    # subject
    alice.send_message(mto=room, msubject="Cluster talk", mtype="groupchat")
    for c in (bob, carol):
        m = await c.inbox.message(lambda m: m["subject"] == "Cluster talk", timeout=10)
        assert m["from"].full == f"{room}/alice"

    # history and subject for a late joiner on yet another node's session
    dave = await three.login("beta", "dave")
    await join(dave, room, "dave")
    hist = [await dave.inbox.message(lambda m: m["type"] == "groupchat" and m["body"], timeout=10) for _ in range(6)]
    assert [m["body"] for m in hist] == [*(f"hello {i}" for i in range(5)), "from beta"]
    assert all(m["delay"]["stamp"] for m in hist)
    assert (await dave.inbox.message(lambda m: m["subject"], timeout=10))["subject"] == "Cluster talk"

    # configuration: only the owner; the change is seen from every node
    with pytest.raises(IqError) as err:
        await bob.plugin["xep_0045"].get_room_config(room)
    assert err.value.condition == "forbidden"
    await configure(alice, room, name="The Cluster Club", persistent=True, history=10)
    info = await carol.plugin["xep_0030"].get_info(jid=room, timeout=10)
    assert room_name(info) == "The Cluster Club"

    # kick (role none) and ban (outcast), by the owner on alpha, of dave on beta
    await alice.plugin["xep_0045"].set_role(room, "dave", "none", reason="be quiet")
    p = await dave.inbox.presence(presence_of(room, "dave", "unavailable"), timeout=10)
    assert "307" in codes(p) and "110" in codes(p)
    p = await carol.inbox.presence(presence_of(room, "dave", "unavailable"), timeout=10)
    assert "307" in codes(p)
    await join(dave, room, "dave")
    await alice.inbox.presence(presence_of(room, "dave"), timeout=10)
    await alice.plugin["xep_0045"].set_affiliation(room, "outcast", jid="dave@localhost", reason="spam")
    p = await dave.inbox.presence(presence_of(room, "dave", "unavailable"), timeout=10)
    assert "301" in codes(p)
    await bob.inbox.presence(lambda p: p["from"].full == f"{room}/dave" and "301" in codes(p), timeout=10)
    with pytest.raises(Exception) as joined:
        await join(dave, room, "dave")
    assert "forbidden" in str(joined.value) or "TimeoutError" in type(joined.value).__name__

    # MUC/Sub: erin on gamma subscribes without joining and gets the room's messages as events
    erin = await three.login("gamma", "erin")
    iq = erin.make_iq_set(ito=room)
    sub = ET.SubElement(iq.xml, f"{{{MUCSUB}}}subscribe", {"nick": "erin"})
    ET.SubElement(sub, f"{{{MUCSUB}}}event", {"node": MESSAGES_NODE})
    await iq.send(timeout=10)
    bob.send_message(mto=room, mbody="for subscribers too", mtype="groupchat")

    def event_with(body: str) -> Any:
        def pred(m: Any) -> bool:
            inner = m.xml.find(f"{{{PUBSUB_EVENT}}}event/{{{PUBSUB_EVENT}}}items/{{{PUBSUB_EVENT}}}item/{{jabber:client}}message")
            return inner is not None and inner.findtext("{jabber:client}body") == body
        return pred

    ev = await erin.inbox.message(event_with("for subscribers too"), timeout=10)
    assert ev["from"].bare == room
    iq = alice.make_iq_get(ito=room)  # a moderator lists the subscribers
    ET.SubElement(iq.xml, f"{{{MUCSUB}}}subscriptions")
    res = await iq.send(timeout=10)
    subs = res.xml.find(f"{{{MUCSUB}}}subscriptions")
    assert "erin" in {(s.get("nick") or "") for s in subs}, str(res)

    # mute (extensions/mute through the room's SPEECH event): carol on gamma is muted by alice on alpha
    await alice.plugin["mute"].mute(room, nick="carol", seconds=600, reason="cool down")
    carol.send_message(mto=room, mbody="can I talk?", mtype="groupchat")
    err_msg = await carol.inbox.message(lambda m: m["type"] == "error", timeout=10)
    assert err_msg["error"]["condition"] == "forbidden"
    await alice.plugin["mute"].unmute(room, nick="carol")
    carol.send_message(mto=room, mbody="now I can", mtype="groupchat")
    await bob.inbox.message(groupchat("now I can"), timeout=10)

    # a private message through the room, from beta to gamma, and an answer back
    bob.send_message(mto=f"{room}/carol", mbody="psst", mtype="chat")
    pm = await carol.inbox.message(lambda m: m["body"] == "psst", timeout=10)
    assert pm["from"].full == f"{room}/bob" and pm["type"] == "chat"
    carol.send_message(mto=f"{room}/bob", mbody="yes?", mtype="chat")
    assert (await bob.inbox.message(lambda m: m["body"] == "yes?", timeout=10))["from"].full == f"{room}/carol"

    # leave: the others see it; a session that closes leaves too
    carol.send_presence(pto=f"{room}/carol", ptype="unavailable")
    await alice.inbox.presence(presence_of(room, "carol", "unavailable"), timeout=10)
    await slix_close(bob)
    three.clients.remove(bob)
    await alice.inbox.presence(presence_of(room, "bob", "unavailable"), timeout=10)

    # every stanza for the room went through gamma; the registry counts its room
    assert three.owner(room) == "gamma"
    out = xmppctl("--set", f"cluster.redis_url={three.redis_url}", "--set", f"cluster.prefix={three.prefix}", "cluster", "status", cwd=three.tmp)
    rows = status_rows(out.stdout)
    assert rows["gamma"]["ROOMS"] == "1" and rows["alpha"]["ROOMS"] == "0" and rows["beta"]["ROOMS"] == "0", out.stdout


async def test_the_owner_is_killed_the_room_comes_back_elsewhere_and_occupants_rejoin(three):
    """SIGKILL of the owner: the occupants on the other nodes get an unavailable presence (332,
    "join again"), self-pings are answered not-acceptable until they rejoin, and the persistent
    room (name, affiliations, subject, subscribers) is loaded by a survivor."""
    room = room_owned_by("gamma", "hall")
    alice = await three.login("alpha", "alice")
    bob = await three.login("beta", "bob")
    carol = await three.login("gamma", "carol")
    await join(alice, room, "alice")
    await configure(alice, room, name="Survivors", persistent=True, members_only=False)
    await alice.plugin["xep_0045"].set_affiliation(room, "admin", jid="bob@localhost")
    alice.send_message(mto=room, msubject="Still here", mtype="groupchat")
    await join(bob, room, "bob")
    await join(carol, room, "carol")
    await self_ping(alice, room, "alice")  # joined: answered
    assert three.owner(room) == "gamma"
    bob.send_message(mto=room, mbody="before the crash", mtype="groupchat")
    await alice.inbox.message(groupchat("before the crash"), timeout=10)

    gamma = three.nodes["gamma"]
    gamma.proc.send_signal(signal.SIGKILL)
    await gamma.wait()
    for c, nick in ((alice, "alice"), (bob, "bob")):
        p = await c.inbox.presence(lambda p, nick=nick: p["from"].full == f"{room}/{nick}" and p["type"] == "unavailable", timeout=20)
        assert "332" in codes(p) and "join it again" in p["status"]
    for c, nick in ((alice, "alice"), (bob, "bob")):
        with pytest.raises(IqError) as err:
            await self_ping(c, room, nick)
        assert err.value.condition == "not-acceptable"

    pres = await join(alice, room, "alice")  # a survivor acquires the room and loads it
    assert pres["muc"]["affiliation"] == "owner"
    assert three.owner(room) in ("alpha", "beta")
    # the history sent on join comes back from the archive (MAM stores the room's messages)
    old = await alice.inbox.message(lambda m: m["body"] == "before the crash" and m.xml.find("{urn:xmpp:delay}delay") is not None, timeout=10)
    assert old["from"].full == f"{room}/bob"
    subject = await alice.inbox.message(lambda m: m["subject"], timeout=10)
    assert subject["subject"] == "Still here"
    await self_ping(alice, room, "alice")
    with pytest.raises(IqError) as err:
        await self_ping(bob, room, "bob")  # bob has not rejoined yet
    assert err.value.condition == "not-acceptable"
    pres = await join(bob, room, "bob")
    assert pres["muc"]["affiliation"] == "admin"
    await self_ping(bob, room, "bob")
    info = await bob.plugin["xep_0030"].get_info(jid=room, timeout=10)
    assert room_name(info) == "Survivors"
    alice.send_message(mto=room, mbody="we are back", mtype="groupchat")
    await bob.inbox.message(groupchat("we are back"), timeout=10)
    new_owner = three.owner(room)
    await three.nodes["alpha" if new_owner == "beta" else "beta"].wait_log(r"node gamma is down")
    assert f"room {room} now lives on node {new_owner}" in three.nodes[new_owner].log


async def test_a_temporary_room_dies_with_its_node(three):
    room = room_owned_by("gamma", "tmp")
    alice = await three.login("alpha", "alice")
    await join(alice, room, "alice")
    await configure(alice, room, persistent=False)
    three.nodes["gamma"].proc.send_signal(signal.SIGKILL)
    await three.nodes["gamma"].wait()
    p = await alice.inbox.presence(presence_of(room, "alice", "unavailable"), timeout=20)
    assert "332" in codes(p)
    while three.owner(room) is not None:  # noqa: ASYNC110 - the dead node's lease expires (node_timeout)
        await asyncio.sleep(0.2)
    info = alice.make_iq_get(ito=room)
    ET.SubElement(info.xml, "{http://jabber.org/protocol/disco#info}query")
    with pytest.raises(IqError) as err:
        await info.send(timeout=10)
    assert err.value.condition == "item-not-found"
    assert three.owner(room) is None  # nothing acquired it for good


async def test_a_graceful_stop_stores_the_room_and_releases_its_lease(three):
    room = room_owned_by("gamma", "move")
    alice = await three.login("alpha", "alice")
    await join(alice, room, "alice")
    await configure(alice, room, name="Moving", persistent=True)
    alice.send_message(mto=room, msubject="Before the move", mtype="groupchat")
    await alice.inbox.message(lambda m: m["subject"] == "Before the move", timeout=10)
    gamma = three.nodes["gamma"]
    gamma.proc.send_signal(signal.SIGTERM)
    assert await gamma.wait() == 0
    assert three.owner(room) is None  # released at once, not left to expire
    p = await alice.inbox.presence(presence_of(room, "alice", "unavailable"), timeout=10)
    assert "332" in codes(p)
    await join(alice, room, "alice")
    assert three.owner(room) in ("alpha", "beta")
    assert (await alice.inbox.message(lambda m: m["subject"], timeout=10))["subject"] == "Before the move"
    info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=10)
    assert room_name(info) == "Moving"


async def test_a_stanza_for_a_room_whose_node_just_left_is_not_lost(tmp_path: Path, prefix: str):
    """The race behind the graceful-move bug: gamma, the room's owner, stops; beta notices at
    once (fast heartbeat) and drains gamma's stream; alpha (heartbeat 4 s) still counts gamma
    among its peers and remembers it as the room's owner when alice's disco#info arrives. The
    forward to gamma must not land in a stream nobody reads any more: it is refused (gamma is no
    longer registered), and alpha locates the room again and answers."""
    t = Three(tmp_path, prefix)
    t.node_args["alpha"] = ["--set", "cluster.heartbeat=4", "--set", "cluster.node_timeout=12"]
    async with three_nodes(t):
        room = room_owned_by("gamma", "race")
        alice = await t.login("alpha", "alice")
        await join(alice, room, "alice")
        await configure(alice, room, name="Racing", persistent=True)
        info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=10)  # alpha remembers gamma
        gamma = t.nodes["gamma"]
        gamma.proc.send_signal(signal.SIGTERM)
        assert await gamma.wait() == 0
        await t.nodes["beta"].wait_log(r"cleaned up after node gamma")
        info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=10)
        assert room_name(info) == "Racing"
        await t.nodes["alpha"].wait_log(rf"room {room}: the node a stanza was for is no longer registered")


async def test_room_messages_cost_one_publish_per_node_not_per_occupant(tmp_path: Path, prefix: str, private_redis: PrivateRedis):
    """Six occupants, two on each of three nodes: a groupchat message from a non-owner node is
    one XADD to the owner (the forward) and one XADD per other node holding occupants."""
    t = Three(tmp_path, prefix, private_redis.url)
    async with three_nodes(t):
        room = room_owned_by("gamma", "count")
        clients = []
        for node, user in (("alpha", "alice"), ("alpha", "bob"), ("beta", "carol"), ("beta", "dave"), ("gamma", "erin")):
            clients.append(await t.login(node, user))
        clients.append(await t.login("gamma", "frank"))
        for i, c in enumerate(clients):
            await join(c, room, f"n{i}")
            if i == 0:
                await configure(c, room, persistent=False)
        for c in clients:
            await c.inbox.presence(presence_of(room, f"n{len(clients) - 1}"), timeout=10)
        r = _redis(t.redis_url)
        n = 50
        before = r.info("commandstats")
        for i in range(n):
            clients[0].send_message(mto=room, mbody=f"m{i}", mtype="groupchat")
        for c in clients:
            await c.inbox.message(groupchat(f"m{n - 1}"), timeout=20)
        after = r.info("commandstats")
        r.close()
        xadds = after["cmdstat_xadd"]["calls"] - before.get("cmdstat_xadd", {"calls": 0})["calls"]
        # per message: alpha -> gamma (forward), gamma -> alpha and gamma -> beta (fan-out)
        assert xadds == 3 * n, (xadds, after)
        print(f"\n{n} room messages, 6 occupants on 3 nodes: {xadds} XADD ({xadds / n:g} per message); "
              f"commands: { {k: after[k]['calls'] - before.get(k, {'calls': 0})['calls'] for k in after if after[k]['calls'] != before.get(k, {'calls': 0})['calls']} }")


async def test_an_aioxmpp_occupant_on_another_node_than_the_owner_and_the_other_occupant(three):
    """aioxmpp's MUCClient on beta, slixmpp on alpha, the room on gamma: members, messages both
    ways, leave."""
    import aioxmpp
    import aioxmpp.muc

    from ..aiox import aioxmpp_client

    room = room_owned_by("gamma", "aio")
    alice = await three.login("alpha", "alice")
    await join(alice, room, "Alice")
    await configure(alice, room, name="Aio across nodes")
    async with aioxmpp_client(three.nodes["beta"].as_server(), "bob@localhost") as client:
        muc = client.summon(aioxmpp.muc.MUCClient)
        got: asyncio.Queue[Any] = asyncio.Queue()
        mroom, joined = muc.join(aioxmpp.JID.fromstr(room), "Bob", history=aioxmpp.muc.xso.History(maxstanzas=0))
        mroom.on_message.connect(lambda msg, member, source, **kw: got.put_nowait((msg, member)))
        await asyncio.wait_for(joined, 10)
        assert sorted(m.nick for m in mroom.members) == ["Alice", "Bob"]
        alice.send_message(mto=room, mbody="hi from alpha", mtype="groupchat")
        while True:
            msg, member = await asyncio.wait_for(got.get(), 10)
            if msg.body and msg.body.any() == "hi from alpha":
                break
        assert member.nick == "Alice"
        reply = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT, to=aioxmpp.JID.fromstr(room))
        reply.body[None] = "hello from beta"
        await client.send(reply)
        echo = await alice.inbox.message(groupchat("hello from beta"), timeout=10)
        assert str(echo["from"]) == f"{room}/Bob"
        await asyncio.wait_for(mroom.leave(), 10)
        await alice.inbox.presence(presence_of(room, "Bob", "unavailable"), timeout=10)
    assert three.owner(room) == "gamma"


async def test_after_redis_restarts_empty_the_room_is_acquired_again_with_a_higher_token(tmp_path: Path, prefix: str, private_redis: PrivateRedis):
    """Redis loses every lease and fencing counter: the owner drops the room when its renewal
    fails, a self-ping is answered not-acceptable, and the room is acquired again with a token
    above the one stored in the database (the floor), so that the old token stays fenced out."""
    t = Three(tmp_path, prefix, private_redis.url)
    async with three_nodes(t, ("alpha", "beta")):
        room = room_owned_by("beta", "phoenix", ("alpha", "beta"))
        alice = await t.login("alpha", "alice")
        await join(alice, room, "alice")
        await configure(alice, room, name="Phoenix", persistent=True)
        r = _redis(t.redis_url)
        old = int(r.get(f"{prefix}:lease:room:{room}").rpartition("|")[2])
        r.close()
        private_redis.stop()
        private_redis.start()  # empty
        await t.nodes["beta"].wait_log(rf"lost the lease of room {room}")
        with pytest.raises(IqError) as err:
            await self_ping(alice, room, "alice")
        assert err.value.condition == "not-acceptable"
        pres = await join(alice, room, "alice")
        assert pres["muc"]["affiliation"] == "owner"
        r = _redis(t.redis_url)
        node, _, token = r.get(f"{prefix}:lease:room:{room}").rpartition("|")
        r.close()
        assert node == "beta" and int(token) > old
        await self_ping(alice, room, "alice")
        info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=10)
        assert room_name(info) == "Phoenix"


async def test_a_timed_ban_ends_on_the_node_owning_the_room(three):
    """A timed ban (docs/mute.md §3.6) set by an owner on alpha in a room owned by gamma, against
    a user on beta: the join is refused while it holds, the ban list (read from alpha) shows the
    end, and gamma's timer — the room's owner — removes the outcast affiliation: the user joins."""
    room = room_owned_by("gamma", "banned")
    alice = await three.login("alpha", "alice")
    bob = await three.login("beta", "bob")
    await join(alice, room, "alice")
    await configure(alice, room, persistent=True)
    assert three.owner(room) == "gamma"
    await join(bob, room, "bob")
    admin = "http://jabber.org/protocol/muc#admin"
    iq = alice.make_iq_set(ito=room)
    iq.append(ET.fromstring(f"<query xmlns='{admin}'><item affiliation='outcast' jid='bob@localhost'>"
                            "<ban xmlns='urn:xmppd:mute:0' seconds='2'/></item></query>"))
    await iq.send(timeout=10)
    await bob.inbox.presence(lambda p: p["type"] == "unavailable" and "301" in codes(p), timeout=10)
    with pytest.raises(PresenceError) as err:
        await join(bob, room, "bob")
    assert err.value.presence["error"]["condition"] == "forbidden"
    get = alice.make_iq_get(ito=room)
    get.append(ET.fromstring(f"<query xmlns='{admin}'><item affiliation='outcast'/></query>"))
    [item] = (await get.send(timeout=10)).xml.iter(f"{{{admin}}}item")
    assert item.get("jid") == "bob@localhost" and item.find("{urn:xmppd:mute:0}ban").get("until")
    async with asyncio.timeout(15):
        while True:  # the ban ends on gamma's timer
            try:
                await join(bob, room, "bob")
                break
            except PresenceError as e:
                assert e.presence["error"]["condition"] == "forbidden"
                await asyncio.sleep(0.3)
    assert "ending the ban" not in three.nodes["gamma"].log

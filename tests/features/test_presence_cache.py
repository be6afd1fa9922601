"""Presence routing reads rosters from the roster cache: over the wire (slixmpp), every roster
change is seen by the very next presence, nothing leaks after a removal or an account deletion,
and cached rosters leave with the last session. After each test the cache must equal the
database (``stale_entries``)."""
from __future__ import annotations

import asyncio

from xmppd.features.roster.repository import RosterItem, SqlRosterRepository
from xmppd.jid import JID

from ..helpers import add_user, slix_close
from .roster_helpers import Watch, items_of, login, subscribe_both


async def close(*clients: Watch) -> None:
    for c in clients:
        await slix_close(c.c)


def cache(server):
    return server.features["roster"].repo


async def consistent(server) -> None:
    assert await cache(server).stale_entries() == []


async def gone(server, bare: str) -> None:
    """Wait until the roster of ``bare`` has left the cache (sessions end asynchronously)."""
    for _ in range(250):
        if cache(server).peek(JID.parse(bare)) is None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the roster of {bare} is still cached")


async def test_a_removal_by_one_resource_stops_presence_both_ways_at_once(server):
    await add_user(server, "alice")
    a1 = await login(server, "alice", create=False)
    a2 = await login(server, "alice", create=False)
    b = await login(server, "bob")
    try:
        await subscribe_both(a1, b)
        a2.drain()
        assert cache(server).peek(JID.parse(a1.bare)).subscribers() == (JID.parse(b.bare),)
        await a1.remove(b.bare)
        # RFC 6121 §2.5.2: unavailable from each of alice's resources, then the cancellations
        await b.expect(a1.jid, "unavailable")
        await b.expect(a2.jid, "unavailable")
        await b.expect(a1.bare, "unsubscribe")
        await b.expect(a1.bare, "unsubscribed")
        await a2.push(b.bare)  # the other resource learns of the removal
        # §3.3.3: bob's resources go unavailable for alice
        await a1.expect(b.jid, "unavailable")
        await a2.expect(b.jid, "unavailable")
        for w in (a1, a2, b):
            w.drain()
        # the next presence of either side reaches nobody on the other
        a2.c.send_presence(pstatus="after the removal")
        b.c.send_presence(pstatus="me too")
        await a2.expect(a2.jid, pred=lambda p: p["status"] == "after the removal")  # own resources still see it
        await b.none_from(a1.bare)
        await a1.none_from(b.bare)
        await a2.none_from(b.bare)
        assert cache(server).peek(JID.parse(a1.bare)).subscribers() == ()
        assert await server.features["roster"].subscription(b.bare, a1.bare) == "none"
        await consistent(server)
    finally:
        await close(a1, a2, b)


async def test_an_approval_is_used_by_the_next_presence_of_both_sides(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    try:
        assert cache(server).peek(JID.parse(a.bare)) is not None  # loaded by the roster get
        a.send(b.bare, "subscribe")
        await b.expect(a.bare, "subscribe")
        b.send(a.bare, "subscribed")
        await a.expect(b.jid)  # bob's current presence follows the approval
        b.c.send_presence(pstatus="hello alice")
        assert (await a.expect(b.jid))["status"] == "hello alice"
        a.c.send_presence(pstatus="one way only")
        await b.none_from(a.bare)
        await consistent(server)
    finally:
        await close(a, b)


async def test_a_deleted_account_leaves_nothing_for_a_new_one_of_the_same_name(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    try:
        await subscribe_both(a, b)
        await server.account_service.delete("bob")
        await a.expect(b.jid, "unavailable")  # the session ends
        await a.expect(b.bare, "unsubscribed")  # RFC 6121 §3.2/§3.3: the account cancels both ways
        assert [(await a.push(b.bare))["subscription"] for _ in range(2)][-1] == "none"
        await gone(server, b.bare)
        a.drain()
        b2 = await login(server, "bob")  # a new account, the same name
        try:
            assert items_of(await b2.get_roster()) == {}
            assert (await cache(server).roster(JID.parse(b2.bare))) == (0, [])
            assert items_of(await a.get_roster())[b.bare]["subscription"] == "none"
            a.c.send_presence(pstatus="not for the new bob")
            b2.c.send_presence(pstatus="nor for alice")
            await b2.none_from(a.bare)
            await a.none_from(b.bare)
            await consistent(server)
        finally:
            await close(b2)
    finally:
        await close(a)


async def test_rosters_leave_the_cache_with_the_last_session(server):
    await add_user(server, "alice")
    a1 = await login(server, "alice", create=False)
    a2 = await login(server, "alice", create=False)
    b = await login(server, "bob")
    try:
        await subscribe_both(a1, b)
        alice = JID.parse(a1.bare)
        await slix_close(a2.c)
        await a1.expect(a2.jid, "unavailable")
        assert cache(server).peek(alice) is not None  # a1 is still here
        await slix_close(a1.c)
        await b.expect(a1.jid, "unavailable")  # told from the cached roster, then it goes
        await gone(server, a1.bare)
        # offline: a request is written to the database and kept for the next login
        b.send(a1.bare, "unsubscribe")
        await b.push(a1.bare)
        await b.get_roster()  # bob's stanzas are handled in order: the unsubscribe is done
        assert await server.features["roster"].subscription(alice, b.bare) == "to"
        assert cache(server).peek(alice) is None
        await consistent(server)
    finally:
        await close(b)


async def test_a_roster_written_by_another_node_is_not_overwritten(server):
    """Another xmppd on the same database writes alice's roster behind this node's cache: the
    next write through this node notices (the counter moved) and keeps both changes."""
    a = await login(server, "alice")
    try:
        await a.add("bob@localhost", name="Bob")
        alice = JID.parse(a.bare)
        other = SqlRosterRepository(server.db, max_tombstones=1000)
        await other.update(alice, "carol@localhost", lambda old: RosterItem("carol@localhost", name="Carol"))
        await a.add("dave@localhost", name="Dave")
        assert cache(server).stale == 1
        items = items_of(await a.get_roster())
        assert {j: i["name"] for j, i in items.items()} == {"bob@localhost": "Bob", "carol@localhost": "Carol", "dave@localhost": "Dave"}
        await consistent(server)
    finally:
        await close(a)

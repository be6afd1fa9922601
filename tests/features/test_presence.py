"""RFC 6121 §3-4 over the wire: subscription handshakes, pre-approval, presence broadcast,
probes, directed presence, and going offline with or without a stream close (slixmpp)."""
from __future__ import annotations

import asyncio

from xmppd.jid import JID

from ..helpers import add_user, slix_close
from .roster_helpers import Watch, login, subscribe_both


async def close(*clients: Watch) -> None:
    for c in clients:
        await slix_close(c.c)


def sub_of(server, owner: str, contact: str):
    return server.features["roster"].subscription(owner, contact)


async def test_subscribe_then_subscribed(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    try:
        a.send(b.bare, "subscribe", pstatus="hi, it's alice")
        req = await b.expect(a.bare, "subscribe")
        assert str(req["from"]) == a.bare  # §3.1.2: stamped with the bare JID, not the resource
        assert req["status"] == "hi, it's alice"
        p = await a.push(b.bare)
        assert (p["subscription"], p["ask"]) == ("none", "subscribe")
        await b.no_push()  # a pending request is not a roster item of bob's
        b.send(a.bare, "subscribed")
        assert str((await a.expect(b.bare, "subscribed"))["from"]) == b.bare
        p = await a.push(b.bare)
        assert (p["subscription"], p["ask"]) == ("to", None)
        p = await b.push(a.bare)
        assert p["subscription"] == "from"
        await a.expect(b.jid)  # §3.1.5: bob's current presence follows the approval
        assert (await sub_of(server, a.bare, b.bare), await sub_of(server, b.bare, a.bare)) == ("to", "from")
        # presence now flows from bob to alice, not back
        b.c.send_presence(pshow="away")
        assert (await a.expect(b.jid))["show"] == "away"
        a.c.send_presence(pshow="dnd")
        await b.none_from(a.bare)
    finally:
        await close(a, b)


async def test_pre_approval_then_subscribe(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    try:
        b.send(a.bare, "subscribed")  # §3.4: nothing pending from alice: a pre-approval
        p = await b.push(a.bare)
        assert (p["subscription"], p["approved"]) == ("none", "true")
        await a.none_from(b.bare, "subscribed")
        a.send(b.bare, "subscribe")
        await a.expect(b.bare, "subscribed")  # granted at once
        await a.expect(b.jid)
        await b.none_from(a.bare, "subscribe")  # never shown to bob
        p = await b.push(a.bare)
        assert (p["subscription"], p["approved"]) == ("from", None)
        assert await sub_of(server, a.bare, b.bare) == "to"
    finally:
        await close(a, b)


async def test_pre_approval_is_cancelled_by_unsubscribed(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    try:
        b.send(a.bare, "subscribed")
        assert (await b.push(a.bare))["approved"] == "true"
        b.send(a.bare, "unsubscribed")
        assert (await b.push(a.bare))["approved"] is None
        await a.none_from(b.bare)
        a.send(b.bare, "subscribe")
        await b.expect(a.bare, "subscribe")  # asked again, no longer pre-approved
    finally:
        await close(a, b)


async def test_mutual_subscription_and_presence_both_ways(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    try:
        await subscribe_both(a, b)
        assert (await sub_of(server, a.bare, b.bare), await sub_of(server, b.bare, a.bare)) == ("both", "both")
        a.c.send_presence(pstatus="lunch")
        assert (await b.expect(a.jid))["status"] == "lunch"
        b.c.send_presence(pstatus="work")
        assert (await a.expect(b.jid))["status"] == "work"
    finally:
        await close(a, b)


async def test_three_users_initial_presence_probes_and_broadcast(server):
    await add_user(server, "alice")
    b = await login(server, "bob")
    c = await login(server, "carol")
    a = await login(server, "alice", create=False)
    try:
        await subscribe_both(a, b)
        await subscribe_both(a, c)
        await slix_close(a.c)
        await b.expect(a.jid, "unavailable")
        await c.expect(a.jid, "unavailable")
        # alice comes back: her initial presence reaches both, and both presences reach her
        a2 = await login(server, "alice", create=False, available=False)
        a2.c.send_presence(pstatus="back")
        assert (await b.expect(a2.jid))["status"] == "back"
        assert (await c.expect(a2.jid))["status"] == "back"
        await a2.expect(b.jid)
        await a2.expect(c.jid)
        # bob and carol are not subscribed to each other
        await b.none_from(c.bare)
        await c.none_from(b.bare)
        await close(a2)
    finally:
        await close(b, c)


async def test_own_resources_see_each_other(server):
    await add_user(server, "alice")
    a1 = await login(server, "alice", create=False)
    a2 = await login(server, "alice", create=False)
    try:
        await a2.expect(a1.jid)  # the new resource learns about the other one
        await a1.expect(a2.jid)  # ... and the other one about it
        await slix_close(a2.c)
        await a1.expect(a2.jid, "unavailable")
    finally:
        await close(a1)


async def test_offline_subscription_request_is_delivered_at_login(server):
    await add_user(server, "bob")
    a = await login(server, "alice")
    try:
        a.send("bob@localhost", "subscribe", pstatus="remember me")
        assert (await a.push("bob@localhost"))["ask"] == "subscribe"
        b = await login(server, "bob", create=False, available=False)
        await asyncio.sleep(0.2)
        await b.none_from(a.bare, "subscribe")  # not before available presence
        b.c.send_presence()
        req = await b.expect(a.bare, "subscribe")
        assert req["status"] == "remember me"
        b.send(a.bare, "subscribed")
        assert (await a.push(b.bare))["subscription"] == "to"
        await slix_close(b.c)
        b2 = await login(server, "bob", create=False)  # answered: not delivered again
        await b2.none_from(a.bare, "subscribe")
        await close(b2)
    finally:
        await close(a)


async def test_abrupt_disconnect_sends_unavailable_to_contacts(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    try:
        await subscribe_both(a, b)
        b.c.transport.abort()  # no unavailable presence, no stream close: the socket just dies
        p = await a.expect(b.jid, "unavailable")
        assert p["from"] == b.c.boundjid
        for _ in range(50):
            if not server.sessions.of(JID.parse(b.bare)):
                break
            await asyncio.sleep(0.05)
        assert not server.sessions.of(JID.parse(b.bare))
    finally:
        await close(a)
        b.c.abort()


async def test_directed_presence_is_undone_at_logout(server):
    a = await login(server, "alice")
    c = await login(server, "carol")
    try:
        a.c.send_presence(pto=c.bare, pstatus="just for you")
        assert (await c.expect(a.jid))["status"] == "just for you"
        a.c.send_presence(pstatus="for subscribers")  # broadcast: carol is no subscriber
        await c.none_from(a.bare)
        await slix_close(a.c)
        await c.expect(a.jid, "unavailable")
    finally:
        await close(c)


async def test_directed_unavailable_needs_a_subscription_or_earlier_directed_presence(server):
    a = await login(server, "alice")
    c = await login(server, "carol")
    try:
        a.send(c.bare, "unavailable")  # alice never told carol anything: not delivered
        await c.none_from(a.bare)
        a.c.send_presence(pto=c.bare)
        await c.expect(a.jid)
        a.send(c.bare, "unavailable")  # now it undoes the directed presence
        await c.expect(a.jid, "unavailable")
        await slix_close(a.c)
        await c.none_from(a.bare)  # and is not repeated at logout
    finally:
        await close(c)


async def test_unsubscribe_and_unsubscribed_in_both_directions(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    try:
        await subscribe_both(a, b)
        # alice stops receiving bob's presence
        a.send(b.bare, "unsubscribe")
        await b.expect(a.bare, "unsubscribe")
        await a.expect(b.jid, "unavailable")  # bob's presence is withdrawn
        assert (await a.push(b.bare))["subscription"] == "from"
        assert (await b.push(a.bare))["subscription"] == "to"
        # alice cancels bob's subscription to her presence
        a.send(b.bare, "unsubscribed")
        await b.expect(a.bare, "unsubscribed")
        await b.expect(a.jid, "unavailable")
        assert (await a.push(b.bare))["subscription"] == "none"
        assert (await b.push(a.bare))["subscription"] == "none"
        a.c.send_presence(pstatus="nobody sees this")
        await b.none_from(a.bare, "available")
        # and the other way round: bob first
        await subscribe_both(a, b)
        b.send(a.bare, "unsubscribed")
        await a.expect(b.bare, "unsubscribed")
        assert (await sub_of(server, a.bare, b.bare), await sub_of(server, b.bare, a.bare)) == ("from", "to")
        b.send(a.bare, "unsubscribe")
        await a.expect(b.bare, "unsubscribe")
        assert (await sub_of(server, a.bare, b.bare), await sub_of(server, b.bare, a.bare)) == ("none", "none")
    finally:
        await close(a, b)


async def test_denied_request_and_removal_from_the_roster(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    try:
        a.send(b.bare, "subscribe")
        await b.expect(a.bare, "subscribe")
        b.send(a.bare, "unsubscribed")  # denied
        await a.expect(b.bare, "unsubscribed")
        assert (await a.push(b.bare))["ask"] == "subscribe"
        p = await a.push(b.bare)
        assert (p["subscription"], p["ask"]) == ("none", None)
        await subscribe_both(a, b)
        await a.remove(b.bare)  # §2.5.2: removing the item cancels both directions
        assert (await a.push(b.bare))["subscription"] == "remove"
        await b.expect(a.jid, "unavailable")  # alice's presence is withdrawn first
        await b.expect(a.bare, "unsubscribe")
        await b.expect(a.bare, "unsubscribed")
        assert await sub_of(server, b.bare, a.bare) == "none"
    finally:
        await close(a, b)


async def test_probe_from_a_client(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    c = await login(server, "carol")
    try:
        a.send(b.bare, "subscribe")
        await b.expect(a.bare, "subscribe")
        b.send(a.bare, "subscribed")
        await a.expect(b.jid)
        a.send(b.bare, "probe")
        await a.expect(b.jid)  # subscribed: bob's presence
        c.send(b.bare, "probe")
        await c.none_from(b.bare)  # not subscribed: nothing revealed
        await slix_close(b.c)
        await a.expect(b.jid, "unavailable")
        a.send(b.bare, "probe")
        await a.expect(b.bare, "unavailable")  # no available resource
    finally:
        await close(a, c)


async def test_subscription_to_a_missing_account_is_denied(server):
    a = await login(server, "alice")
    try:
        a.send("ghost@localhost", "subscribe")
        await a.expect("ghost@localhost", "unsubscribed")
        pushes = [await a.push("ghost@localhost"), await a.push("ghost@localhost")]
        assert [p["ask"] for p in pushes] == ["subscribe", None]
    finally:
        await close(a)

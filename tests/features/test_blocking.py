"""XEP-0191 Blocking Command over the wire with slixmpp: list, block, unblock, pushes, and
blocked contacts cut off in both directions (§3.5), unavailable presence on block (§3.3)."""
from __future__ import annotations

import asyncio

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from xmppd.features.blocking import matches
from xmppd.jid import JID

from ..helpers import add_user, running_server, slix, slix_close

BLOCKED = "{jabber:client}error/{urn:xmpp:blocking:errors}blocked"


def _queue(client: slixmpp.ClientXMPP, event: str) -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    client.add_event_handler(event, lambda x: q.put_nowait(x))
    return q


async def _client(server, name: str, *, presence: bool = True) -> slixmpp.ClientXMPP:
    c = await slix(server, await add_user(server, name), plugins=("xep_0191", "xep_0030"))
    if presence:
        c.send_presence()
        await asyncio.sleep(0.05)
    return c


async def _nothing(q: asyncio.Queue, wait: float = 0.3) -> None:
    await asyncio.sleep(wait)
    assert q.empty(), q.get_nowait()


async def test_list_block_unblock_with_pushes_to_interested_resources(server):
    alice = await _client(server, "alice")
    alice2 = await slix(server, f"alice@{server.domain}", plugins=("xep_0191",))
    alice3 = await slix(server, f"alice@{server.domain}", plugins=("xep_0191",))  # never asks for the list
    try:
        assert await alice.plugin["xep_0191"].get_blocked_jids() == set()
        assert await alice2.plugin["xep_0191"].get_blocked_jids() == set()
        blocked2 = _queue(alice2, "blocked")
        unblocked2 = _queue(alice2, "unblocked")
        uninterested = _queue(alice3, "blocked")
        await alice.plugin["xep_0191"].block(["eve@localhost", "spam.example", "Mallory@localhost/Phone"])
        push = await asyncio.wait_for(blocked2.get(), 5)
        assert {str(i["jid"]) for i in push["block"]} == {"eve@localhost", "spam.example", "mallory@localhost/Phone"}
        assert await alice2.plugin["xep_0191"].get_blocked_jids() == {
            slixmpp.JID("eve@localhost"), slixmpp.JID("spam.example"), slixmpp.JID("mallory@localhost/Phone")
        }
        await alice.plugin["xep_0191"].unblock(["spam.example"])
        push = await asyncio.wait_for(unblocked2.get(), 5)
        assert [str(i["jid"]) for i in push["unblock"]] == ["spam.example"]
        iq = alice.make_iq_set()  # unblock all: an empty <unblock/> (slixmpp's unblock([]) sends none)
        iq.enable("unblock")
        await iq.send(timeout=5)
        push = await asyncio.wait_for(unblocked2.get(), 5)
        assert len(push["unblock"]) == 0
        assert await alice.plugin["xep_0191"].get_blocked_jids() == set()
        await _nothing(uninterested, 0.05)
    finally:
        for c in (alice, alice2, alice3):
            await slix_close(c)


async def test_bad_block_requests_and_someone_elses_list(server):
    alice = await _client(server, "alice")
    await add_user(server, "bob")
    try:
        with pytest.raises(IqError) as err:
            await alice.plugin["xep_0191"].block([])
        assert err.value.iq["error"]["condition"] == "bad-request"
        iq = alice.make_iq_set()
        iq["block"].xml.append(slixmpp.ET.fromstring("<item xmlns='urn:xmpp:blocking' jid='a@b@c'/>"))
        with pytest.raises(IqError) as err:
            await iq.send()
        assert err.value.iq["error"]["condition"] == "jid-malformed"
        iq = alice.make_iq_get(ito=f"bob@{server.domain}")
        iq.enable("blocklist")
        with pytest.raises(IqError) as err:
            await iq.send()
        assert err.value.iq["error"]["condition"] == "forbidden"
        info = await alice.plugin["xep_0030"].get_info(jid=server.domain)
        assert "urn:xmpp:blocking" in info["disco_info"]["features"]
    finally:
        await slix_close(alice)


async def test_blocked_contact_is_cut_off_inbound(server):
    alice = await _client(server, "alice")
    bob = await _client(server, "bob")
    try:
        await alice.plugin["xep_0191"].block([bob.boundjid.bare])
        inbox = _queue(alice, "message")
        presences = _queue(alice, "presence_available")
        bob_errors = _queue(bob, "message_error")
        bob.send_message(mto=alice.boundjid.bare, mbody="to bare", mtype="chat")
        bob.send_message(mto=alice.boundjid.full, mbody="to full", mtype="chat")
        for _ in range(2):
            e = await asyncio.wait_for(bob_errors.get(), 5)
            assert e["error"]["condition"] == "service-unavailable"
        # iq get/set: service-unavailable, as if the user did not exist.
        with pytest.raises(IqError) as err:
            await bob.plugin["xep_0030"].get_info(jid=alice.boundjid.full, timeout=5)
        assert err.value.iq["error"]["condition"] == "service-unavailable"
        # Presence: dropped without any answer.
        bob.send_presence(pto=alice.boundjid.bare, pstatus="directed")
        bob.send_presence(pto=alice.boundjid.full, pstatus="directed full")
        await _nothing(inbox)
        await _nothing(presences, 0)
        await _nothing(bob_errors, 0)
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_user_cannot_reach_a_contact_they_blocked(server):
    alice = await _client(server, "alice")
    bob = await _client(server, "bob")
    try:
        await alice.plugin["xep_0191"].block([bob.boundjid.bare])
        bob_inbox = _queue(bob, "message")
        bob_presences = _queue(bob, "presence_available")
        errors = _queue(alice, "message_error")
        alice.send_message(mto=bob.boundjid.full, mbody="hi", mtype="chat")
        e = await asyncio.wait_for(errors.get(), 5)
        assert e["error"]["condition"] == "not-acceptable"
        assert e.xml.find(BLOCKED) is not None
        with pytest.raises(IqError) as err:
            await alice.plugin["xep_0030"].get_info(jid=bob.boundjid.full, timeout=5)
        assert err.value.iq["error"]["condition"] == "not-acceptable"
        assert err.value.iq.xml.find(BLOCKED) is not None
        alice.send_presence(pto=bob.boundjid.full, pstatus="directed")
        await _nothing(bob_inbox)
        await _nothing(bob_presences, 0)
        # Unblocked: they talk again.
        await alice.plugin["xep_0191"].unblock([bob.boundjid.bare])
        alice.send_message(mto=bob.boundjid.full, mbody="friends again", mtype="chat")
        m = await asyncio.wait_for(bob_inbox.get(), 5)
        assert m["body"] == "friends again"
    finally:
        await slix_close(alice)
        await slix_close(bob)


async def test_blocking_sends_unavailable_presence_to_the_contact(server):
    alice = await _client(server, "alice")
    bob = await _client(server, "bob")
    carol = await _client(server, "carol")
    try:
        gone = _queue(bob, "presence_unavailable")
        carol_gone = _queue(carol, "presence_unavailable")
        await alice.plugin["xep_0191"].block([bob.boundjid.bare])
        p = await asyncio.wait_for(gone.get(), 5)
        assert p["from"] == alice.boundjid and p["type"] == "unavailable"
        await _nothing(carol_gone, 0.1)
    finally:
        for c in (alice, bob, carol):
            await slix_close(c)


async def test_blocked_message_to_an_offline_user_is_not_stored(server):
    alice = await _client(server, "alice")
    bob = await _client(server, "bob")
    try:
        await alice.plugin["xep_0191"].block([bob.boundjid.bare])
        await slix_close(alice)
        errors = _queue(bob, "message_error")
        bob.send_message(mto=alice.boundjid.bare, mbody="let me in", mtype="chat")
        e = await asyncio.wait_for(errors.get(), 5)
        assert e["error"]["condition"] == "service-unavailable"
        assert await server.features["offline"].repo.count("alice", server.domain) == 0
    finally:
        await slix_close(bob)


async def test_blocklist_survives_logout_and_applies_while_offline(server):
    alice = await _client(server, "alice")
    await alice.plugin["xep_0191"].block([f"bob@{server.domain}"])
    await slix_close(alice)
    feature = server.features["blocking"]
    await asyncio.sleep(0.1)
    assert JID.parse(f"alice@{server.domain}") not in feature._online
    # Loaded on demand from storage for the offline account.
    assert await feature.is_blocked(JID.parse(f"alice@{server.domain}"), JID.parse(f"bob@{server.domain}/x"))


async def test_known_empty_lists_follow_every_change_and_a_restart(tmp_path):
    """Accounts without a blocklist are never read from storage; the set of those with one
    follows block, unblock, unblock-all and account deletion, and is reloaded at start."""
    async with running_server(tmp_path) as server:
        feature = server.features["blocking"]
        alice = await _client(server, "alice")
        bob = await _client(server, "bob")
        alice_jid, bob_jid = JID.parse(f"alice@{server.domain}"), JID.parse(f"bob@{server.domain}/r")
        assert not await feature.is_blocked(alice_jid, bob_jid)
        await alice.plugin["xep_0191"].block([f"bob@{server.domain}"])
        assert await feature.is_blocked(alice_jid, bob_jid)
        bob.send_message(mto=alice.boundjid, mbody="after block")
        err = await asyncio.wait_for(_queue(bob, "message_error").get(), 5)
        assert err["error"]["condition"] == "service-unavailable"
        await alice.plugin["xep_0191"].unblock([f"bob@{server.domain}"])  # the list is empty again
        assert not await feature.is_blocked(alice_jid, bob_jid)
        await alice.plugin["xep_0191"].block([f"bob@{server.domain}", "spam.example"])
        iq = alice.make_iq_set()  # unblock all: an empty <unblock/>
        iq.enable("unblock")
        await iq.send(timeout=5)
        assert not await feature.is_blocked(alice_jid, bob_jid)
        alice_msgs = _queue(alice, "message")
        bob.send_message(mto=alice.boundjid, mbody="after unblock")
        assert (await asyncio.wait_for(alice_msgs.get(), 5))["body"] == "after unblock"
        await alice.plugin["xep_0191"].block([f"bob@{server.domain}"])
        await slix_close(alice)
        await slix_close(bob)
    async with running_server(tmp_path) as server:  # the set is rebuilt from storage
        feature = server.features["blocking"]
        assert await feature.is_blocked(JID.parse(f"alice@{server.domain}"), JID.parse(f"bob@{server.domain}/r"))
        bob = await slix(server, f"bob@{server.domain}")
        errors = _queue(bob, "message_error")
        bob.send_message(mto=f"alice@{server.domain}", mbody="offline but blocked")
        assert (await asyncio.wait_for(errors.get(), 5))["error"]["condition"] == "service-unavailable"
        assert await server.account_service.delete("alice")
        assert not await feature.is_blocked(JID.parse(f"alice@{server.domain}"), JID.parse(f"bob@{server.domain}/r"))
        await slix_close(bob)


@pytest.mark.parametrize(
    ("item", "jid", "blocked"),
    [
        ("eve@x", "eve@x", True),
        ("eve@x", "eve@x/phone", True),
        ("eve@x/phone", "eve@x/laptop", False),
        ("eve@x/phone", "eve@x/phone", True),
        ("x", "anyone@x/r", True),
        ("x", "x", True),
        ("x/r", "someone@x/r", True),
        ("x/r", "x/r", True),
        ("x/r", "x/other", False),
        ("eve@x", "eve@y", False),
    ],
)
def test_jid_matching_follows_xep_0016(item, jid, blocked):
    assert matches(frozenset([item]), JID.parse(jid)) is blocked


async def test_unblocking_sends_current_presence_to_a_subscribed_contact(server):
    """§3.4: on unblock the user's current presence goes to the contact, if the contact may
    receive it (subscribed); an unblocked contact without a subscription gets nothing."""
    alice = await _client(server, "alice")
    bob = await _client(server, "bob")
    carol = await _client(server, "carol")
    try:
        bob_seen = _queue(bob, "presence_available")
        bob_gone = _queue(bob, "presence_unavailable")
        carol_seen = _queue(carol, "presence_available")
        subscribed = _queue(bob, "presence_subscribed")
        bob.send_presence(pto=alice.boundjid.bare, ptype="subscribe")  # slixmpp approves for alice
        await asyncio.wait_for(subscribed.get(), 5)
        alice.send_presence(pstatus="at my desk")
        while (p := await asyncio.wait_for(bob_seen.get(), 5))["status"] != "at my desk":
            pass
        await alice.plugin["xep_0191"].block([bob.boundjid.bare, carol.boundjid.bare])
        p = await asyncio.wait_for(bob_gone.get(), 5)
        assert p["from"] == alice.boundjid
        while not carol_seen.empty():
            carol_seen.get_nowait()
        await alice.plugin["xep_0191"].unblock([bob.boundjid.bare, carol.boundjid.bare])
        p = await asyncio.wait_for(bob_seen.get(), 5)
        assert p["from"] == alice.boundjid and p["status"] == "at my desk"
        await _nothing(carol_seen, 0.2)  # carol is not subscribed to alice
        # Unblocking a JID that was never blocked sends nothing more.
        await alice.plugin["xep_0191"].unblock(["nobody@localhost"])
        await _nothing(bob_seen, 0.2)
    finally:
        for c in (alice, bob, carol):
            await slix_close(c)

"""RFC 6121 §2 roster management and XEP-0237 versioning over the wire (slixmpp, aioxmpp)."""
from __future__ import annotations

import asyncio

import aioxmpp
import aioxmpp.connector
import aioxmpp.presence
import aioxmpp.roster
import pytest
from slixmpp.exceptions import IqError

from xmppd.jid import JID

from ..helpers import PASSWORD, add_user, running_server, slix_close
from .roster_helpers import NS, WAIT, Watch, items_of, login, subscribe_both


async def close(*clients: Watch) -> None:
    for c in clients:
        await slix_close(c.c)


async def test_stream_features_advertise_versioning_and_pre_approval(server):
    a = await login(server, "alice", roster=False, available=False)
    try:
        assert "rosterver" in a.c.features and "preapproval" in a.c.features
    finally:
        await close(a)


async def test_add_update_remove_with_pushes_to_every_interested_resource(server):
    jid = await add_user(server, "alice")
    a1 = await login(server, "alice", create=False)
    a2 = await login(server, "alice", create=False)
    a3 = await login(server, "alice", roster=False, create=False)  # never asked: not interested
    try:
        assert items_of(await a1.get_roster()) == {}
        await a1.add("bob@localhost", "Bob", ("Friends", "Work"))
        for w in (a1, a2):
            p = await w.push("bob@localhost")
            assert p == {"jid": "bob@localhost", "subscription": "none", "ask": None, "approved": None, "name": "Bob", "groups": ["Friends", "Work"], "ver": "1"}
        await a3.no_push()
        await a2.add("bob@localhost", "Bobby")
        for w in (a1, a2):
            p = await w.push("bob@localhost")
            assert (p["name"], p["groups"], p["ver"]) == ("Bobby", [], "2")
        assert items_of(await a3.get_roster()) == {"bob@localhost": {"subscription": "none", "ask": None, "name": "Bobby", "groups": []}}
        await a1.remove("bob@localhost")
        for w in (a1, a2, a3):  # a3 asked for the roster: interested now
            p = await w.push("bob@localhost")
            assert (p["subscription"], p["ver"]) == ("remove", "3")
        assert items_of(await a2.get_roster()) == {}
        assert await server.features["roster"].items(JID.parse(jid)) == []
    finally:
        await close(a1, a2, a3)


@pytest.mark.parametrize(
    ("xml", "condition", "words"),
    [
        (f"<query xmlns='{NS}'><item jid='b@localhost'/><item jid='c@localhost'/></query>", "bad-request", "exactly one item"),
        (f"<query xmlns='{NS}'/>", "bad-request", "exactly one item"),
        (f"<query xmlns='{NS}'><item name='x'/></query>", "bad-request", "no 'jid'"),
        (f"<query xmlns='{NS}'><item jid='b@localhost'><group>g</group><group>g</group></item></query>", "bad-request", "twice"),
        (f"<query xmlns='{NS}'><item jid='b@localhost'><group/></item></query>", "not-acceptable", "empty"),
        (f"<query xmlns='{NS}'><item jid='b@localhost'><group>{'g' * 192}</group></item></query>", "not-acceptable", "longer than 191"),
        (f"<query xmlns='{NS}'><item jid='b@localhost' name='{'n' * 1024}'/></query>", "not-acceptable", "longer than 1023"),
        (f"<query xmlns='{NS}'><item jid='a@b@c'/></query>", "jid-malformed", "invalid JID"),
        (f"<query xmlns='{NS}'><item jid='b@localhost/phone'/></query>", "jid-malformed", "bare JID"),
        (f"<query xmlns='{NS}'><item jid='alice@localhost'/></query>", "not-allowed", "own account"),
        (f"<query xmlns='{NS}'><item jid='nobody@localhost' subscription='remove'/></query>", "item-not-found", "not in your roster"),
    ],
)
async def test_roster_set_errors_of_rfc_6121_2_3_3(server, xml, condition, words):
    a = await login(server, "alice", available=False)
    try:
        cond, text = await a.roster_error("set", xml)
        assert cond == condition and words in text
        assert items_of(await a.get_roster()) == {}
        await a.no_push()
    finally:
        await close(a)


async def test_subscription_other_than_remove_and_ask_are_ignored_in_a_roster_set(server):
    a = await login(server, "alice", available=False)
    try:
        await a.roster_iq("set", f"<query xmlns='{NS}'><item jid='b@localhost' subscription='both' ask='subscribe' approved='true'/></query>")
        p = await a.push("b@localhost")
        assert (p["subscription"], p["ask"], p["approved"]) == ("none", None, None)
    finally:
        await close(a)


async def test_another_users_roster_is_forbidden(server):
    await add_user(server, "bob")
    a = await login(server, "alice", available=False)
    try:
        for typ, xml in (("get", f"<query xmlns='{NS}'/>"), ("set", f"<query xmlns='{NS}'><item jid='c@localhost'/></query>")):
            cond, text = await a.roster_error(typ, xml, to="bob@localhost")
            assert cond == "forbidden" and "your own roster" in text
        assert await server.features["roster"].items(JID.parse("bob@localhost")) == []
    finally:
        await close(a)


async def test_roster_size_is_capped(tmp_path):
    async with running_server(tmp_path, "roster.max_items=2") as server:
        a = await login(server, "alice", available=False)
        try:
            await a.add("b@localhost")
            await a.add("c@localhost")
            cond, text = await a.roster_error("set", f"<query xmlns='{NS}'><item jid='d@localhost'/></query>")
            assert cond == "not-allowed" and "at most 2 items" in text
            await a.add("c@localhost", "still editable")  # an existing item can change
            assert set(items_of(await a.get_roster())) == {"b@localhost", "c@localhost"}
            # a subscription request to a new contact is refused the same way
            a.send("d@localhost", "subscribe")
            err = await a.expect("d@localhost", "error")
            assert err["error"]["condition"] == "not-allowed"
        finally:
            await close(a)


async def test_versioning_current_known_and_unknown_versions(server):
    a = await login(server, "alice", available=False)
    try:
        full = await a.get_roster(ver="")
        assert full.xml.find(f"{{{NS}}}query").get("ver") == "0"
        await a.add("b@localhost")  # 1
        await a.add("c@localhost")  # 2
        await a.add("d@localhost", "D")  # 3
        await a.remove("b@localhost")  # 4
        for _ in range(4):
            await a.push()
        # current: an empty result and no pushes
        res = await a.get_roster(ver="4")
        assert res.xml.find(f"{{{NS}}}query") is None
        await a.no_push()
        # known but old: an empty result, then only what changed since, removals included
        res = await a.get_roster(ver="2")
        assert res.xml.find(f"{{{NS}}}query") is None
        got = [await a.push(), await a.push()]
        assert [(p["jid"], p["subscription"], p["ver"]) for p in got] == [("d@localhost", "none", "3"), ("b@localhost", "remove", "4")]
        await a.no_push()
        # unknown (garbage, or from the future): the full roster with the current version
        for ver in ("bogus", "99"):
            res = await a.get_roster(ver=ver)
            assert res.xml.find(f"{{{NS}}}query").get("ver") == "4"
            assert set(items_of(res)) == {"c@localhost", "d@localhost"}
        # without 'ver': the full roster, no version (the client does not version)
        res = await a.get_roster()
        assert res.xml.find(f"{{{NS}}}query").get("ver") is None and len(items_of(res)) == 2
    finally:
        await close(a)


async def test_versioning_stale_version_gets_the_full_roster(tmp_path):
    async with running_server(tmp_path, "roster.max_items=2") as server:
        a = await login(server, "alice", available=False)
        try:
            for c in ("b", "c"):
                await a.add(f"{c}@localhost")
            for c in ("b", "c"):
                await a.remove(f"{c}@localhost")
            await a.add("d@localhost")
            await a.remove("d@localhost")  # three removals, two remembered: version 1..3 are stale
            res = await a.get_roster(ver="2")
            assert res.xml.find(f"{{{NS}}}query").get("ver") == "6" and items_of(res) == {}
        finally:
            await close(a)


async def test_account_deletion_cancels_subscriptions_of_contacts(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    c = await login(server, "carol")
    try:
        await subscribe_both(a, b)
        c.send(a.bare, "subscribe")  # carol's request is pending at alice
        await a.expect(c.bare, "subscribe")
        c.drain()
        await server.account_service.delete("alice")
        await b.expect(a.jid, "unavailable")
        await b.expect(a.bare, "unsubscribe")
        await b.expect(a.bare, "unsubscribed")
        pushes = [await b.push(a.bare) for _ in range(2)]
        assert pushes[-1]["subscription"] == "none"
        p = await c.push(a.bare)  # carol's request was denied
        assert (p["subscription"], p["ask"]) == ("none", None)
        assert await server.features["roster"].subscription("bob@localhost", "alice@localhost") == "none"
        assert await server.features["roster"].items("alice@localhost") == []
        assert await server.features["roster"].repo.pending_in(JID.parse("alice@localhost")) == []
    finally:
        await close(b, c)
        await slix_close(a.c)


async def test_disco_on_an_account_is_open_to_contacts_it_shares_presence_with(server):
    a = await login(server, "alice")
    b = await login(server, "bob")
    c = await login(server, "carol")
    try:
        b.send(a.bare, "subscribe")
        await a.expect(b.bare, "subscribe")
        a.send(b.bare, "subscribed")  # alice -> 'from' bob
        await b.expect(a.bare, "subscribed")
        b.c.register_plugin("xep_0030")
        c.c.register_plugin("xep_0030")
        info = await b.c.plugin["xep_0030"].get_info(jid=a.bare, timeout=WAIT)
        assert info["disco_info"]["identities"]
        with pytest.raises(IqError) as exc:
            await c.c.plugin["xep_0030"].get_info(jid=a.bare, timeout=WAIT)
        assert exc.value.iq["error"]["condition"] == "service-unavailable"
    finally:
        await close(a, b, c)


async def test_aioxmpp_roster_and_presence_see_a_subscription(server):
    alice = await add_user(server, "alice")
    bob = await login(server, "bob")
    try:
        client = aioxmpp.PresenceManagedClient(
            aioxmpp.JID.fromstr(alice),
            aioxmpp.make_security_layer(PASSWORD, no_verify=True),
            override_peer=[("127.0.0.1", server.ports["c2s"], aioxmpp.connector.STARTTLSConnector())],
        )
        # summoned before connecting: the roster is requested while the stream is set up
        roster = client.summon(aioxmpp.RosterClient)
        presence = client.summon(aioxmpp.PresenceClient)
        client.presence = aioxmpp.PresenceState(True)
        async with client.connected():
            loop = asyncio.get_running_loop()
            added = loop.create_future()
            subscribed = loop.create_future()
            available = loop.create_future()
            roster.on_entry_added.connect(lambda item: added.done() or added.set_result(item))
            roster.on_entry_subscription_state_changed.connect(
                lambda item: item.subscription == "to" and not subscribed.done() and subscribed.set_result(item)
            )
            presence.on_available.connect(lambda full, st: full.bare() == aioxmpp.JID.fromstr(bob.bare) and not available.done() and available.set_result(full))
            roster.subscribe(aioxmpp.JID.fromstr(bob.bare))
            await bob.expect(alice, "subscribe")
            item = await asyncio.wait_for(added, WAIT)
            assert str(item.jid) == bob.bare and item.ask == "subscribe"
            bob.send(alice, "subscribed")
            item = await asyncio.wait_for(subscribed, WAIT)
            assert item.subscription == "to" and item.ask is None
            full = await asyncio.wait_for(available, WAIT)  # bob's presence arrives with the approval
            assert str(full) == bob.jid
            assert await server.features["roster"].subscription(bob.bare, alice) == "from"
    finally:
        await close(bob)

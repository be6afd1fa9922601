"""Mute several members in one request, and slow mode, over real sockets: slixmpp with our plugin
(client.plugin['mute']) and aioxmpp as a standard MUC client that only sees XEP-0045 and RFC 6120."""

from __future__ import annotations

import contextlib

import aioxmpp
import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form as SlixForm

from xmppd.app import Server
from xmppd_extensions.mute.slixmpp_plugin import Member

from ...features.muc_support import join
from ...helpers import FakeClock, add_user, make_config
from .support import ADMIN, aioxmpp_in_room, app_element, assert_valid, disabled_option, mute_server
from .test_wire import ROOM, close, room_with

pytestmark = pytest.mark.interop

@contextlib.asynccontextmanager
async def server_on(tmp_path, clock: FakeClock, *overrides: str):
    server = Server(make_config(tmp_path, disabled_option(), f'server.admins=["{ADMIN}"]', "mute.timer_tick=0.5", *overrides),
                    clock=clock)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def is_visitor(nick: str):
    return lambda p: p["from"].resource == nick and p["muc"]["role"] == "visitor"


async def test_several_members_muted_in_one_request(tmp_path):
    async with mute_server(tmp_path, "mute.max_batch=3") as srv:
        olga, bob, alice, carol, dave = await room_with(srv, "olga", "bob", "alice", "carol", "dave", admins=("bob",))
        m = bob.plugin["mute"]
        try:
            items = await m.mute_many(ROOM, [{"nick": "alice"}, {"jid": "carol@localhost"}, {"nick": "alice"}],
                                      seconds=600, reason="flood")
            assert [(i["jid"], i["nick"], i["reason"]) for i in items] == [
                ("alice@localhost", "alice", "flood"), ("carol@localhost", "carol", "flood")]
            assert all(int(i["remaining"]) in (600, 601) for i in items)
            for i in items:
                assert_valid(i.xml)
            await olga.inbox.presence(is_visitor("alice"))
            await olga.inbox.presence(is_visitor("carol"))
            # all or nothing: one member out of reach (the owner) and nobody is muted
            with pytest.raises(IqError) as info:
                await m.mute_many(ROOM, [{"nick": "dave"}, {"nick": "olga"}], seconds=60)
            assert info.value.iq["error"]["condition"] == "not-allowed"
            assert (await m.status(ROOM, nick="dave"))["muted"] in ("", "false")
            assert sorted(i["jid"] for i in (await m.list(ROOM)).members()) == ["alice@localhost", "carol@localhost"]
            # an unknown nick in the batch: item-not-found, and again nobody muted
            with pytest.raises(IqError) as info:
                await m.mute_many(ROOM, [{"nick": "dave"}, {"nick": "nobody"}], seconds=60)
            assert info.value.iq["error"]["condition"] == "item-not-found"
            assert len((await m.list(ROOM)).members()) == 2
            # more members than [mute] max_batch, and members beside a 'nick' attribute
            with pytest.raises(IqError) as info:
                await m.mute_many(ROOM, [{"jid": f"u{i}@localhost"} for i in range(4)], seconds=60)
            assert info.value.iq["error"]["condition"] == "not-acceptable"
            iq = bob.make_iq(ito=ROOM, itype="set")
            iq["mute_mute"]["nick"] = "dave"
            iq["mute_mute"].append(Member())
            with pytest.raises(IqError) as info:
                await iq.send(timeout=5)
            assert info.value.iq["error"]["condition"] == "bad-request"
            # a participant mutes nobody, alone or in a batch
            with pytest.raises(IqError) as info:
                await dave.plugin["mute"].mute_many(ROOM, [{"nick": "bob"}], seconds=60)
            assert info.value.iq["error"]["condition"] == "forbidden"
        finally:
            await close(olga, bob, alice, carol, dave)


def said(nick: str, body: str):
    return lambda msg: msg["type"] == "groupchat" and msg["from"].resource == nick and msg["body"] == body


async def test_slow_mode_set_by_admins_enforced_per_member(tmp_path):
    clock = FakeClock()
    async with server_on(tmp_path, clock, "mute.max_slow_seconds=600") as srv:
        olga, bob, alice, carol = await room_with(srv, "olga", "bob", "alice", "carol", admins=("bob",))
        try:
            # only owners and admins set it; bounds are checked
            with pytest.raises(IqError) as info:
                await alice.plugin["mute"].slow_mode(ROOM, 30)
            assert info.value.iq["error"]["condition"] == "forbidden"
            with pytest.raises(IqError) as info:
                await bob.plugin["mute"].slow_mode(ROOM, 601)
            assert info.value.iq["error"]["condition"] == "bad-request"
            assert (await alice.plugin["mute"].get_slow_mode(ROOM))["seconds"] == "0"
            await bob.plugin["mute"].slow_mode(ROOM, 30)
            state = await alice.plugin["mute"].get_slow_mode(ROOM)
            assert state["seconds"] == "30" and state["wait"] == "0"
            assert_valid(state.xml)
            for c in (olga, bob, alice, carol):
                c.inbox.drain()

            alice.send_message(mto=ROOM, mbody="one", mtype="groupchat")
            await olga.inbox.message(said("alice", "one"))
            clock.advance(10)
            alice.send_message(mto=ROOM, mbody="two", mtype="groupchat")
            err = await alice.inbox.message(lambda msg: msg["type"] == "error")
            # slixmpp's Error stanza does not list RFC 6120's policy-violation: read the XML
            assert err.xml.find("{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}policy-violation") is not None
            assert err["error"]["type"] == "wait" and "slow mode" in err["error"]["text"]
            app = app_element(err, "slow-mode")
            assert app is not None and app.get("seconds") == "30" and app.get("wait") == "20" and app.get("room") == ROOM
            assert err["error"]["mute_slow_mode"]["wait"] == "20"
            assert (await alice.plugin["mute"].get_slow_mode(ROOM))["wait"] == "20"
            # each member has its own clock; admins and owners are not held back
            carol.send_message(mto=ROOM, mbody="carol speaks", mtype="groupchat")
            await olga.inbox.message(said("carol", "carol speaks"))
            for n in ("b1", "b2"):
                bob.send_message(mto=ROOM, mbody=n, mtype="groupchat")
                await olga.inbox.message(said("bob", n))
            # the refused message reached nobody; after the interval alice speaks again
            clock.advance(20)
            alice.send_message(mto=ROOM, mbody="three", mtype="groupchat")
            got = await olga.inbox.message(lambda msg: msg["type"] == "groupchat" and msg["from"].resource == "alice")
            assert got["body"] == "three"
            # the owner turns it off through the room's configuration form (the same field)
            form = await olga.plugin["xep_0045"].get_room_config(ROOM)
            assert {f["var"]: f["value"] for f in form["fields"]}["xmppd#mute_slow_seconds"] == "30"
            submit = SlixForm()
            submit["type"] = "submit"
            submit.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/muc#roomconfig")
            submit.add_field(var="xmppd#mute_slow_seconds", value="0")
            await olga.plugin["xep_0045"].set_room_config(ROOM, submit, timeout=5)
            assert (await alice.plugin["mute"].get_slow_mode(ROOM))["seconds"] == "0"
            alice.send_message(mto=ROOM, mbody="four", mtype="groupchat")
            await olga.inbox.message(said("alice", "four"))
            alice.send_message(mto=ROOM, mbody="five", mtype="groupchat")
            await olga.inbox.message(said("alice", "five"))
        finally:
            await close(olga, bob, alice, carol)


async def test_slow_mode_seen_by_a_standard_client(tmp_path):
    """aioxmpp knows nothing of our namespace: it gets a policy-violation error with a text."""
    clock = FakeClock()
    async with server_on(tmp_path, clock) as srv:
        (olga,) = await room_with(srv, "olga")
        await add_user(srv, "zed")
        try:
            await olga.plugin["mute"].slow_mode(ROOM, 60)
            async with aioxmpp_in_room(srv, "zed@localhost", ROOM, "zed") as zed:
                await zed.say("first")
                await zed.say("second")
                await olga.inbox.message(said("zed", "first"))
                err = await zed.error()
                assert err.condition == aioxmpp.ErrorCondition.POLICY_VIOLATION
                assert "wait 60 more seconds" in err.text
        finally:
            await close(olga)


async def test_slow_mode_clocks_survive_a_restart(tmp_path):
    """The time of a member's last message is kept in storage (mute_slow) by the node serving
    the room: after a restart the member still waits the rest of the interval."""
    clock = FakeClock()
    async with server_on(tmp_path, clock) as srv:
        olga, alice = await room_with(srv, "olga", "alice", persistent=True)
        try:
            await olga.plugin["mute"].slow_mode(ROOM, 60)
            alice.send_message(mto=ROOM, mbody="before", mtype="groupchat")
            await olga.inbox.message(said("alice", "before"))
        finally:
            await close(olga, alice)
    clock.advance(15)
    async with server_on(tmp_path, clock) as srv:
        from .support import client as login

        olga, alice = await login(srv, "olga", create=False), await login(srv, "alice", create=False)
        try:
            await join(olga, ROOM, "olga")
            await join(alice, ROOM, "alice")
            assert (await alice.plugin["mute"].get_slow_mode(ROOM))["wait"] == "45"
            alice.inbox.drain()
            alice.send_message(mto=ROOM, mbody="too soon", mtype="groupchat")
            err = await alice.inbox.message(lambda msg: msg["type"] == "error")
            assert app_element(err, "slow-mode").get("wait") == "45"
            clock.advance(45)
            alice.send_message(mto=ROOM, mbody="after", mtype="groupchat")
            await olga.inbox.message(said("alice", "after"))
        finally:
            await close(olga, alice)

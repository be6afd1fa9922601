"""XEP-0045 with aioxmpp's MUCClient (join, message, leave), service discovery, and the room events API."""
from __future__ import annotations

import asyncio

import aioxmpp
import aioxmpp.muc
import pytest
from slixmpp.exceptions import IqError, PresenceError

from xmppd.core.hooks import Flow
from xmppd.errors import Condition, StanzaError
from xmppd.features.muc import events as E
from xmppd.features.muc.affiliations import Role

from ..aiox import aioxmpp_client
from ..helpers import add_user, running_server, slix_close
from .muc_support import MUC_USER, codes, create, join, room_jid, user

pytestmark = pytest.mark.interop


@pytest.fixture
async def srv(tmp_path):
    async with running_server(tmp_path) as s:
        yield s


async def test_aioxmpp_join_message_leave(srv):
    room = room_jid(srv, "aio")
    a = await user(srv, "alice")
    await add_user(srv, "bob")
    try:
        await create(a, room, "Alice", name="Aio room")
        async with aioxmpp_client(srv, "bob@localhost") as client:
            muc = client.summon(aioxmpp.muc.MUCClient)
            got: asyncio.Queue = asyncio.Queue()
            mroom, joined = muc.join(aioxmpp.JID.fromstr(room), "Bob", history=aioxmpp.muc.xso.History(maxstanzas=0))
            mroom.on_message.connect(lambda msg, member, source, **kw: got.put_nowait((msg, member)))
            await asyncio.wait_for(joined, 5)
            assert sorted(m.nick for m in mroom.members) == ["Alice", "Bob"]
            assert mroom.me.role == "participant"
            a.send_message(mto=room, mbody="hi aioxmpp", mtype="groupchat")
            while True:
                msg, member = await asyncio.wait_for(got.get(), 5)
                if msg.body and msg.body.any() == "hi aioxmpp":
                    break
            assert member.nick == "Alice"
            reply = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT, to=aioxmpp.JID.fromstr(room))
            reply.body[None] = "hello from aioxmpp"
            await client.send(reply)
            echo = await a.inbox.message(lambda m: m["body"] == "hello from aioxmpp")
            assert str(echo["from"]) == f"{room}/Bob"
            await asyncio.wait_for(mroom.leave(), 5)
            gone = await a.inbox.presence(lambda p: str(p["from"]) == f"{room}/Bob" and p["type"] == "unavailable")
            assert gone["muc"]["role"] == "none"
    finally:
        await slix_close(a)


async def test_disco_of_service_rooms_and_unique_names(srv):
    a, b = await user(srv, "alice"), await user(srv, "bob")
    try:
        disco = b.plugin["xep_0030"]
        server_items = await disco.get_items(jid="localhost", timeout=5)
        assert ("conference.localhost", None, "Chatrooms") in server_items["disco_items"]["items"]
        info = await disco.get_info(jid="conference.localhost", timeout=5)
        feats = set(info["disco_info"]["features"])
        assert {"http://jabber.org/protocol/muc", "urn:xmpp:mucsub:0", "http://jabber.org/protocol/muc#unique", "jabber:x:conference"} <= feats
        assert ("conference", "text", None, "Chatrooms") in info["disco_info"]["identities"]
        await create(a, room_jid(srv, "open"), "Alice", name="Open room", description="all welcome")
        await create(a, room_jid(srv, "secret"), "Alice", public=False, members_only=True, moderated=True, password="pw", whois="anyone")
        items = (await disco.get_items(jid="conference.localhost", timeout=5))["disco_items"]["items"]
        assert [(j, n) for j, _node, n in items] == [("open@conference.localhost", "Open room")]
        ri = await disco.get_info(jid=room_jid(srv, "open"), timeout=5)
        f = set(ri["disco_info"]["features"])
        assert {"muc_public", "muc_open", "muc_unmoderated", "muc_semianonymous", "muc_unsecured", "muc_temporary"} <= f
        form = ri["disco_info"].xml.find("{jabber:x:data}x")
        vals = {x.get("var"): x.findtext("{jabber:x:data}value") for x in form.findall("{jabber:x:data}field")}
        assert vals["FORM_TYPE"] == "http://jabber.org/protocol/muc#roominfo"
        assert vals["muc#roominfo_description"] == "all welcome" and vals["muc#roominfo_occupants"] == "1"
        si = await disco.get_info(jid=room_jid(srv, "secret"), timeout=5)
        assert {"muc_hidden", "muc_membersonly", "muc_moderated", "muc_nonanonymous", "muc_passwordprotected"} <= set(si["disco_info"]["features"])
        # muc#unique: a fresh name each time
        iq = b.make_iq_get(ito="conference.localhost")
        iq.append(__import__("slixmpp").xmlstream.ET.Element("{http://jabber.org/protocol/muc#unique}unique"))
        res = await iq.send(timeout=5)
        name = res.xml.findtext("{http://jabber.org/protocol/muc#unique}unique")
        assert name and srv.features["muc"].get_room(f"{name}@conference.localhost") is None
        # the occupants of a room, for those in it
        await join(b, room_jid(srv, "open"), "Bob")
        occ = await disco.get_items(jid=room_jid(srv, "open"), timeout=5)
        assert sorted(j for j, _n, _name in occ["disco_items"]["items"]) == ["open@conference.localhost/Alice", "open@conference.localhost/Bob"]
        # XEP-0410 self-ping: joined answers, a stranger gets not-acceptable
        await b.plugin["xep_0199"].send_ping(f"{room_jid(srv, 'open')}/Bob", timeout=5)
        c = await user(srv, "carol")
        with pytest.raises(IqError) as err:
            await c.plugin["xep_0199"].send_ping(f"{room_jid(srv, 'open')}/Bob", timeout=5)
        assert err.value.condition == "not-acceptable"
        await slix_close(c)
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_room_events_let_extensions_deny_mute_and_notice(srv):
    muc = srv.features["muc"]
    seen: list[object] = []

    async def pre_join(ev: E.PreJoin) -> Flow:
        if ev.nick == "Spammer":
            raise StanzaError(Condition.NOT_ALLOWED, "no spammers")
        return Flow.CONTINUE

    async def before(ev: E.GroupchatBeforeBroadcast) -> Flow:
        body = ev.stanza.findtext("{jabber:client}body")
        if body == "forbidden word":
            raise StanzaError(Condition.NOT_ACCEPTABLE, "mind your language")
        if body == "drop me":
            return Flow.STOP
        from lxml import etree
        etree.SubElement(ev.stanza, "{urn:example:tag}tag", nsmap={None: "urn:example:tag"}).text = "checked"
        return Flow.CONTINUE

    async def role_changed(ev: E.OccupantRoleChanged) -> Flow:
        seen.append((ev.nick, ev.old, ev.new, ev.reason))
        return Flow.CONTINUE

    async def disco(ev: E.RoomDiscoInfo) -> Flow:
        ev.features.append("urn:example:redpacket:0")
        return Flow.CONTINUE

    undo = [muc.events.add(E.PRE_JOIN, pre_join), muc.events.add(E.GROUPCHAT_BEFORE_BROADCAST, before),
            muc.events.add(E.OCCUPANT_ROLE_CHANGED, role_changed), muc.events.add(E.ROOM_DISCO_INFO, disco)]
    a, b, s = await user(srv, "alice"), await user(srv, "bob"), await user(srv, "sam")
    room = room_jid(srv, "ext")
    try:
        await create(a, room, "Alice")
        with pytest.raises(PresenceError) as err:
            await join(s, room, "Spammer")
        assert err.value.condition == "not-allowed"
        await join(b, room, "Bob")
        b.send_message(mto=room, mbody="forbidden word", mtype="groupchat")
        assert (await b.inbox.message(lambda m: m["type"] == "error"))["error"]["condition"] == "not-acceptable"
        b.send_message(mto=room, mbody="drop me", mtype="groupchat")
        b.send_message(mto=room, mbody="fine", mtype="groupchat")
        got = await a.inbox.message(lambda m: m["body"] in ("fine", "drop me"))
        assert got["body"] == "fine" and got.xml.findtext("{urn:example:tag}tag") == "checked"
        # the public API: mute (role -> visitor with a reason), then a notice from the room itself
        r = muc.get_room(room)
        assert r.is_member(__import__("xmppd.jid", fromlist=["JID"]).JID.parse("bob@localhost")) is False
        await r.set_role("Bob", Role.VISITOR, reason="muted for 10 minutes")
        muted = await b.inbox.presence(lambda p: str(p["from"]) == f"{room}/Bob" and p["muc"]["role"] == "visitor")
        assert "110" in codes(muted) and muted.xml.find(f".//{{{MUC_USER}}}reason").text == "muted for 10 minutes"
        assert seen == [("Bob", Role.PARTICIPANT, Role.VISITOR, "muted for 10 minutes")]
        await r.send_notice("Bob is muted")
        notice = await b.inbox.message(lambda m: m["body"] == "Bob is muted")
        assert str(notice["from"]) == room and notice["type"] == "groupchat"
        info = await b.plugin["xep_0030"].get_info(jid=room, timeout=5)
        assert "urn:example:redpacket:0" in info["disco_info"]["features"]
    finally:
        for u in undo:
            u()
        for c in (a, b, s):
            await slix_close(c)

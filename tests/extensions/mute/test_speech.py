"""One speech gate (issue 15 items 2, 3 and 10), over real sockets with slixmpp: a muted member
reaches nobody through a red packet, a private message without a body, a nick change or status
text; XEP-0045 voice obeys the mute hierarchy; rooms configure visitors' nick and status changes
as ejabberd does."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from slixmpp.exceptions import IqError

from xmppd.core.loader import discover
from xmppd.features.muc.affiliations import Affiliation, Role
from xmppd.jid import JID
from xmppd_extensions.redpacket import slixmpp_plugin as rp_plugin

from ...helpers import running_server
from .support import ADMIN, NEEDED, app_element, assert_valid, client
from .test_wire import ROOM, _config_form, close, groupchat_from, is_notice, is_presence_of, room_with

pytestmark = pytest.mark.interop
RP = "urn:xmppd:redpacket:0"


@contextlib.asynccontextmanager
async def speech_server(data_dir):
    keep = NEEDED | {"redpacket"}
    disabled = f"features.disabled={json.dumps(sorted(n for n in discover() if n not in keep))}"
    async with running_server(data_dir, disabled, f'server.admins=["{ADMIN}"]', "mute.timer_tick=0.5",
                              "redpacket.contacts_only=false") as srv:  # the speech gates, not contacts
        yield srv


@pytest.fixture
async def srv(tmp_path):
    async with speech_server(tmp_path) as s:
        yield s


def with_wallet(c):
    c.register_plugin("redpacket", module=rp_plugin)
    return c


def rp_message(m) -> bool:
    return m.xml.find(f"{{{RP}}}redpacket") is not None


async def balances(srv, *names: str) -> dict[str, int]:
    repo = srv.features["redpacket"].repo
    return {n: await repo.balance(f"{n}@localhost") for n in names}


async def mute_by(kind: str, srv, olga, admin) -> str:
    """Mute alice in ROOM one way; the application element her refusals carry."""
    if kind == "member":
        await olga.plugin["mute"].mute(ROOM, nick="alice", seconds=600, reason="spam")
        return "muted"
    if kind == "all":
        await olga.plugin["mute"].mute_all(ROOM, reason="quiet")
        return "all-muted"
    await admin.plugin["mute"].platform_mute("alice@localhost", seconds=600, reason="abuse")
    return "platform-muted"


# ---------------------------------------------------------------------------- item 2: red packets


@pytest.mark.parametrize("kind", ["member", "all", "platform"])
async def test_a_muted_member_cannot_speak_through_a_room_red_packet_and_keeps_his_money(srv, kind):
    admin = await client(srv, "admin")
    olga, bob, alice = await room_with(srv, "olga", "bob", "alice", members=("bob", "alice"))
    feat = srv.features["redpacket"]
    await feat.repo.topup("alice@localhost", 100, feat.now())
    with_wallet(alice)
    try:
        app = await mute_by(kind, srv, olga, admin)
        olga.inbox.drain()
        before = await balances(srv, "alice", "bob")
        # the probe of the issue: a 1-fen packet exclusive to himself, his text in the greeting
        with pytest.raises(IqError) as info:
            await alice.plugin["redpacket"].send_packet(ROOM, client_id="p1", total=1, exclusive="alice@localhost",
                                                 greeting="buy cheap followers at spam.example")
        assert info.value.iq["error"]["condition"] == "bad-request"
        assert "yourself" in info.value.iq["error"]["text"]
        # and the same packet for someone else: refused with the error the groupchat path gives
        with pytest.raises(IqError) as info:
            await alice.plugin["redpacket"].send_packet(ROOM, client_id="p2", total=1, exclusive="bob@localhost",
                                                 greeting="buy cheap followers at spam.example")
        assert info.value.iq["error"]["condition"] == "forbidden"
        el = app_element(info.value.iq, app)
        assert el is not None, info.value.iq
        assert_valid(el)
        alice.send_message(mto=ROOM, mbody="buy cheap followers", mtype="groupchat")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "forbidden" and app_element(err, app) is not None
        # nothing moved, nothing was posted
        assert await balances(srv, "alice", "bob") == before == {"alice": 100, "bob": 0}
        assert (await feat.repo.audit()).ok
        with pytest.raises(asyncio.TimeoutError):
            await olga.inbox.message(rp_message, timeout=0.5)
    finally:
        await close(admin, olga, bob, alice)


async def test_a_visitor_of_a_moderated_room_cannot_post_a_red_packet_either(srv):
    olga, alice = await room_with(srv, "olga", "alice", moderated=True)
    feat = srv.features["redpacket"]
    await feat.repo.topup("alice@localhost", 50, feat.now())
    with_wallet(alice)
    try:
        assert srv.features["muc"].get_room(ROOM).occupants.get("alice").role is Role.VISITOR
        with pytest.raises(IqError) as info:
            await alice.plugin["redpacket"].send_packet(ROOM, client_id="v1", total=5, greeting="hello")
        assert info.value.iq["error"]["condition"] == "forbidden" and "visitors" in info.value.iq["error"]["text"]
        assert (await balances(srv, "alice"))["alice"] == 50
        # with voice, the packet goes out
        await olga.plugin["xep_0045"].set_role(ROOM, "alice", "participant")
        sent = await alice.plugin["redpacket"].send_packet(ROOM, client_id="v2", total=5, greeting="hello")
        got = await olga.inbox.message(rp_message)
        assert got.xml.find(f"{{{RP}}}redpacket").get("id") == sent["id"]
        assert (await balances(srv, "alice"))["alice"] == 45
    finally:
        await close(olga, alice)


async def test_a_platform_muted_account_cannot_send_a_one_to_one_red_packet(srv):
    admin, alice, dave = await client(srv, "admin"), await client(srv, "alice"), await client(srv, "dave")
    feat = srv.features["redpacket"]
    await feat.repo.topup("alice@localhost", 100, feat.now())
    with_wallet(alice)
    try:
        await admin.plugin["mute"].platform_mute("alice@localhost", seconds=600, reason="abuse")
        with pytest.raises(IqError) as info:
            await alice.plugin["redpacket"].send_packet("dave@localhost", client_id="c1", total=1, greeting="spam spam")
        assert info.value.iq["error"]["condition"] == "forbidden"
        assert app_element(info.value.iq, "platform-muted") is not None
        assert await balances(srv, "alice", "dave") == {"alice": 100, "dave": 0}
        with pytest.raises(asyncio.TimeoutError):
            await dave.inbox.message(rp_message, timeout=0.5)
        # to a server admin (the appeal path) a packet passes, as a message would
        await alice.plugin["redpacket"].send_packet(ADMIN, client_id="c2", total=1, greeting="sorry")
        await admin.inbox.message(rp_message)
        assert (await balances(srv, "alice"))["alice"] == 99
    finally:
        await close(admin, alice, dave)


# ---------------------------------------------------------------------------- item 3: voice


async def test_a_voice_grant_obeys_the_mute_hierarchy(srv):
    olga, adam, mo, alice = await room_with(srv, "olga", "adam", "mo", "alice", admins=("adam",))
    room = srv.features["muc"].get_room(ROOM)
    mute = srv.features["mute"]
    try:
        await room.set_role("mo", Role.MODERATOR)  # a moderator without affiliation
        await olga.plugin["mute"].mute(ROOM, nick="alice", reason="the owner says so")
        await alice.inbox.presence(is_presence_of("alice", "visitor"))
        # the unaffiliated moderator: neither the voice grant nor the mute protocol lifts the owner's mute
        with pytest.raises(IqError) as info:
            await mo.plugin["xep_0045"].set_role(ROOM, "alice", "participant")
        assert info.value.iq["error"]["condition"] == "not-allowed" and "owner" in info.value.iq["error"]["text"]
        with pytest.raises(IqError) as info:
            await mo.plugin["mute"].unmute(ROOM, nick="alice")
        assert info.value.iq["error"]["condition"] == "not-allowed"
        # an admin neither
        with pytest.raises(IqError) as info:
            await adam.plugin["xep_0045"].set_role(ROOM, "alice", "participant")
        assert info.value.iq["error"]["condition"] == "not-allowed"
        assert room.occupants.get("alice").role is Role.VISITOR
        assert [m.jid for m in await mute.repo.mutes()] == ["alice@localhost"]
        alice.inbox.drain()
        alice.send_message(mto=ROOM, mbody="free?", mtype="groupchat")
        assert app_element(await alice.inbox.message(lambda m: m["type"] == "error"), "muted") is not None
        # an affiliation change below admin does not give a muted member voice back
        await adam.plugin["xep_0045"].set_affiliation(ROOM, "member", jid="alice@localhost")
        await olga.inbox.presence(lambda p: p["from"].resource == "alice" and p["muc"]["affiliation"] == "member")
        assert room.occupants.get("alice").role is Role.VISITOR
        # the owner's voice grant lifts the mute, in storage too
        await olga.plugin["xep_0045"].set_role(ROOM, "alice", "participant")
        await olga.inbox.message(is_notice("unmute"))
        assert await mute.repo.mutes() == [] and (ROOM, JID.parse("alice@localhost")) not in mute.mutes
        alice.send_message(mto=ROOM, mbody="free!", mtype="groupchat")
        await olga.inbox.message(groupchat_from("alice", "free!"))
        # voice revokes obey it too: the unaffiliated moderator can't silence a member; an admin can,
        # and lifts that mute again with a voice grant
        with pytest.raises(IqError) as info:
            await mo.plugin["xep_0045"].set_role(ROOM, "alice", "visitor")
        assert info.value.iq["error"]["condition"] == "not-allowed"
        assert room.occupants.get("alice").role is Role.PARTICIPANT and await mute.repo.mutes() == []
        await adam.plugin["xep_0045"].set_role(ROOM, "alice", "visitor")
        await alice.inbox.presence(is_presence_of("alice", "visitor"))
        assert [(m.jid, m.source) for m in await mute.repo.mutes()] == [("alice@localhost", "voice")]
        await adam.plugin["xep_0045"].set_role(ROOM, "alice", "participant")
        await alice.inbox.presence(is_presence_of("alice", "participant"))
        assert await mute.repo.mutes() == []
    finally:
        await close(olga, adam, mo, alice)


# ---------------------------------------------------------------------------- item 10: side channels


def pm(c, to: str, payload: str, id: str) -> None:
    c.send_raw(f"<message type='chat' to='{to}' id='{id}'>{payload}</message>")


REACTION = "<reactions xmlns='urn:xmpp:reactions:0' id='x1'><reaction>💰</reaction></reactions>"
OOB = "<x xmlns='jabber:x:oob'><url>https://spam.example/buy</url></x>"
CHAT_STATE = "<composing xmlns='http://jabber.org/protocol/chatstates'/>"


@pytest.mark.parametrize("kind", ["member", "all", "platform"])
async def test_a_muted_member_reaches_nobody_through_private_messages_nick_or_status(srv, kind):
    admin = await client(srv, "admin")
    olga, bob, alice = await room_with(srv, "olga", "bob", "alice")
    try:
        app = await mute_by(kind, srv, olga, admin)
        for c in (olga, bob, alice):
            c.inbox.drain()
        # private messages without a body: reactions, OOB links, even chat states
        for i, payload in enumerate((REACTION, OOB, CHAT_STATE)):
            pm(alice, f"{ROOM}/bob", payload, f"pm{i}")
            err = await alice.inbox.message(lambda m, i=i: m["type"] == "error" and m["id"] == f"pm{i}")
            assert err["error"]["condition"] == "forbidden" and app_element(err, app) is not None
        with pytest.raises(asyncio.TimeoutError):
            await bob.inbox.message(lambda m: m["from"] == f"{ROOM}/alice", timeout=0.5)
        # a nick change is refused; the room still knows her as alice
        alice.send_presence(pto=f"{ROOM}/buy_followers_at_spam_example")
        err = await alice.inbox.presence(lambda p: p["type"] == "error")
        assert err["error"]["condition"] == "forbidden" and app_element(err, app) is not None
        assert srv.features["muc"].get_room(ROOM).occupants.get("alice") is not None
        # status text does not reach the others; the availability change does
        alice.send_presence(pto=f"{ROOM}/alice", pshow="away", pstatus="buy followers at spam.example")
        seen = await bob.inbox.presence(lambda p: p["from"].resource == "alice" and p["show"] == "away")
        assert seen["status"] == "" and seen.xml.find("{jabber:client}status") is None
    finally:
        await close(admin, olga, bob, alice)


async def test_a_platform_muted_account_sends_no_reactions_or_links_one_to_one(srv):
    admin, alice, dave = await client(srv, "admin"), await client(srv, "alice"), await client(srv, "dave")
    try:
        await admin.plugin["mute"].platform_mute("alice@localhost", seconds=600)
        for i, payload in enumerate((REACTION, OOB)):
            pm(alice, "dave@localhost", payload, f"o{i}")
            err = await alice.inbox.message(lambda m, i=i: m["type"] == "error" and m["id"] == f"o{i}")
            assert app_element(err, "platform-muted") is not None
        pm(alice, "dave@localhost", CHAT_STATE, "o9")  # not content: passes
        got = await dave.inbox.message(lambda m: m["id"] == "o9")
        assert got.xml.find("{http://jabber.org/protocol/chatstates}composing") is not None
        with pytest.raises(asyncio.TimeoutError):
            await dave.inbox.message(lambda m: m["id"] in ("o0", "o1"), timeout=0.3)
    finally:
        await close(admin, alice, dave)


async def test_private_messages_of_muted_members_pass_when_the_room_allows_them(srv):
    olga, bob, alice = await room_with(srv, "olga", "bob", "alice")
    try:
        await olga.plugin["mute"].mute_all(ROOM)
        await olga.plugin["xep_0045"].set_room_config(ROOM, _config_form({"xmppd#mute_block_private": "0"}), timeout=5)
        pm(alice, f"{ROOM}/bob", REACTION, "ok1")
        got = await bob.inbox.message(lambda m: m["id"] == "ok1")
        assert got["from"] == f"{ROOM}/alice"
    finally:
        await close(olga, bob, alice)


async def test_rooms_decide_whether_visitors_change_nick_and_show_status(srv):
    olga, bob, vic = await room_with(srv, "olga", "bob", "vic", members=("bob",), moderated=True)
    room = srv.features["muc"].get_room(ROOM)
    try:
        assert room.occupants.get("vic").role is Role.VISITOR  # not muted: a visitor of a moderated room
        form = await olga.plugin["xep_0045"].get_room_config(ROOM)
        values = {f.get("var"): f.findtext("{jabber:x:data}value") for f in form.xml.iter("{jabber:x:data}field")}
        assert values["muc#roomconfig_allowvisitornickchange"] == "1"
        assert values["muc#roomconfig_allowvisitorstatus"] == "1"
        # defaults (as ejabberd): visitors may change nick and show status text
        vic.send_presence(pto=f"{ROOM}/victor", pstatus="hello")
        seen = await bob.inbox.presence(lambda p: p["from"].resource == "victor" and p["type"] != "unavailable")
        assert seen["status"] == "hello"
        await olga.plugin["xep_0045"].set_room_config(ROOM, _config_form({
            "muc#roomconfig_allowvisitornickchange": "0", "muc#roomconfig_allowvisitorstatus": "0"}), timeout=5)
        assert not room.config.allow_visitor_nickchange and not room.config.allow_visitor_status
        vic.inbox.drain()
        vic.send_presence(pto=f"{ROOM}/vicky")
        err = await vic.inbox.presence(lambda p: p["type"] == "error")
        assert err["error"]["condition"] == "not-allowed" and "visitors" in err["error"]["text"]
        vic.send_presence(pto=f"{ROOM}/victor", pshow="dnd", pstatus="look at me")
        seen = await bob.inbox.presence(lambda p: p["from"].resource == "victor" and p["show"] == "dnd")
        assert seen.xml.find("{jabber:client}status") is None
        # a participant is not a visitor: its status text still shows
        bob.send_presence(pto=f"{ROOM}/bob", pstatus="participant here")
        seen = await olga.inbox.presence(lambda p: p["from"].resource == "bob" and p["status"] == "participant here")
        assert seen is not None
    finally:
        await close(olga, bob, vic)


async def test_a_muted_member_joins_without_status_text(srv):
    olga, alice = await room_with(srv, "olga", "alice", members=("alice",))
    try:
        await olga.plugin["mute"].mute(ROOM, nick="alice", seconds=600)
        alice.plugin["xep_0045"].leave_muc(ROOM, "alice")
        await olga.inbox.presence(lambda p: p["from"].resource == "alice" and p["type"] == "unavailable")
        await asyncio.sleep(0.1)
        olga.inbox.drain()
        alice.send_raw(f"<presence to='{ROOM}/alice'><status>buy at spam.example</status>"
                       "<x xmlns='http://jabber.org/protocol/muc'/></presence>")
        seen = await olga.inbox.presence(lambda p: p["from"].resource == "alice" and p["type"] != "unavailable")
        assert seen["muc"]["role"] == "visitor" and seen.xml.find("{jabber:client}status") is None
        assert srv.features["muc"].get_room(ROOM).affiliation(JID.parse("alice@localhost")) is Affiliation.MEMBER
    finally:
        await close(olga, alice)


async def test_a_muted_member_can_neither_invite_nor_change_the_subject(srv):
    olga, adam, alice = await room_with(srv, "olga", "adam", "alice", admins=("adam",))
    dave = await client(srv, "dave")
    try:
        await olga.plugin["mute"].mute(ROOM, nick="adam", seconds=600)  # an admin keeps the moderator role
        await olga.plugin["mute"].mute(ROOM, nick="alice", seconds=600)
        adam.inbox.drain()
        adam.send_raw(f"<message type='groupchat' to='{ROOM}' id='s1'><subject>buy at spam.example</subject></message>")
        err = await adam.inbox.message(lambda m: m["type"] == "error" and m["id"] == "s1")
        assert err["error"]["condition"] == "forbidden" and app_element(err, "muted") is not None
        assert srv.features["muc"].get_room(ROOM).subject != "buy at spam.example"
        alice.send_raw(f"<message to='{ROOM}' id='i1'><x xmlns='http://jabber.org/protocol/muc#user'>"
                       "<invite to='dave@localhost'><reason>buy at spam.example</reason></invite></x></message>")
        err = await alice.inbox.message(lambda m: m["type"] == "error" and m["id"] == "i1")
        assert err["error"]["condition"] == "forbidden" and app_element(err, "muted") is not None
        with pytest.raises(asyncio.TimeoutError):
            await dave.inbox.message(lambda m: m["from"].bare == ROOM, timeout=0.5)
    finally:
        await close(olga, adam, alice, dave)

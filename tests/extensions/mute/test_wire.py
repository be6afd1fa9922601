"""Group mute (urn:xmppd:mute:0) over real sockets with slixmpp (xep_0045 and our plugin):
timed mute and expiry, the error a muted sender gets (validated against the XSD), what
standard clients see (role visitor, notices in English and Chinese), rejoin, resources."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp.exceptions import IqError

from xmppd.features.muc.affiliations import Affiliation
from xmppd.features.muc.history import HistoryRequest
from xmppd.jid import JID

from ...features.muc_support import codes, create, join
from ...helpers import slix_close
from .support import app_element, assert_valid, client, mute_server

pytestmark = pytest.mark.interop

ROOM = "r@conference.localhost"


def is_presence_of(nick: str, role: str):
    return lambda p: p["from"].resource == nick and p["muc"]["role"] == role


def is_notice(action: str):
    return lambda m: m["type"] == "groupchat" and m["mute_notice"]["action"] == action


def groupchat_from(nick: str, body: str):
    return lambda m: m["type"] == "groupchat" and m["from"].resource == nick and m["body"] == body


async def room_with(srv, *names: str, admins: tuple[str, ...] = (), members: tuple[str, ...] = (), **config):
    """The first name creates ROOM and owns it; the others join; admins/members are affiliated first."""
    clients = [await client(srv, n) for n in names]
    await create(clients[0], ROOM, names[0], **config)
    room = srv.features["muc"].get_room(ROOM)
    for n in admins:
        await room.set_affiliation(JID.parse(f"{n}@localhost"), Affiliation.ADMIN)
    for n in members:
        await room.set_affiliation(JID.parse(f"{n}@localhost"), Affiliation.MEMBER)
    for c, n in zip(clients[1:], names[1:], strict=True):
        await join(c, ROOM, n)
    for c in clients:
        c.inbox.drain()
    return clients


async def close(*clients):
    for c in clients:
        await slix_close(c)


async def test_timed_mute_blocks_then_expires_by_itself(srv):
    olga, bob, alice = await room_with(srv, "olga", "bob", "alice", admins=("bob",))
    try:
        item = await bob.plugin["mute"].mute(ROOM, nick="alice", seconds=2, reason="spam")
        assert item["jid"] == "alice@localhost" and item["nick"] == "alice" and item["by"] == "bob@localhost"
        assert item["reason"] == "spam" and item["until"].endswith("Z") and int(item["remaining"]) in (2, 3)
        assert_valid(item.xml)
        # standard clients: the role becomes visitor with a presence broadcast (actor, reason)
        mine = await alice.inbox.presence(is_presence_of("alice", "visitor"))
        assert "110" in codes(mine)
        seen = await olga.inbox.presence(is_presence_of("alice", "visitor"))
        assert seen["muc"]["item"]["actor"]["nick"] == "bob" and seen["muc"]["item"]["reason"] == "spam"
        notice = await olga.inbox.message(is_notice("mute"))
        assert notice["from"].bare == ROOM and notice["body"] == "alice was muted for 2 seconds by bob (reason: spam)"
        assert notice["mute_notice"]["nick"] == "alice" and notice["mute_notice"]["seconds"] == "2"
        assert not notice["mute_notice"]["jid"], "semi-anonymous room: no real JID in the notice"
        assert_valid(notice["mute_notice"].xml)
        # the muted sender gets forbidden + <muted/>; nobody receives the message; history has none
        alice.send_message(mto=ROOM, mbody="let me speak", mtype="groupchat")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "forbidden" and "muted" in err["error"]["text"]
        app = app_element(err, "muted")
        assert app is not None and app.get("room") == ROOM and app.get("until") == item["until"]
        assert app.findtext("{urn:xmppd:mute:0}reason") == "spam"
        assert_valid(app)
        with pytest.raises(asyncio.TimeoutError):
            await olga.inbox.message(groupchat_from("alice", "let me speak"), timeout=0.5)
        room = srv.features["muc"].get_room(ROOM)
        assert all("let me speak" not in (h.findtext("{jabber:client}body") or "") for h in _history(room))
        # queries: the member's own status, the moderators' list
        st = await alice.plugin["mute"].status(ROOM)
        assert st["muted"] == "true" and st["room"]["until"] == item["until"] and st["room"]["reason"] == "spam"
        assert_valid(st.xml)
        lst = await bob.plugin["mute"].list(ROOM)
        assert [(i["jid"], i["nick"]) for i in lst.members()] == [("alice@localhost", "alice")]
        assert_valid(lst.xml)
        # expiry on time: participant again, a notice, and speech flows
        await alice.inbox.presence(is_presence_of("alice", "participant"), timeout=6)
        done = await olga.inbox.message(is_notice("expire"), timeout=5)
        assert done["body"] == "alice is no longer muted"
        alice.send_message(mto=ROOM, mbody="thanks", mtype="groupchat")
        await olga.inbox.message(groupchat_from("alice", "thanks"))
        assert (await alice.plugin["mute"].status(ROOM))["muted"] == "false"
        actions = [(e.action, e.target) for e in await srv.features["mute"].repo.audit(room=ROOM)]
        assert actions == [("expire", "alice@localhost"), ("mute", "alice@localhost")]
    finally:
        await close(olga, bob, alice)


def _history(room):
    """Every message the room keeps as history (the public select, everything asked for)."""
    return room.history.select(HistoryRequest(None, None, None, None), 0.0, room.jid_s)


async def test_mute_holds_across_resources_and_rejoin(srv):
    olga, alice = await room_with(srv, "olga", "alice")
    from .support import client as login
    alice2 = await login(srv, "alice", create=False)
    try:
        await join(alice2, ROOM, "alice")  # a second resource under the same nick (§7.2.9)
        await olga.plugin["mute"].mute(ROOM, jid="alice@localhost", seconds=600)
        for c in (alice, alice2):
            c.inbox.drain()
            c.send_message(mto=ROOM, mbody=f"from {c.boundjid.resource}", mtype="groupchat")
            err = await c.inbox.message(lambda m: m["type"] == "error")
            assert app_element(err, "muted") is not None
        # leave with both resources and come back: still a visitor, still refused
        for c in (alice, alice2):
            c.plugin["xep_0045"].leave_muc(ROOM, "alice")
        await olga.inbox.presence(lambda p: p["from"].resource == "alice" and p["type"] == "unavailable")
        await asyncio.sleep(0.1)
        pres, *_ = await join(alice, ROOM, "alice")
        assert pres["muc"]["role"] == "visitor"
        alice.inbox.drain()
        alice.send_message(mto=ROOM, mbody="back", mtype="groupchat")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert app_element(err, "muted") is not None
        # unmute: participant again, a notice, speech flows
        await olga.plugin["mute"].unmute(ROOM, nick="alice")
        await alice.inbox.presence(is_presence_of("alice", "participant"))
        n = await olga.inbox.message(is_notice("unmute"))
        assert n["body"] == "alice was unmuted by olga"
        alice.send_message(mto=ROOM, mbody="free", mtype="groupchat")
        await olga.inbox.message(groupchat_from("alice", "free"))
    finally:
        await close(olga, alice, alice2)


async def test_a_mute_survives_a_restart_and_then_expires(tmp_path):
    async with mute_server(tmp_path) as srv:
        olga, alice = await room_with(srv, "olga", "alice", persistent=True)
        try:
            await olga.plugin["mute"].mute(ROOM, nick="alice", seconds=3, reason="cool down")
        finally:
            await close(olga, alice)
    async with mute_server(tmp_path) as srv:  # a new server on the same data_dir
        from .support import client as login
        olga, alice = await login(srv, "olga", create=False), await login(srv, "alice", create=False)
        try:
            await join(olga, ROOM, "olga")
            pres, *_ = await join(alice, ROOM, "alice")
            assert pres["muc"]["role"] == "visitor"
            alice.inbox.drain()
            alice.send_message(mto=ROOM, mbody="after restart", mtype="groupchat")
            err = await alice.inbox.message(lambda m: m["type"] == "error")
            assert app_element(err, "muted").findtext("{urn:xmppd:mute:0}reason") == "cool down"
            # the timer was re-armed from storage: the mute ends on time
            await alice.inbox.presence(is_presence_of("alice", "participant"), timeout=8)
            await olga.inbox.message(is_notice("expire"), timeout=5)
            alice.send_message(mto=ROOM, mbody="speaking", mtype="groupchat")
            await olga.inbox.message(groupchat_from("alice", "speaking"))
            assert await srv.features["mute"].repo.mutes() == []
        finally:
            await close(olga, alice)


async def test_a_stale_mute_blocks_nobody(srv):
    """Enforcement compares the end time with now, whatever the timer does."""
    olga, alice = await room_with(srv, "olga", "alice")
    try:
        feat = srv.features["mute"]
        await olga.plugin["mute"].mute(ROOM, nick="alice", seconds=600)
        key = ("r@conference.localhost", JID.parse("alice@localhost"))
        m = feat.mutes[key]
        feat.mutes[key] = type(m)(m.room, m.jid, feat.now(), m.reason, m.actor, m.created_at, m.source)
        assert feat.active(ROOM, JID.parse("alice@localhost")) is None
        room = srv.features["muc"].get_room(ROOM)
        assert feat.room_block(room, JID.parse("alice@localhost"), None) is None
    finally:
        await close(olga, alice)


async def test_mute_all_leaves_owners_admins_and_exemptions_speaking(srv):
    olga, adam, mo, mia, wes = await room_with(srv, "olga", "adam", "mo", "mia", "wes", admins=("adam",),
                                              members=("mo", "mia", "wes"))
    try:
        room = srv.features["muc"].get_room(ROOM)
        await room.set_role("mo", __import__("xmppd.features.muc.affiliations", fromlist=["Role"]).Role.MODERATOR)
        with pytest.raises(IqError) as info:
            await mo.plugin["mute"].mute_all(ROOM)
        assert info.value.iq["error"]["condition"] == "forbidden"
        await adam.plugin["mute"].mute_all(ROOM, reason="quiet hour")
        n = await olga.inbox.message(is_notice("mute-all"))
        assert n["body"] == "adam muted everyone; only owners and admins may speak (reason: quiet hour)"
        for c in (mo, mia, wes):
            c.inbox.drain()
            c.send_message(mto=ROOM, mbody="hi", mtype="groupchat")
            err = await c.inbox.message(lambda m: m["type"] == "error")
            app = app_element(err, "all-muted")
            assert app is not None and app.get("room") == ROOM
            assert_valid(app)
        for c, nick in ((olga, "olga"), (adam, "adam")):
            c.send_message(mto=ROOM, mbody=f"{nick} speaks", mtype="groupchat")
            await mia.inbox.message(groupchat_from(nick, f"{nick} speaks"))
        st = await mia.plugin["mute"].status(ROOM)
        assert st["muted"] == "true" and st["all"]["by"] == "adam@localhost"
        # the room's settings: moderators exempt, and an allowlist
        await olga.plugin["xep_0045"].set_room_config(ROOM, _config_form({
            "xmppd#mute_all_exempt_moderators": "1", "xmppd#mute_all_allowlist": ["wes@localhost"]}), timeout=5)
        for c, nick in ((mo, "mo"), (wes, "wes")):
            c.send_message(mto=ROOM, mbody=f"{nick} speaks", mtype="groupchat")
            await olga.inbox.message(groupchat_from(nick, f"{nick} speaks"))
        mia.inbox.drain()
        mia.send_message(mto=ROOM, mbody="me too", mtype="groupchat")
        assert app_element(await mia.inbox.message(lambda m: m["type"] == "error"), "all-muted") is not None
        lst = await adam.plugin["mute"].list(ROOM)
        assert lst["all"]["reason"] == "quiet hour"
        await adam.plugin["mute"].unmute_all(ROOM)
        n = await olga.inbox.message(is_notice("unmute-all"))
        assert n["body"] == "adam lifted the mute on everyone"
        mia.send_message(mto=ROOM, mbody="finally", mtype="groupchat")
        await olga.inbox.message(groupchat_from("mia", "finally"))
        with pytest.raises(IqError) as info:
            await adam.plugin["mute"].unmute_all(ROOM)
        assert info.value.iq["error"]["condition"] == "item-not-found"
    finally:
        await close(olga, adam, mo, mia, wes)


def _config_form(values: dict):
    from slixmpp.plugins.xep_0004 import Form as SlixForm
    form = SlixForm()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/muc#roomconfig")
    for var, value in values.items():
        form.add_field(var=var, value=value)
    return form


async def test_the_hierarchy_decides_who_mutes_whom(srv):
    olga, adam, mo, pat, nina = await room_with(srv, "olga", "adam", "mo", "pat", "nina", admins=("adam",),
                                               members=("mo", "pat"))
    try:
        room = srv.features["muc"].get_room(ROOM)
        from xmppd.features.muc.affiliations import Role
        await room.set_role("mo", Role.MODERATOR)  # a member with the moderator role

        async def refused(c, condition, **kw):
            with pytest.raises(IqError) as info:
                await c.plugin["mute"].mute(ROOM, seconds=60, **kw)
            assert info.value.iq["error"]["condition"] == condition, info.value.iq
            return info.value.iq["error"]["text"]

        assert "admin" in await refused(mo, "not-allowed", nick="adam")  # a moderator can't mute an admin
        assert "owner" in await refused(adam, "not-allowed", nick="olga")  # an admin can't mute an owner
        await refused(mo, "not-allowed", nick="pat")  # nor an equal affiliation
        assert "moderators" in await refused(pat, "forbidden", nick="nina")  # a participant can't mute anybody
        await refused(nina, "forbidden", nick="pat")
        await refused(adam, "not-allowed", nick="adam")  # nobody mutes themselves
        # allowed: moderator -> unaffiliated, admin -> member, owner -> admin
        await mo.plugin["mute"].mute(ROOM, nick="nina", seconds=60)
        await adam.plugin["mute"].mute(ROOM, nick="pat", seconds=60)
        await olga.plugin["mute"].mute(ROOM, jid="adam@localhost", seconds=60)
        listed = {i["jid"] for i in (await olga.plugin["mute"].list(ROOM)).members()}
        assert listed == {"nina@localhost", "pat@localhost", "adam@localhost"}
        # a participant may not list; may ask only about itself
        with pytest.raises(IqError) as info:
            await nina.plugin["mute"].list(ROOM)
        assert info.value.iq["error"]["condition"] == "forbidden"
        with pytest.raises(IqError) as info:
            await nina.plugin["mute"].status(ROOM, nick="pat")
        assert info.value.iq["error"]["condition"] == "forbidden"
        # the admin that got muted by the owner keeps the moderator role (XEP-0045) but is refused
        assert room.occupants.get("adam").role is Role.MODERATOR
        assert room.occupants.get("pat").role is Role.VISITOR
        adam.inbox.drain()
        adam.send_message(mto=ROOM, mbody="hm", mtype="groupchat")
        assert app_element(await adam.inbox.message(lambda m: m["type"] == "error"), "muted") is not None
    finally:
        await close(olga, adam, mo, pat, nina)


async def test_bad_requests_get_useful_errors(srv):
    olga, alice = await room_with(srv, "olga", "alice")
    try:
        m = olga.plugin["mute"]
        for kw, condition in (
            ({"nick": "alice", "seconds": 2592001}, "not-acceptable"),
            ({"nick": "alice", "seconds": 0}, "bad-request"),
            ({"nick": "alice", "seconds": "soon"}, "bad-request"),
            ({"nick": "alice", "jid": "alice@localhost"}, "bad-request"),
            ({}, "bad-request"),
            ({"nick": "nobody"}, "item-not-found"),
            ({"jid": "localhost"}, "bad-request"),
        ):
            with pytest.raises(IqError) as info:
                await m.mute(ROOM, **kw)
            assert info.value.iq["error"]["condition"] == condition, (kw, info.value.iq)
            assert info.value.iq["error"]["text"]
        with pytest.raises(IqError) as info:
            await m.unmute(ROOM, nick="alice")
        assert info.value.iq["error"]["condition"] == "item-not-found"
        with pytest.raises(IqError) as info:
            await m.mute("nowhere@conference.localhost", nick="alice")
        assert info.value.iq["error"]["condition"] == "item-not-found"
        with pytest.raises(IqError) as info:
            await m.mute(ROOM, nick="alice", reason="x" * 1025)
        assert info.value.iq["error"]["condition"] == "bad-request"
    finally:
        await close(olga, alice)

"""XEP-0045 over the wire with slixmpp: creation, joining, messages, subject, history, nicks."""
from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError, PresenceError

from ..helpers import running_server, slix_close
from .muc_support import MUC_USER, codes, create, join, room_jid, user

pytestmark = pytest.mark.interop


@pytest.fixture
async def srv(tmp_path):
    async with running_server(tmp_path) as s:
        yield s


async def test_create_instant_room_join_and_talk(srv):
    a, b = await user(srv, "alice"), await user(srv, "bob")
    try:
        room = room_jid(srv, "lobby")
        pres, *_ = await a.plugin["xep_0045"].join_muc_wait(room, "Alice", timeout=5)
        assert {"110", "201"} <= codes(pres)
        assert pres["muc"]["affiliation"] == "owner" and pres["muc"]["role"] == "moderator"
        # locked until configured: others get item-not-found
        with pytest.raises(PresenceError) as err:
            await join(b, room, "Bob")
        assert err.value.condition == "item-not-found"
        from .muc_support import configure
        await configure(a, room)
        a.inbox.drain()
        pres_b, subject, occupants, history = await join(b, room, "Bob")
        assert "110" in codes(pres_b) and pres_b["muc"]["role"] == "participant"
        assert [str(p["from"]) for p in occupants][0] == f"{room}/Alice"  # others first, then self
        seen = await a.inbox.presence(lambda p: str(p["from"]) == f"{room}/Bob")
        assert seen["muc"]["role"] == "participant" and "110" not in codes(seen)
        b.send_message(mto=room, mbody="hello all", mtype="groupchat")
        got = await a.inbox.message(lambda m: m["type"] == "groupchat" and m["body"] == "hello all")
        assert str(got["from"]) == f"{room}/Bob"
        assert got.xml.find("{urn:xmpp:sid:0}stanza-id").get("by") == room
        echo = await b.inbox.message(lambda m: m["body"] == "hello all")
        assert str(echo["from"]) == f"{room}/Bob"
        # leave: the others see unavailable; the room vanishes after the last occupant
        b.plugin["xep_0045"].leave_muc(room, "Bob")
        gone = await a.inbox.presence(lambda p: str(p["from"]) == f"{room}/Bob" and p["type"] == "unavailable")
        assert gone["muc"]["role"] == "none"
        a.plugin["xep_0045"].leave_muc(room, "Alice")
        await a.inbox.presence(lambda p: str(p["from"]) == f"{room}/Alice" and p["type"] == "unavailable")
        assert srv.features["muc"].get_room(room) is None
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_nick_conflict_change_and_multi_session(srv):
    a, b = await user(srv, "alice"), await user(srv, "bob")
    a2 = await user(srv, "alice", create=False)
    try:
        room = room_jid(srv, "nicks")
        await create(a, room, "Alice")
        with pytest.raises(PresenceError) as err:
            await join(b, room, "Alice")
        assert err.value.condition == "conflict"
        await join(b, room, "Bob")
        # §7.2.9: a second resource of alice shares the nick
        pres, _s, occ, _h = await join(a2, room, "Alice")
        assert "110" in codes(pres)
        assert len(srv.features["muc"].get_room(room).occupants.get("Alice").sessions) == 2
        b.send_message(mto=room, mbody="both?", mtype="groupchat")
        await a.inbox.message(lambda m: m["body"] == "both?")
        await a2.inbox.message(lambda m: m["body"] == "both?")
        # §7.6 nick change: 303 with the new nick, then available under it
        a.inbox.drain()
        b.send_presence(pto=f"{room}/Robert")
        old = await a.inbox.presence(lambda p: str(p["from"]) == f"{room}/Bob" and p["type"] == "unavailable")
        assert "303" in codes(old) and old.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}item").get("nick") == "Robert"
        await a.inbox.presence(lambda p: str(p["from"]) == f"{room}/Robert" and p["type"] != "unavailable")
        # a nick held by another user can't be taken by a change either
        b.send_presence(pto=f"{room}/Alice")
        err_p = await b.inbox.presence(lambda p: p["type"] == "error")
        assert err_p["error"]["condition"] == "conflict"
    finally:
        for c in (a, a2, b):
            await slix_close(c)


async def test_history_on_join_and_subject(srv):
    a, b, c = await user(srv, "alice"), await user(srv, "bob"), await user(srv, "carol")
    try:
        room = room_jid(srv, "hist")
        await create(a, room, "Alice")
        a.plugin["xep_0045"].set_subject(room, "Today: tests")
        await a.inbox.message(lambda m: m["subject"] == "Today: tests")
        for i in range(5):
            a.send_message(mto=room, mbody=f"m{i}", mtype="groupchat")
        await a.inbox.message(lambda m: m["body"] == "m4")
        _p, subject, _o, history = await join(b, room, "Bob", maxstanzas=3)
        assert [m["body"] for m in history] == ["m2", "m3", "m4"]
        assert subject["subject"] == "Today: tests"
        _p, _s, _o, none = await join(c, room, "Carol", maxchars=0)
        assert none == []
        # participants can't change the subject unless the room allows it
        b.plugin["xep_0045"].set_subject(room, "mine now")
        err = await b.inbox.message(lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "forbidden"
    finally:
        for cl in (a, b, c):
            await slix_close(cl)


async def test_private_messages_and_errors(srv):
    a, b, c = await user(srv, "alice"), await user(srv, "bob"), await user(srv, "carol")
    try:
        room = room_jid(srv, "pm")
        await create(a, room, "Alice")
        await join(b, room, "Bob")
        a.send_message(mto=f"{room}/Bob", mbody="psst", mtype="chat")
        got = await b.inbox.message(lambda m: m["body"] == "psst")
        assert str(got["from"]) == f"{room}/Alice"
        assert got.xml.find("{http://jabber.org/protocol/muc#user}x") is not None
        a.send_message(mto=f"{room}/Nobody", mbody="?", mtype="chat")
        assert (await a.inbox.message(lambda m: m["type"] == "error"))["error"]["condition"] == "item-not-found"
        # non-occupants can neither talk in the room nor send private messages
        c.send_message(mto=room, mbody="let me in", mtype="groupchat")
        assert (await c.inbox.message(lambda m: m["type"] == "error"))["error"]["condition"] == "not-acceptable"
        c.send_message(mto=f"{room}/Bob", mbody="hi", mtype="chat")
        assert (await c.inbox.message(lambda m: m["type"] == "error"))["error"]["condition"] == "not-acceptable"
        # iq to a missing room
        with pytest.raises(IqError) as err:
            await c.plugin["xep_0030"].get_info(jid=room_jid(srv, "nowhere"), timeout=5)
        assert err.value.condition == "item-not-found"
    finally:
        for cl in (a, b, c):
            await slix_close(cl)


async def test_disconnect_leaves_rooms(srv):
    a, b = await user(srv, "alice"), await user(srv, "bob")
    try:
        room = room_jid(srv, "ghost")
        await create(a, room, "Alice")
        await join(b, room, "Bob")
        b.abort()
        gone = await a.inbox.presence(lambda p: str(p["from"]) == f"{room}/Bob" and p["type"] == "unavailable", timeout=10)
        assert gone["muc"]["role"] == "none"
        assert srv.features["muc"].get_room(room).occupants.get("Bob") is None
    finally:
        await slix_close(a)

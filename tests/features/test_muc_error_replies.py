"""XEP-0045 status 333 over the wire with slixmpp: an occupant whose client (or server) answers
room traffic with an error saying it is not there is removed, and everybody sees why; an error
that only refuses one message keeps the occupant and goes back to the sender without content;
iq errors never remove anybody."""
from __future__ import annotations

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from ..helpers import running_server, slix_close
from .muc_support import codes, create, join, room_jid, user

pytestmark = pytest.mark.interop
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@pytest.fixture
async def srv(tmp_path):
    async with running_server(tmp_path) as s:
        yield s


def bounce_groupchat(client, body: str, condition: str, error_type: str = "cancel") -> None:
    """The client answers the groupchat message ``body`` with a message error, as a broken client
    or the server of a vanished session does (with the original body, as RFC 6120 §8.3.1 allows)."""
    def answer(m) -> None:
        if m["type"] == "groupchat" and m["body"] == body:
            client.send_raw(
                f"<message type='error' to='{m['from']}' id='{m['id']}'><body>{body}</body>"
                f"<error type='{error_type}'><{condition} xmlns='{STANZAS}'/>"
                f"<text xmlns='{STANZAS}'>buy followers at spam.example</text></error></message>")
    client.register_handler(Callback(f"bounce-{body}", MatchXPath("{jabber:client}message"), answer))


def groupchat(client, room: str, body: str, id: str) -> None:
    m = client.make_message(mto=room, mbody=body, mtype="groupchat")
    m["id"] = id
    m.send()


async def messages_until(client, pred) -> list:
    """Every message ``client`` receives up to the first matching ``pred`` (that one last)."""
    seen: list = []
    await client.inbox.message(lambda m: seen.append(m) or pred(m))
    return seen


def echo_of(room: str, nick: str, body: str):
    return lambda m: m["type"] == "groupchat" and str(m["from"]) == f"{room}/{nick}" and m["body"] == body


async def test_an_occupant_bouncing_a_groupchat_message_is_removed_with_333_and_may_rejoin(srv):
    a, b, c = await user(srv, "alice"), await user(srv, "bob"), await user(srv, "carol")
    room = room_jid(srv, "ghosts")
    try:
        await create(a, room, "Alice")
        await join(b, room, "Bob")
        await join(c, room, "Carol")
        for cl in (a, b, c):
            cl.inbox.drain()
        bounce_groupchat(c, "anyone there?", "service-unavailable")
        groupchat(b, room, "anyone there?", "g1")
        # carol's client answered bob's message (from room/Bob) with an error: the others see her
        # leave with 333, role none; her own copy says 110 as well
        for cl in (a, b):
            gone = await cl.inbox.presence(lambda p: str(p["from"]) == f"{room}/Carol" and p["type"] == "unavailable")
            assert "333" in codes(gone) and "110" not in codes(gone) and gone["muc"]["role"] == "none"
        mine = await c.inbox.presence(lambda p: str(p["from"]) == f"{room}/Carol" and p["type"] == "unavailable")
        assert {"110", "333"} <= codes(mine)
        # the room no longer lists her (disco#items of the room, as a client asks)
        items = await a.plugin["xep_0030"].get_items(jid=room, timeout=5)
        assert sorted(i[0] for i in items["disco_items"]["items"]) == [f"{room}/Alice", f"{room}/Bob"]
        # the error itself reached nobody: bob's next message comes back with nothing before it
        b.send_message(mto=room, mbody="next", mtype="groupchat")
        seen = await messages_until(b, echo_of(room, "Bob", "next"))
        assert [m["type"] for m in seen] == ["groupchat", "groupchat"]  # his first message, then this one
        # she may come back and talk
        c.remove_handler("bounce-anyone there?")
        pres, *_ = await join(c, room, "Carol")
        assert pres["muc"]["role"] == "participant"
        c.send_message(mto=room, mbody="back", mtype="groupchat")
        await a.inbox.message(echo_of(room, "Carol", "back"))
    finally:
        for cl in (a, b, c):
            await slix_close(cl)


async def test_a_refused_message_keeps_the_occupant_and_only_the_error_goes_back(srv):
    a, b, c = await user(srv, "alice"), await user(srv, "bob"), await user(srv, "carol")
    room = room_jid(srv, "picky")
    try:
        await create(a, room, "Alice")
        await join(b, room, "Bob")
        await join(c, room, "Carol")
        for cl in (a, b, c):
            cl.inbox.drain()
        # not-acceptable refuses one message: carol stays; bob gets the error from room/Carol,
        # without the body or anything else carol's client put around it (no side channel)
        bounce_groupchat(c, "too long", "not-acceptable", "modify")
        groupchat(b, room, "too long", "g2")
        err = await b.inbox.message(lambda m: m["type"] == "error")
        assert str(err["from"]) == f"{room}/Carol" and err["id"] == "g2"
        assert err["error"]["condition"] == "not-acceptable" and err.xml.find("{jabber:client}body") is None
        c.send_message(mto=room, mbody="still here", mtype="groupchat")
        await a.inbox.message(echo_of(room, "Carol", "still here"))
        assert srv.features["muc"].get_room(room).occupants.get("Carol") is not None
        # iq errors (to the room or to an occupant) remove nobody
        c.send_raw(f"<iq type='error' to='{room}' id='q1'><error type='cancel'><service-unavailable xmlns='{STANZAS}'/></error></iq>")
        c.send_raw(f"<iq type='error' to='{room}/Bob' id='q2'><error type='cancel'><service-unavailable xmlns='{STANZAS}'/></error></iq>")
        c.send_message(mto=room, mbody="after iq errors", mtype="groupchat")
        await a.inbox.message(echo_of(room, "Carol", "after iq errors"))
        assert srv.features["muc"].get_room(room).occupants.get("Carol") is not None
        # a presence error from her session removes her (the room's presence bounced), with 333
        c.send_raw(f"<presence type='error' to='{room}/Alice'><error type='cancel'><gone xmlns='{STANZAS}'/></error></presence>")
        gone = await a.inbox.presence(lambda p: str(p["from"]) == f"{room}/Carol" and p["type"] == "unavailable")
        assert "333" in codes(gone)
    finally:
        for cl in (a, b, c):
            await slix_close(cl)


async def test_a_bouncing_second_session_leaves_alone(srv):
    a, c = await user(srv, "alice"), await user(srv, "carol")
    c2 = await user(srv, "carol", create=False)
    room = room_jid(srv, "twice")
    try:
        await create(a, room, "Alice")
        await join(c, room, "Carol")
        await join(c2, room, "Carol")  # §7.2.9: two sessions, one occupant
        for cl in (a, c, c2):
            cl.inbox.drain()
        bounce_groupchat(c2, "ping", "recipient-unavailable")
        a.send_message(mto=room, mbody="ping", mtype="groupchat")
        mine = await c2.inbox.presence(lambda p: str(p["from"]) == f"{room}/Carol" and p["type"] == "unavailable")
        assert {"110", "333"} <= codes(mine)
        # the other session is still Carol, and the others saw nobody leave
        c.send_message(mto=room, mbody="one of me left", mtype="groupchat")
        await a.inbox.message(echo_of(room, "Carol", "one of me left"))
        assert a.inbox.presences.empty()
        occ = srv.features["muc"].get_room(room).occupants.get("Carol")
        assert [str(j) for j in occ.sessions] == [str(c.boundjid)]
    finally:
        for cl in (a, c, c2):
            await slix_close(cl)

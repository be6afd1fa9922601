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


@pytest.fixture
async def srv(tmp_path):
    async with mute_server(tmp_path) as s:
        yield s


async def room_with(srv, *names: str, admins: tuple[str, ...] = (), members: tuple[str, ...] = (), **config):
    """The first name creates ROOM and owns it; the others join; admins/members are affiliated first."""
    clients = [await client(srv, n) for n in names]
    await create(clients[0], ROOM, names[0], **config)
    room = srv.features["muc"].get_room(ROOM)
    for n in admins:
        await room.set_affiliation(JID.parse(f"{n}@localhost"), Affiliation.ADMIN)
    for n in members:
        await room.set_affiliation(JID.parse(f"{n}@localhost"), Affiliation.MEMBER)
    for c, n in zip(clients[1:], names[1:]):
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

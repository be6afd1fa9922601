"""XEP-0045 voice requests (§7.13) and their approval (§8.6) under group mute, over real sockets
with slixmpp: a muted member may ask, the moderators get the form, an approval obeys the mute
hierarchy, requests are rate-limited; under mute-all or a platform mute (the member has voice
already) the request is answered with the mute that keeps it quiet."""

from __future__ import annotations

import pytest
from slixmpp.plugins.xep_0004 import Form

from xmppd.config import ConfigError
from xmppd.features.muc.affiliations import Role
from xmppd.jid import JID

from .support import app_element, client, mute_server
from .test_speech import mute_by
from .test_wire import ROOM, close, groupchat_from, is_notice, is_presence_of, room_with

pytestmark = pytest.mark.interop
X_DATA = "{jabber:x:data}x"
REQUEST = "http://jabber.org/protocol/muc#request"


@pytest.fixture
async def srv(tmp_path):
    async with mute_server(tmp_path, "muc.voice_request_interval=3600") as s:
        yield s


def is_request(m) -> bool:
    return m["type"] != "error" and m.xml.find(X_DATA) is not None


def form_values(m) -> dict[str, str | None]:
    form = m.xml.find(X_DATA)
    return {f.get("var"): f.findtext("{jabber:x:data}value") for f in form.findall("{jabber:x:data}field")}


def approve(c, nick: str, id: str) -> None:
    """§8.6: the moderator submits the request form with muc#request_allow true."""
    m = c.make_message(mto=ROOM)
    m["id"] = id
    m.append(Form())
    m["form"]["type"] = "submit"
    m["form"].add_field(var="FORM_TYPE", ftype="hidden", value=REQUEST)
    m["form"].add_field(var="muc#role", value="participant")
    m["form"].add_field(var="muc#roomnick", value=nick)
    m["form"].add_field(var="muc#request_allow", value="true")
    m.send()


async def messages_until_own_echo(c, body: str) -> list:
    """What ``c`` receives up to the echo of a groupchat message it sends now: anything the room
    sent it earlier arrives before (one stream, in order)."""
    seen: list = []
    c.send_message(mto=ROOM, mbody=body, mtype="groupchat")
    me = c.boundjid.user
    await c.inbox.message(lambda m: seen.append(m) or groupchat_from(me, body)(m))
    return seen[:-1]


async def test_a_muted_member_asks_for_voice_and_only_a_high_enough_moderator_grants_it(srv):
    olga, adam, mo, alice = await room_with(srv, "olga", "adam", "mo", "alice", admins=("adam",))
    room = srv.features["muc"].get_room(ROOM)
    mute = srv.features["mute"]
    try:
        await room.set_role("mo", Role.MODERATOR)  # a moderator without affiliation
        await olga.plugin["mute"].mute(ROOM, nick="alice", reason="the owner says so")
        await alice.inbox.presence(is_presence_of("alice", "visitor"))
        # the request is not speech: it passes, and every moderator gets the approval form
        alice.plugin["xep_0045"].request_voice(ROOM, "participant")
        for c in (olga, adam, mo):
            req = await c.inbox.message(is_request)
            assert str(req["from"]) == ROOM
            values = form_values(req)
            assert values["FORM_TYPE"] == REQUEST and values["muc#roomnick"] == "alice"
            assert values["muc#role"] == "participant" and values["muc#request_allow"] == "false"
        # the unaffiliated moderator and the admin rank below the owner who muted her: not-allowed
        for c, id in ((mo, "a1"), (adam, "a2")):
            approve(c, "alice", id)
            err = await c.inbox.message(lambda m, id=id: m["type"] == "error" and m["id"] == id)
            assert err["error"]["condition"] == "not-allowed" and "owner" in err["error"]["text"]
        assert room.occupants.get("alice").role is Role.VISITOR
        assert [m.jid for m in await mute.repo.mutes()] == ["alice@localhost"]
        # asking again at once is refused (resource-constraint, type wait); no moderator hears of it
        alice.inbox.drain()
        alice.plugin["xep_0045"].request_voice(ROOM, "participant")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "resource-constraint" and err["error"]["type"] == "wait"
        for c in (olga, adam, mo):
            assert not [m for m in await messages_until_own_echo(c, f"sync {c.boundjid.user}") if is_request(m)]
        # the owner's approval lifts the mute and gives voice
        approve(olga, "alice", "a3")
        voiced = await alice.inbox.presence(is_presence_of("alice", "participant"))
        assert voiced["muc"]["item"]["actor"]["nick"] == "olga"
        await olga.inbox.message(is_notice("unmute"))
        assert await mute.repo.mutes() == [] and (ROOM, JID.parse("alice@localhost")) not in mute.mutes
        alice.send_message(mto=ROOM, mbody="thanks", mtype="groupchat")
        await adam.inbox.message(groupchat_from("alice", "thanks"))
    finally:
        await close(olga, adam, mo, alice)


@pytest.mark.parametrize("kind", ["all", "platform"])
async def test_a_voice_request_under_mute_all_or_platform_mute_answers_with_that_mute(srv, kind):
    admin = await client(srv, "admin")
    olga, adam, alice = await room_with(srv, "olga", "adam", "alice", admins=("adam",))
    try:
        app = await mute_by(kind, srv, olga, admin)
        assert srv.features["muc"].get_room(ROOM).occupants.get("alice").role is Role.PARTICIPANT
        alice.inbox.drain()
        # she has voice already; what keeps her quiet is the mute, which a voice grant can't lift
        alice.plugin["xep_0045"].request_voice(ROOM, "participant")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "forbidden" and app_element(err, app) is not None
        for c in (olga, adam):
            assert not [m for m in await messages_until_own_echo(c, f"sync {c.boundjid.user}") if is_request(m)]
    finally:
        await close(admin, olga, adam, alice)


async def test_a_zero_voice_request_interval_is_refused_at_start(tmp_path):
    with pytest.raises(ConfigError, match="muc.voice_request_interval must be more than 0, not 0"):
        async with mute_server(tmp_path, "muc.voice_request_interval=0"):
            pass

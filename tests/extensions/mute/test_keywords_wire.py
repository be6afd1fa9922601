"""The keyword filter of a room (block, mask, mute for N minutes), managed by an ad-hoc command
(XEP-0050) that owners and admins run: slixmpp with xep_0050 and our plugin, and aioxmpp as a
standard client that sees only RFC 6120 errors and XEP-0045."""

from __future__ import annotations

import aioxmpp
import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form as SlixForm

from ...helpers import add_user
from .support import aioxmpp_in_room, app_element, assert_valid
from .test_wire import ROOM, close, room_with

pytestmark = pytest.mark.interop

NS = "urn:xmppd:mute:0"
NODE = f"{NS}#keywords"


async def set_filter(c, words: list[str], action: str, minutes: str = "10"):
    """Run the #keywords command: the form (prefilled with the room's filter), then submit."""
    first = await c.plugin["xep_0050"].send_command(ROOM, NODE, timeout=5)
    assert first["command"]["status"] == "executing"
    form = SlixForm()
    form["type"] = "submit"
    form.add_field(var="words", ftype="text-multi", value="\n".join(words))
    form.add_field(var="action", value=action)
    form.add_field(var="minutes", value=minutes)
    return first, await c.plugin["xep_0050"].send_command(ROOM, NODE, sessionid=first["command"]["sessionid"],
                                                          action="complete", payload=form, timeout=5)


def said(nick: str):
    return lambda m: m["type"] == "groupchat" and m["from"].resource == nick and m["body"]


async def test_block_mask_and_mute_through_the_command(srv):
    olga, bob, alice = await room_with(srv, "olga", "bob", "alice", admins=("bob",))
    try:
        for c in (olga, bob, alice):
            c.register_plugin("xep_0050")
        # only owners and admins see and run it
        with pytest.raises(IqError) as info:
            await alice.plugin["xep_0050"].send_command(ROOM, NODE, timeout=5)
        assert info.value.iq["error"]["condition"] == "forbidden"

        _, done = await set_filter(bob, ["Spam", "广告"], "block")
        assert done["command"]["status"] == "completed" and "2 word(s)" in done["command"]["notes"][0][1]
        alice.send_message(mto=ROOM, mbody="buy SPAM now", mtype="groupchat")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "not-acceptable" and "spam" in err["error"]["text"]
        app = app_element(err, "filtered")
        assert app is not None and app.get("room") == ROOM
        assert_valid(app)
        alice.send_message(mto=ROOM, mbody="免费广告位", mtype="groupchat")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert app_element(err, "filtered") is not None
        # admins and owners are not filtered; clean messages pass
        bob.send_message(mto=ROOM, mbody="spam is a word", mtype="groupchat")
        assert (await olga.inbox.message(said("bob")))["body"] == "spam is a word"
        alice.send_message(mto=ROOM, mbody="hello", mtype="groupchat")
        assert (await olga.inbox.message(said("alice")))["body"] == "hello"

        # mask: the message goes out with the words starred, to everyone, the sender included
        first, done = await set_filter(olga, ["spam", "广告"], "mask")
        values = {var: f["value"] for var, f in first["command"]["form"].get_fields().items()}
        assert values["action"] == "block" and values["words"] == ["Spam", "广告"]
        alice.send_message(mto=ROOM, mbody="Spam and 广告 here", mtype="groupchat")
        got = await olga.inbox.message(said("alice"))
        assert got["body"] == "**** and ** here"
        mine = await alice.inbox.message(lambda m: said("alice")(m) and m["body"].endswith("here"))
        assert mine["body"] == "**** and ** here"

        # mute: refused, and the sender is muted for the room's minutes by the server
        await set_filter(olga, ["spam"], "mute", "5")
        alice.send_message(mto=ROOM, mbody="spam again", mtype="groupchat")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "forbidden" and app_element(err, "muted") is not None
        status = await alice.plugin["mute"].status(ROOM)
        assert status["muted"] == "true" and status["room"]["by"] == "localhost"
        assert int(status["room"]["remaining"]) in (300, 301) and status["room"]["reason"] == "keyword filter: spam"
        await olga.inbox.presence(lambda p: p["from"].resource == "alice" and p["muc"]["role"] == "visitor")

        # bad input comes back on the form; no words turns the filter off
        _, done = await set_filter(olga, ["x" * 65], "block")
        assert done["command"]["status"] == "executing" and "64" in done["command"]["notes"][0][1]
        _, done = await set_filter(olga, [], "block")
        assert done["command"]["notes"][0][1] == "The keyword filter is off."
    finally:
        await close(olga, bob, alice)


async def test_a_standard_client_sees_the_filter(srv):
    (olga,) = await room_with(srv, "olga")
    await add_user(srv, "zed")
    try:
        olga.register_plugin("xep_0050")
        await set_filter(olga, ["forbidden-word"], "block")
        async with aioxmpp_in_room(srv, "zed@localhost", ROOM, "zed") as zed:
            await zed.say("a FORBIDDEN-WORD here")
            err = await zed.error()
            assert err.condition == aioxmpp.ErrorCondition.NOT_ACCEPTABLE
            assert "forbidden-word" in err.text
    finally:
        await close(olga)

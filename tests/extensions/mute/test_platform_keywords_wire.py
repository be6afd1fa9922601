"""The platform keyword list (docs/mute.md §3.7) over real sockets: server admins manage it with
ad-hoc commands (slixmpp xep_0050), others are refused; a room member's message (aioxmpp, a
standard client) is blocked, masked, or gets the sender platform-muted; one-to-one messages too;
the platform list is checked before the room's own."""

from __future__ import annotations

import aioxmpp
import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form as SlixForm

from xmppd.jid import JID
from xmppd_extensions.mute.repository import PLATFORM

from ...helpers import add_user
from .support import ADMIN, aioxmpp_in_room, app_element, assert_valid, client, mute_server
from .test_keywords_wire import said, set_filter
from .test_wire import ROOM, close, room_with

pytestmark = pytest.mark.interop

NS = "urn:xmppd:mute:0"
SERVER = "localhost"


async def run(c, node: str, **values: str):
    """Run a server command: its form, then submit ``values``."""
    first = await c.plugin["xep_0050"].send_command(SERVER, node, timeout=5)
    if not values:
        return first
    form = SlixForm()
    form["type"] = "submit"
    for var, value in values.items():
        form.add_field(var=var, ftype="list-multi" if isinstance(value, list) else None, value=value)
    return await c.plugin["xep_0050"].send_command(SERVER, node, sessionid=first["command"]["sessionid"],
                                                   action="complete", payload=form, timeout=5)


async def add(c, words: list[str], action: str, minutes: str = "10"):
    return await run(c, f"{NS}#platform-keyword-add", words="\n".join(words), action=action, minutes=minutes)


async def test_admins_manage_the_platform_list_that_rooms_and_chats_obey(srv):
    olga, bob, alice = await room_with(srv, "olga", "bob", "alice")
    boss = await client(srv, ADMIN.split("@")[0])
    try:
        for c in (boss, alice, olga):
            c.register_plugin("xep_0050")
        # only server admins: a room owner or a member is refused
        for node in ("#platform-keyword-add", "#platform-keyword-remove", "#platform-keywords"):
            with pytest.raises(IqError) as info:
                await alice.plugin["xep_0050"].send_command(SERVER, NS + node, timeout=5)
            assert info.value.iq["error"]["condition"] == "forbidden"

        done = await add(boss, ["Spam", "免费"], "block")
        assert done["command"]["status"] == "completed"
        await add(boss, ["广告"], "mask")
        listed = await run(boss, f"{NS}#platform-keywords")
        rows = {item["word"]: item["action"] for item in listed["command"]["form"]["items"]}
        assert rows == {"spam": "block", "免费": "block", "广告": "mask"}

        # in a room, a standard client's message (aioxmpp) is refused with not-acceptable
        async with aioxmpp_in_room(srv, await add_user(srv, "carol"), ROOM, "carol") as carol:
            await carol.say("buy SPAM here")
            err = await carol.error()
            assert err.condition == aioxmpp.ErrorCondition.NOT_ACCEPTABLE
        # the error element says it is the platform's list
        alice.send_message(mto=ROOM, mbody="免费 stuff", mtype="groupchat")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        app = app_element(err, "filtered")
        assert app is not None and app.get("scope") == "platform" and app.get("room") == ROOM
        assert_valid(app)
        # mask: everybody sees the stars; the platform list comes before the room's own
        await set_filter(olga, ["stuff"], "mask")
        alice.send_message(mto=ROOM, mbody="广告 stuff", mtype="groupchat")
        assert (await bob.inbox.message(said("alice")))["body"] == "** *****"
        await set_filter(olga, ["广告"], "block")  # the room blocks what the platform masks: the room decides after
        alice.send_message(mto=ROOM, mbody="广告 again", mtype="groupchat")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert app_element(err, "filtered").get("scope") is None  # the room's list refused it
        await set_filter(olga, [], "block")

        # one-to-one chat between accounts: filtered too (WeChat / Tencent IM)
        alice.send_message(mto="bob@localhost", mbody="spam for you", mtype="chat")
        err = await alice.inbox.message(lambda m: m["type"] == "error" and m["from"].bare == "bob@localhost")
        assert err["error"]["condition"] == "not-acceptable"
        app = app_element(err, "filtered")
        assert app.get("scope") == "platform" and app.get("room") is None
        alice.send_message(mto=f"{ROOM}/bob", mbody="免费 in private", mtype="chat")  # a private message in the room
        err = await alice.inbox.message(lambda m: m["type"] == "error" and m["from"].full == f"{ROOM}/bob")
        assert err["error"]["condition"] == "not-acceptable" and app_element(err, "filtered").get("scope") == "platform"
        alice.send_message(mto="bob@localhost", mbody="a 广告 for you", mtype="chat")
        got = await bob.inbox.message(lambda m: m["type"] == "chat" and m["from"].bare == "alice@localhost")
        assert got["body"] == "a ** for you"

        # mute: refused, and the sender is muted on the whole platform for the word's minutes
        await add(boss, ["刷屏"], "mute", "5")
        alice.send_message(mto=ROOM, mbody="刷屏刷屏", mtype="groupchat")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "forbidden" and app_element(err, "platform-muted") is not None
        feat = srv.features["mute"]
        m = feat.mutes[(PLATFORM, JID.parse("alice@localhost"))]
        assert m.reason == "keyword filter: 刷屏" and m.actor == SERVER
        assert 299 <= (m.until - m.created_at).total_seconds() <= 301
        await boss.plugin["mute"].platform_unmute("alice@localhost")

        # remove: the word passes again; admins themselves are never filtered
        done = await run(boss, f"{NS}#platform-keyword-remove", words=["spam"])
        assert "1 word(s) removed" in done["command"]["notes"][0][1]
        alice.send_message(mto=ROOM, mbody="spam is fine now", mtype="groupchat")
        assert (await bob.inbox.message(said("alice")))["body"] == "spam is fine now"
        boss.send_message(mto="bob@localhost", mbody="免费 from the admin", mtype="chat")
        got = await bob.inbox.message(lambda m: m["type"] == "chat" and m["from"].bare == ADMIN)
        assert got["body"] == "免费 from the admin"
    finally:
        await close(olga, bob, alice, boss)


async def test_limits_of_the_platform_list(tmp_path):
    async with mute_server(tmp_path, "mute.max_platform_keywords=2") as srv:
        boss = await client(srv, ADMIN.split("@")[0])
        boss.register_plugin("xep_0050")
        try:
            await add(boss, ["one", "two"], "block")
            for words, action, minutes in ((["three"], "block", "10"), (["x" * 65], "block", "10"),
                                           (["ok"], "mute", "0"), (["ok"], "mute", "many")):
                again = await add(boss, words, action, minutes)  # the form comes back with the error
                assert again["command"]["status"] == "executing"
                assert [kind for kind, _text in again["command"]["notes"]] == ["error"]
            assert [k.word for k in srv.features["mute"].platform_words.words] == ["one", "two"]
        finally:
            await close(boss)


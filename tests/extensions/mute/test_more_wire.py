"""Group mute over real sockets, continued: notices in English and Chinese, XEP-0045 voice
revokes as mutes, private messages, platform mute, forged elements, the audit log, and the
ad-hoc commands standard clients use."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form as SlixForm

from ...features.muc_support import join
from .support import ADMIN, app_element, assert_valid, client
from .test_wire import ROOM, _config_form, close, groupchat_from, is_notice, is_presence_of, room_with

pytestmark = pytest.mark.interop
NS = "urn:xmppd:mute:0"


async def test_notices_in_the_rooms_language_or_the_actors(srv):
    olga, bob, alice = await room_with(srv, "olga", "bob", "alice", admins=("bob",))
    try:
        # no room language: the actor's xml:lang decides
        await bob.plugin["mute"].mute(ROOM, nick="alice", seconds=600, lang="zh-CN")
        n = await olga.inbox.message(is_notice("mute"))
        assert n["body"] == "bob 将 alice 禁言 10 分钟"
        assert '{http://www.w3.org/XML/1998/namespace}lang' in n.xml.find("{jabber:client}body").attrib
        await bob.plugin["mute"].unmute(ROOM, nick="alice", lang="zh")
        assert (await olga.inbox.message(is_notice("unmute")))["body"] == "bob 解除了 alice 的禁言"
        await bob.plugin["mute"].mute(ROOM, nick="alice", seconds=3600, reason="spam")
        assert (await olga.inbox.message(is_notice("mute")))["body"] == "alice was muted for 1 hour by bob (reason: spam)"
        # the room's language wins over the actor's
        await olga.plugin["xep_0045"].set_room_config(ROOM, _config_form({"muc#roomconfig_lang": "zh-Hans"}), timeout=5)
        await bob.plugin["mute"].mute(ROOM, nick="alice", seconds=120, reason="刷屏", lang="en")
        assert (await olga.inbox.message(is_notice("mute")))["body"] == "bob 将 alice 禁言 2 分钟，理由：刷屏"
        await bob.plugin["mute"].mute(ROOM, nick="alice")
        assert (await olga.inbox.message(is_notice("mute")))["body"] == "bob 将 alice 禁言"
        await bob.plugin["mute"].mute_all(ROOM)
        assert (await olga.inbox.message(is_notice("mute-all")))["body"] == "bob 开启了全员禁言，仅群主和管理员可以发言"
        await bob.plugin["mute"].unmute_all(ROOM)
        assert (await olga.inbox.message(is_notice("unmute-all")))["body"] == "bob 关闭了全员禁言"
    finally:
        await close(olga, bob, alice)


async def test_a_plain_voice_revoke_is_an_open_ended_mute(srv):
    olga, alice = await room_with(srv, "olga", "alice", whois="anyone")
    try:
        await olga.plugin["xep_0045"].set_role(ROOM, "alice", "visitor", reason="enough")
        await alice.inbox.presence(is_presence_of("alice", "visitor"))
        n = await olga.inbox.message(is_notice("mute"))
        assert n["body"] == "alice was muted by olga (reason: enough)"
        assert n["mute_notice"]["jid"] == "alice@localhost"  # non-anonymous room: real JIDs shown
        [item] = (await olga.plugin["mute"].list(ROOM)).members()
        assert item["source"] == "voice" and not item["until"] and item["by"] == "olga@localhost"
        alice.send_message(mto=ROOM, mbody="?", mtype="groupchat")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert app_element(err, "muted") is not None and app_element(err, "muted").get("until") is None
        # rejoin: still a visitor (roles are per visit in XEP-0045, mutes are not)
        alice.plugin["xep_0045"].leave_muc(ROOM, "alice")
        await olga.inbox.presence(lambda p: p["from"].resource == "alice" and p["type"] == "unavailable")
        pres, *_ = await join(alice, ROOM, "alice")
        assert pres["muc"]["role"] == "visitor"
        # granting voice lifts it
        await olga.plugin["xep_0045"].set_role(ROOM, "alice", "participant")
        n = await olga.inbox.message(is_notice("unmute"))
        assert n["body"] == "alice was unmuted by olga"
        assert (await olga.plugin["mute"].list(ROOM)).members() == []
        alice.send_message(mto=ROOM, mbody="voice!", mtype="groupchat")
        await olga.inbox.message(groupchat_from("alice", "voice!"))
    finally:
        await close(olga, alice)


async def test_private_messages_follow_the_room_setting(srv):
    olga, alice = await room_with(srv, "olga", "alice")
    try:
        await olga.plugin["mute"].mute(ROOM, nick="alice", seconds=600)
        alice.inbox.drain()
        alice.send_message(mto=f"{ROOM}/olga", mbody="psst", mtype="chat")
        err = await alice.inbox.message(lambda m: m["type"] == "error")
        assert app_element(err, "muted") is not None
        await olga.plugin["xep_0045"].set_room_config(ROOM, _config_form({"xmppd#mute_block_private": "0"}), timeout=5)
        alice.send_message(mto=f"{ROOM}/olga", mbody="psst again", mtype="chat")
        got = await olga.inbox.message(lambda m: m["body"] == "psst again")
        assert got["from"] == f"{ROOM}/alice"
    finally:
        await close(olga, alice)


async def test_platform_mute_in_one_to_one_chat_and_rooms(srv):
    admin = await client(srv, "admin")
    olga, carol = await room_with(srv, "olga", "carol")
    dave = await client(srv, "dave")
    try:
        with pytest.raises(IqError) as info:
            await olga.plugin["mute"].platform_mute("carol@localhost", seconds=60)
        assert info.value.iq["error"]["condition"] == "forbidden"
        item = await admin.plugin["mute"].platform_mute("carol@localhost", seconds=600, reason="abuse")
        assert_valid(item.xml)
        headline = await carol.inbox.message(lambda m: m["type"] == "headline" and m["mute_notice"]["scope"] == "platform")
        assert headline["body"] == "carol was muted on this server for 10 minutes by an administrator (reason: abuse)"
        # one-to-one: refused with <platform-muted/>, except messages to server admins
        carol.inbox.drain()
        carol.send_message(mto="dave@localhost", mbody="hello dave", mtype="chat")
        err = await carol.inbox.message(lambda m: m["type"] == "error")
        app = app_element(err, "platform-muted")
        assert err["error"]["condition"] == "forbidden" and app.findtext(f"{{{NS}}}reason") == "abuse"
        assert_valid(app)
        with pytest.raises(asyncio.TimeoutError):
            await dave.inbox.message(lambda m: m["body"] == "hello dave", timeout=0.5)
        carol.send_message(mto=ADMIN, mbody="please unmute me", mtype="chat")
        await admin.inbox.message(lambda m: m["body"] == "please unmute me")
        carol.send_message(mto="dave@localhost", mtype="chat", mbody=None)  # a chat state: not speech
        # rooms: the same enforcement
        carol.send_message(mto=ROOM, mbody="in the room", mtype="groupchat")
        err = await carol.inbox.message(lambda m: m["type"] == "error" and m["from"].bare == ROOM)
        assert app_element(err, "platform-muted") is not None
        st = await carol.plugin["mute"].platform_status()
        assert st["muted"] == "true" and st["platform"]["reason"] == "abuse"
        assert [i["jid"] for i in (await admin.plugin["mute"].platform_list()).members()] == ["carol@localhost"]
        with pytest.raises(IqError) as info:
            await admin.plugin["mute"].platform_mute(ADMIN, seconds=60)
        assert info.value.iq["error"]["condition"] == "not-allowed"
        await admin.plugin["mute"].platform_unmute("carol@localhost")
        carol.send_message(mto="dave@localhost", mbody="hello again", mtype="chat")
        await dave.inbox.message(lambda m: m["body"] == "hello again")
    finally:
        await close(admin, olga, carol, dave)


async def test_forged_mute_elements_are_stripped(srv):
    olga, alice = await room_with(srv, "olga", "alice")
    dave = await client(srv, "dave")
    try:
        msg = alice.make_message(mto=ROOM, mbody="fake", mtype="groupchat")
        msg["mute_notice"]["action"] = "mute"
        msg["mute_notice"]["nick"] = "olga"
        msg.append(__import__("slixmpp").xmlstream.ET.fromstring(f"<whatever xmlns='{NS}'/>"))
        msg.send()
        got = await olga.inbox.message(groupchat_from("alice", "fake"))
        assert NS not in str(got), str(got)
        chat = alice.make_message(mto="dave@localhost", mbody="fake too", mtype="chat")
        chat["mute_notice"]["action"] = "unmute"
        chat.send()
        got = await dave.inbox.message(lambda m: m["body"] == "fake too")
        assert NS not in str(got)
        pres = alice.make_presence(pto=f"{ROOM}/alice", pstatus="here")
        pres.append(__import__("slixmpp").xmlstream.ET.fromstring(f"<muted xmlns='{NS}' room='{ROOM}' by='x@y'/>"))
        pres.send()
        p = await olga.inbox.presence(lambda p: p["status"] == "here")
        assert NS not in str(p)
    finally:
        await close(olga, alice, dave)


async def test_audit_log_through_iq_and_command(srv):
    admin = await client(srv, "admin")
    olga, alice = await room_with(srv, "olga", "alice")
    try:
        await olga.plugin["mute"].mute(ROOM, nick="alice", seconds=60, reason="r1")
        await olga.plugin["mute"].unmute(ROOM, nick="alice")
        await olga.plugin["mute"].mute_all(ROOM, reason="r2")
        await admin.plugin["mute"].platform_mute("alice@localhost", reason="r3")
        with pytest.raises(IqError) as info:
            await olga.plugin["mute"].audit()
        assert info.value.iq["error"]["condition"] == "forbidden"
        audit = await admin.plugin["mute"].audit()
        assert_valid(audit.xml)
        rows = [(e["action"], e["actor"], e["room"], e["scope"], e["target"], e["seconds"], e["reason"]) for e in audit.entries()]
        assert rows == [
            ("mute", ADMIN, "", "platform", "alice@localhost", "", "r3"),
            ("mute-all", "olga@localhost", ROOM, "", "", "", "r2"),
            ("unmute", "olga@localhost", ROOM, "", "alice@localhost", "", ""),
            ("mute", "olga@localhost", ROOM, "", "alice@localhost", "60", "r1"),
        ]
        assert all(e["at"].endswith("Z") for e in audit.entries())
        page = await admin.plugin["mute"].audit(room=ROOM, max=2)
        assert [e["action"] for e in page.entries()] == ["mute-all", "unmute"] and page["more"] == "true"
        rest = await admin.plugin["mute"].audit(room=ROOM, before=page.entries()[-1]["id"])
        assert [e["action"] for e in rest.entries()] == ["mute"]
        assert [e["action"] for e in (await admin.plugin["mute"].audit(platform=True)).entries()] == ["mute"]
        # the same through the ad-hoc command standard clients run
        admin.register_plugin("xep_0050")
        res = await admin.plugin["xep_0050"].send_command("localhost", f"{NS}#audit", timeout=5)
        sid = res["command"]["sessionid"]
        form = SlixForm()
        form["type"] = "submit"
        form.add_field(var="room", value=ROOM)
        res = await admin.plugin["xep_0050"].send_command("localhost", f"{NS}#audit", sessionid=sid, action="complete",
                                                          payload=form, timeout=5)
        items = res["command"]["form"]["items"]
        assert [i["action"] for i in items] == ["mute-all", "unmute", "mute"]
        assert items[-1]["reason"] == "r1" and items[-1]["target"] == "alice@localhost"
    finally:
        await close(admin, olga, alice)


async def test_room_commands_for_moderators_and_server_commands_for_admins(srv):
    olga, alice, nina = await room_with(srv, "olga", "alice", "nina")
    admin = await client(srv, "admin")
    try:
        for c in (olga, nina, admin):
            c.register_plugin("xep_0050")
        items = await olga.plugin["xep_0030"].get_items(jid=ROOM, node="http://jabber.org/protocol/commands", timeout=5)
        nodes = {i[1] for i in items["disco_items"]["items"]}
        assert {f"{NS}#mute", f"{NS}#unmute", f"{NS}#list", f"{NS}#mute-all", f"{NS}#unmute-all"} <= nodes
        items = await nina.plugin["xep_0030"].get_items(jid=ROOM, node="http://jabber.org/protocol/commands", timeout=5)
        assert len(items["disco_items"]["items"]) == 0
        with pytest.raises(IqError) as info:
            await nina.plugin["xep_0050"].send_command(ROOM, f"{NS}#mute", timeout=5)
        assert info.value.iq["error"]["condition"] == "forbidden"
        # mute through the command: a form, then completed
        res = await olga.plugin["xep_0050"].send_command(ROOM, f"{NS}#mute", timeout=5)
        assert res["command"]["status"] == "executing"
        form = SlixForm()
        form["type"] = "submit"
        form.add_field(var="member", value="alice")
        form.add_field(var="seconds", value="600")
        form.add_field(var="reason", value="by command")
        res = await olga.plugin["xep_0050"].send_command(ROOM, f"{NS}#mute", sessionid=res["command"]["sessionid"],
                                                         action="complete", payload=form, timeout=5)
        assert res["command"]["status"] == "completed" and "10 minutes" in res["command"]["notes"][0][1]
        await alice.inbox.presence(is_presence_of("alice", "visitor"))
        res = await olga.plugin["xep_0050"].send_command(ROOM, f"{NS}#list", timeout=5)
        [row] = res["command"]["form"]["items"]
        assert row["jid"] == "alice@localhost" and row["reason"] == "by command"
        # hierarchy through the command: the owner can't be muted; the form comes back with the reason
        res = await olga.plugin["xep_0050"].send_command(ROOM, f"{NS}#mute", timeout=5)
        form = SlixForm()
        form["type"] = "submit"
        form.add_field(var="member", value="olga")
        res = await olga.plugin["xep_0050"].send_command(ROOM, f"{NS}#mute", sessionid=res["command"]["sessionid"],
                                                         action="complete", payload=form, timeout=5)
        assert res["command"]["status"] == "executing" and "yourself" in res["command"]["notes"][0][1]
        # unmute through the command (the muted members are the options)
        res = await olga.plugin["xep_0050"].send_command(ROOM, f"{NS}#unmute", timeout=5)
        options = [o["value"] for o in res["command"]["form"].get_fields()["member"].get_options()]
        assert options == ["alice@localhost"]
        form = SlixForm()
        form["type"] = "submit"
        form.add_field(var="member", value="alice@localhost")
        res = await olga.plugin["xep_0050"].send_command(ROOM, f"{NS}#unmute", sessionid=res["command"]["sessionid"],
                                                         action="complete", payload=form, timeout=5)
        assert res["command"]["status"] == "completed"
        await alice.inbox.presence(is_presence_of("alice", "participant"))
        # platform mute through the server's command (admins only)
        with pytest.raises(IqError):
            await olga.plugin["xep_0050"].send_command("localhost", f"{NS}#platform-mute", timeout=5)
        res = await admin.plugin["xep_0050"].send_command("localhost", f"{NS}#platform-mute", timeout=5)
        form = SlixForm()
        form["type"] = "submit"
        form.add_field(var="member", value="nina@localhost")
        form.add_field(var="seconds", value="3600")
        res = await admin.plugin["xep_0050"].send_command("localhost", f"{NS}#platform-mute", sessionid=res["command"]["sessionid"],
                                                          action="complete", payload=form, timeout=5)
        assert res["command"]["status"] == "completed"
        assert (await nina.plugin["mute"].platform_status())["muted"] == "true"
    finally:
        await close(olga, alice, nina, admin)

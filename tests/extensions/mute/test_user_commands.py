"""Group mute for every user through XEP-0050 (issue 16), over the wire with slixmpp: "my mutes"
lists the requester's own member mutes, mute-all rooms and platform mute (read-only), and a
red packet sent by ad-hoc command passes the same speech gate as the <send/> iq."""

from __future__ import annotations

import asyncio

import pytest

from xmppd_extensions.mute.commands import CMD_MY_MUTES
from xmppd_extensions.redpacket.user_commands import SEND

from ...features.test_adhoc import PLUGINS, form_of, notes, run, xform
from ...helpers import add_user, slix
from .support import client
from .test_speech import balances, mute_by, rp_message, speech_server, with_wallet
from .test_wire import ROOM, close, room_with

pytestmark = pytest.mark.interop

OTHER = "quiet@conference.localhost"


@pytest.fixture
async def srv(tmp_path):
    async with speech_server(tmp_path) as s:
        yield s


def with_commands(c):
    c.register_plugin("xep_0050")
    return c


def rows(cmd) -> list[dict]:
    return [{f.var: f.value() for f in item} for item in xform(cmd).items]


async def test_my_mutes_lists_my_room_mutes_mute_all_and_platform_mute(srv):
    admin = await client(srv, "admin")
    olga, bob, alice = await room_with(srv, "olga", "bob", "alice", members=("bob", "alice"))
    with_commands(alice), with_commands(bob)
    try:
        nothing = await run(alice, CMD_MY_MUTES)  # no form: runs at once
        assert nothing.get("status") == "completed" and rows(nothing) == []
        assert notes(nothing) == [("info", "You are not muted on the whole server. No room mutes you.")]
        await olga.plugin["mute"].mute(ROOM, nick="alice", seconds=600, reason="spam")
        await olga.plugin["mute"].mute_all(ROOM, reason="quiet")
        await admin.plugin["mute"].platform_mute("alice@localhost", seconds=3600, reason="abuse")
        shown = await run(alice, CMD_MY_MUTES)
        assert [f.var for f in xform(shown).reported] == ["room", "kind", "since", "until", "remaining", "by", "reason"]
        got = [(r["room"] and str(r["room"]), r["kind"], str(r["by"]), r["reason"]) for r in rows(shown)]
        assert got == [
            (None, "on the whole server", "admin@localhost", "abuse"),
            (ROOM, "you, in this room", "olga@localhost", "spam"),
            (ROOM, "everyone in this room (mute-all)", "olga@localhost", "quiet"),
        ]
        timed = rows(shown)[1]
        assert timed["until"].endswith("Z") and 0 < int(timed["remaining"]) <= 601  # the end is kept on whole seconds
        assert notes(shown) == [("info", "You are muted on the whole server. You may not speak in 1 room(s).")]
        # only one's own: bob sees the mute-all of his room, nothing of alice's
        bobs = rows(await run(bob, CMD_MY_MUTES))
        assert [(str(r["room"]), r["kind"]) for r in bobs] == [(ROOM, "everyone in this room (mute-all)")]
        # the owner is exempt from mute-all: nothing for olga
        with_commands(olga)
        assert rows(await run(olga, CMD_MY_MUTES)) == []
    finally:
        await close(admin, olga, bob, alice)


@pytest.mark.parametrize("kind", ["member", "all", "platform"])
async def test_a_muted_members_red_packet_by_command_is_refused_by_the_same_gate_with_no_debit(srv, kind):
    admin = await client(srv, "admin")
    olga, bob, alice = await room_with(srv, "olga", "bob", "alice", members=("bob", "alice"))
    feat = srv.features["redpacket"]
    await feat.repo.topup("alice@localhost", 100, feat.now())
    with_commands(with_wallet(alice))
    try:
        await mute_by(kind, srv, olga, admin)
        olga.inbox.drain()
        before = await balances(srv, "alice", "bob")
        first = await run(alice, SEND)
        again = await run(alice, SEND, action="complete", sessionid=first.get("sessionid"),
                          payload=form_of(alice, to=ROOM, kind="exclusive", amount="0.01", count="1",
                                          exclusive="bob@localhost", greeting="buy cheap followers"))
        assert again.get("status") == "executing"
        (level, text), = notes(again)
        # the text of the error the <send/> iq gets (and the groupchat message)
        expected = {"member": "you are muted in this room until", "all": "everyone is muted in this room",
                    "platform": "your account is muted on this server until"}[kind]
        assert level == "error" and expected in text
        assert await balances(srv, "alice", "bob") == before == {"alice": 100, "bob": 0}
        assert (await feat.repo.audit()).ok
        with pytest.raises(asyncio.TimeoutError):
            await olga.inbox.message(rp_message, timeout=0.5)
    finally:
        await close(admin, olga, bob, alice)


async def test_a_platform_muted_accounts_one_to_one_packet_by_command_is_refused_except_to_an_admin(srv):
    admin, alice, dave = await client(srv, "admin"), await client(srv, "alice"), await client(srv, "dave")
    feat = srv.features["redpacket"]
    await feat.repo.topup("alice@localhost", 100, feat.now())
    with_commands(with_wallet(alice))
    try:
        await admin.plugin["mute"].platform_mute("alice@localhost", seconds=600, reason="abuse")
        first = await run(alice, SEND)
        sid = first.get("sessionid")
        again = await run(alice, SEND, action="complete", sessionid=sid,
                          payload=form_of(alice, to="dave@localhost", amount="0.01", count="1", greeting="spam spam"))
        (level, text), = notes(again)
        assert level == "error" and "your account is muted on this server" in text
        assert await balances(srv, "alice", "dave") == {"alice": 100, "dave": 0}
        with pytest.raises(asyncio.TimeoutError):
            await dave.inbox.message(rp_message, timeout=0.5)
        # the same session, to a server admin: the gate lets it through, as for the iq
        done = await run(alice, SEND, action="complete", sessionid=sid,
                         payload=form_of(alice, to="admin@localhost", amount="0.01", count="1", greeting="sorry"))
        assert done.get("status") == "completed"
        assert await balances(srv, "alice") == {"alice": 99}
        await admin.inbox.message(rp_message)
    finally:
        await close(admin, alice, dave)


async def test_my_mutes_speaks_the_requesters_language(srv):
    admin = await client(srv, "admin")
    zoe = with_commands(await slix(srv, await add_user(srv, "zoe"), plugins=PLUGINS, lang="zh-CN"))
    try:
        await admin.plugin["mute"].platform_mute("zoe@localhost", seconds=600, reason="广告")
        shown = await run(zoe, CMD_MY_MUTES)
        assert notes(shown) == [("info", "您已被全站禁言。没有群对您禁言。")]
        assert [(r["kind"], r["reason"]) for r in rows(shown)] == [("全站", "广告")]
        assert xform(shown).title == "我的禁言"
    finally:
        await close(admin, zoe)

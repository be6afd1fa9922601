"""Timed bans (docs/mute.md §3.6) over real sockets: the XEP-0045 admin iq with
<ban xmlns='urn:xmppd:mute:0' seconds='…'/> and the #ban ad-hoc command (slixmpp), a join refused
with forbidden, the ban list with the end, a join allowed after the end, and the end kept (and
caught up) across a server restart."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET

import aioxmpp
import aioxmpp.errors
import pytest
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.plugins.xep_0004 import Form as SlixForm

from xmppd.jid import JID

from ...features.muc_support import join
from .support import aioxmpp_in_room, assert_valid, client, mute_server
from .test_wire import ROOM, close, room_with

pytestmark = pytest.mark.interop

NS = "urn:xmppd:mute:0"
ADMIN_NS = "http://jabber.org/protocol/muc#admin"


async def ban(c, jid: str, seconds: str | None, reason: str = "flood"):
    """The standard admin request (XEP-0045 §9.1) with our duration inside the item."""
    iq = c.make_iq_set(ito=ROOM)
    dur = f"<ban xmlns='{NS}' seconds='{seconds}'/>" if seconds is not None else ""
    iq.append(ET.fromstring(f"<query xmlns='{ADMIN_NS}'><item affiliation='outcast' jid='{jid}'>"
                            f"<reason>{reason}</reason>{dur}</item></query>"))
    return await iq.send(timeout=5)


async def ban_list(c) -> dict[str, ET.Element]:
    iq = c.make_iq_get(ito=ROOM)
    iq.append(ET.fromstring(f"<query xmlns='{ADMIN_NS}'><item affiliation='outcast'/></query>"))
    res = await iq.send(timeout=5)
    return {i.get("jid"): i for i in res.xml.iter(f"{{{ADMIN_NS}}}item")}


async def refused(c, nick: str) -> str:
    with pytest.raises(PresenceError) as info:
        await join(c, ROOM, nick)
    return info.value.presence["error"]["condition"]


async def joins_again(c, nick: str, timeout: float = 10.0) -> None:
    """Join as soon as the room lets us in (the ban ends on the server's timer)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await join(c, ROOM, nick)
            return
        except PresenceError as err:
            assert err.presence["error"]["condition"] == "forbidden"
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def test_a_timed_ban_refuses_then_ends_by_itself(tmp_path):
    async with mute_server(tmp_path, "mute.max_ban_seconds=3600") as srv:
        olga, alice, bob = await room_with(srv, "olga", "alice", "bob")
        try:
            # malformed durations refuse the whole request, nothing changes
            for seconds, cond in (("0", "bad-request"), ("soon", "bad-request"), ("7200", "not-acceptable")):
                with pytest.raises(IqError) as info:
                    await ban(olga, "alice@localhost", seconds)
                assert info.value.iq["error"]["condition"] == cond
            with pytest.raises(IqError) as info:  # a duration only goes with outcast
                iq = olga.make_iq_set(ito=ROOM)
                iq.append(ET.fromstring(f"<query xmlns='{ADMIN_NS}'><item affiliation='member' jid='bob@localhost'>"
                                        f"<ban xmlns='{NS}' seconds='60'/></item></query>"))
                await iq.send(timeout=5)
            assert info.value.iq["error"]["condition"] == "bad-request"
            assert "alice@localhost" not in await ban_list(olga)

            await ban(olga, "alice@localhost", "2")
            await alice.inbox.presence(lambda p: p["type"] == "unavailable" and "301" in {str(c) for c in p["muc"]["status_codes"]})
            assert await refused(alice, "alice") == "forbidden"
            item = (await ban_list(olga))["alice@localhost"]
            assert item.findtext(f"{{{ADMIN_NS}}}reason") == "flood"
            end = item.find(f"{{{NS}}}ban")
            assert end is not None and end.get("by") == "olga@localhost" and int(end.get("remaining")) <= 3  # ends on a whole second
            assert_valid(end)
            # a ban without duration is XEP-0045's: until lifted, no end shown
            await ban(olga, "bob@localhost", None)
            assert (await ban_list(olga))["bob@localhost"].find(f"{{{NS}}}ban") is None

            await joins_again(alice, "alice")  # the owner node removed the outcast affiliation
            assert "alice@localhost" not in await ban_list(olga)
            assert srv.features["muc"].get_room(ROOM).affiliation(JID.parse("alice@localhost")).value == "none"
            assert await srv.features["mute"].repo.bans() == []
            assert await refused(bob, "bob") == "forbidden"  # still banned
        finally:
            await close(olga, alice, bob)


async def test_the_ban_command_needs_an_admin_and_bans_for_a_time(srv):
    olga, alice, bob = await room_with(srv, "olga", "alice", "bob")
    try:
        for c in (olga, alice):
            c.register_plugin("xep_0050")
        node = f"{NS}#ban"
        with pytest.raises(IqError) as info:
            await alice.plugin["xep_0050"].send_command(ROOM, node, timeout=5)
        assert info.value.iq["error"]["condition"] == "forbidden"
        first = await olga.plugin["xep_0050"].send_command(ROOM, node, timeout=5)
        form = SlixForm()
        form["type"] = "submit"
        form.add_field(var="jid", ftype="jid-single", value="bob@localhost")
        form.add_field(var="seconds", value="300")
        form.add_field(var="reason", value="spam")
        done = await olga.plugin["xep_0050"].send_command(ROOM, node, sessionid=first["command"]["sessionid"],
                                                          action="complete", payload=form, timeout=5)
        assert done["command"]["status"] == "completed" and "banned until" in done["command"]["notes"][0][1]
        await bob.inbox.presence(lambda p: p["type"] == "unavailable")
        assert await refused(bob, "bob") == "forbidden"
        # a standard client (aioxmpp) sees XEP-0045's refusal
        with pytest.raises(aioxmpp.errors.XMPPAuthError) as aio_err:
            async with aioxmpp_in_room(srv, "bob@localhost", ROOM, "bob2"):
                pass
        assert aio_err.value.condition == aioxmpp.ErrorCondition.FORBIDDEN
        end = (await ban_list(olga))["bob@localhost"].find(f"{{{NS}}}ban")
        assert end is not None and 295 <= int(end.get("remaining")) <= 301
    finally:
        await close(olga, alice, bob)


async def test_a_timed_ban_survives_a_restart_and_is_caught_up(tmp_path):
    """alice's 2-second ban ends while the server is down: the restarted server lifts it at once
    (end time in storage, timer caught up); bob's 600-second ban still holds, end unchanged."""
    async with mute_server(tmp_path) as srv:
        olga, alice, bob = await room_with(srv, "olga", "alice", "bob", persistent=True)
        try:
            await ban(olga, "alice@localhost", "2")
            await olga.plugin["mute"].ban(ROOM, "bob@localhost", seconds=600, reason="spam")  # the client plugin
            before = (await olga.plugin["mute"].bans(ROOM))["bob@localhost"]
            assert before["reason"] == "spam" and before["by"] == "olga@localhost" and before["until"]
            [a_ban] = [b for b in await srv.features["mute"].repo.bans() if b.jid == "alice@localhost"]
        finally:
            await close(olga, alice, bob)
    await asyncio.sleep(max(0.0, a_ban.until.timestamp() + 0.2 - time.time()))  # alice's ban ends while no server runs
    async with mute_server(tmp_path) as srv:
        olga = await client(srv, "olga", create=False)
        alice = await client(srv, "alice", create=False)
        bob = await client(srv, "bob", create=False)
        try:
            await joins_again(alice, "alice", timeout=5)
            await join(olga, ROOM, "olga")
            bans = await olga.plugin["mute"].bans(ROOM)
            assert "alice@localhost" not in bans
            assert bans["bob@localhost"]["until"] == before["until"]
            assert await refused(bob, "bob") == "forbidden"
        finally:
            await close(olga, alice, bob)

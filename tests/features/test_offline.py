"""XEP-0160 offline messages with XEP-0203 delay stamps, over the wire with slixmpp."""
from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import slixmpp
from lxml import etree

from xmppd.features.offline import worth_storing
from xmppd.jid import JID

from ..helpers import add_user, running_server, slix, slix_close

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DELAY = "{urn:xmpp:delay}delay"


def _inbox(client: slixmpp.ClientXMPP) -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    client.add_event_handler("message", lambda m: q.put_nowait(m))
    return q


async def _errors(client: slixmpp.ClientXMPP) -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    client.add_event_handler("message_error", lambda m: q.put_nowait(m))
    return q


async def _online(server, jid: str, plugins=("xep_0203",), presence: bool = True, priority: int | None = None):
    """Log in, register the inbox before the initial presence so nothing is missed."""
    client = await slix(server, jid, plugins=plugins)
    inbox = _inbox(client)
    if presence:
        if priority is None:
            client.send_presence()
        else:
            client.send_presence(ppriority=priority)
    return client, inbox


async def _count(server, user: str) -> int:
    return await server.features["offline"].repo.count(user, server.domain)


async def _wait_count(server, user: str, n: int) -> None:
    for _ in range(200):
        if await _count(server, user) == n:
            return
        await asyncio.sleep(0.01)
    assert await _count(server, user) == n


async def test_messages_to_an_offline_user_arrive_in_order_with_delay_stamps(server):
    alice = await slix(server, await add_user(server, "alice"))
    bob_jid = await add_user(server, "bob")
    before = datetime.now(UTC) - timedelta(seconds=1)
    try:
        for i in range(10):
            alice.send_message(mto=bob_jid, mbody=f"m{i}", mtype="chat")
        alice.send_message(mto=bob_jid + "/gone-resource", mbody="to a full JID", mtype="normal")
        await _wait_count(server, "bob", 11)
        bob, inbox = await _online(server, bob_jid)
        try:
            got = [await asyncio.wait_for(inbox.get(), 5) for _ in range(11)]
            assert [m["body"] for m in got] == [f"m{i}" for i in range(10)] + ["to a full JID"]
            for m in got:
                assert m["from"] == alice.boundjid
                assert m["delay"]["from"] == JID.parse(server.domain).domain
                stamp = m.xml.find(DELAY).get("stamp")
                assert STAMP.match(stamp), stamp
                assert before <= m["delay"]["stamp"] <= datetime.now(UTC)
            await _wait_count(server, "bob", 0)
        finally:
            await slix_close(bob)
    finally:
        await slix_close(alice)


async def test_delivery_waits_for_available_presence_of_non_negative_priority(server):
    alice = await slix(server, await add_user(server, "alice"))
    bob_jid = await add_user(server, "bob")
    try:
        alice.send_message(mto=bob_jid, mbody="hello", mtype="chat")
        await _wait_count(server, "bob", 1)
        bob, inbox = await _online(server, bob_jid, presence=False)
        try:
            # Bound, but no presence yet: nothing arrives, nothing is deleted.
            await asyncio.sleep(0.2)
            assert inbox.empty() and await _count(server, "bob") == 1
            bob.send_presence(ppriority=-1)
            await asyncio.sleep(0.2)
            assert inbox.empty() and await _count(server, "bob") == 1
            bob.send_presence(ppriority=1)
            m = await asyncio.wait_for(inbox.get(), 5)
            assert m["body"] == "hello" and m["delay"]["from"] == server.domain
            # Only the first available presence delivers.
            bob.send_presence(ppriority=2, pstatus="again")
            await asyncio.sleep(0.2)
            assert inbox.empty()
        finally:
            await slix_close(bob)
    finally:
        await slix_close(alice)


async def test_types_hints_and_chat_states_that_are_not_stored(server):
    alice = await slix(server, await add_user(server, "alice"), plugins=("xep_0085", "xep_0334"))
    bob_jid = await add_user(server, "bob")
    errors = await _errors(alice)
    try:
        for typ in ("headline", "groupchat"):
            alice.send_message(mto=bob_jid, mbody=f"a {typ}", mtype=typ)
        m = alice.make_message(mto=bob_jid, mbody="do not keep", mtype="chat")
        m.enable("no-store")
        m.send()
        m = alice.make_message(mto=bob_jid, mtype="chat")
        m["chat_state"] = "composing"
        m.send()
        m = alice.make_message(mto=bob_jid, mtype="chat")
        m["chat_state"] = "active"
        m.enable("store")
        m.send()
        alice.send_message(mto=bob_jid, mbody="keep me", mtype="chat")
        await _wait_count(server, "bob", 2)
        # RFC 6121 §8.5.2.2.1: what is not stored is answered service-unavailable (not headline).
        conds = set()
        for _ in range(3):
            e = await asyncio.wait_for(errors.get(), 5)
            conds.add((e["error"]["condition"], e["body"]))
        assert ("service-unavailable", "do not keep") in conds
        bob = await slix(server, bob_jid, plugins=("xep_0203", "xep_0085"))
        inbox = _inbox(bob)
        states: asyncio.Queue = asyncio.Queue()
        bob.add_event_handler("chatstate_active", lambda m: states.put_nowait(m))  # body-less: no "message" event
        bob.send_presence()
        try:
            state = await asyncio.wait_for(states.get(), 5)
            assert state["delay"]["from"] == server.domain and not state["body"]
            second = await asyncio.wait_for(inbox.get(), 5)
            assert second["body"] == "keep me"
            await asyncio.sleep(0.1)
            assert inbox.empty()
        finally:
            await slix_close(bob)
    finally:
        await slix_close(alice)


async def test_quota_full_gives_the_sender_service_unavailable(tmp_path: Path):
    async with running_server(tmp_path, "offline.max_messages=3") as server:
        alice = await slix(server, await add_user(server, "alice"))
        bob_jid = await add_user(server, "bob")
        errors = await _errors(alice)
        try:
            for i in range(4):
                alice.send_message(mto=bob_jid, mbody=f"m{i}", mtype="chat")
            e = await asyncio.wait_for(errors.get(), 5)
            assert e["error"]["condition"] == "service-unavailable"
            assert e["error"]["text"] == f"offline storage of {bob_jid} is full"
            assert e["body"] == "m3" and e["from"] == bob_jid
            assert await _count(server, "bob") == 3
        finally:
            await slix_close(alice)


async def test_byte_quota_bounces_whole_messages_and_delivers_the_stored_ones_intact(tmp_path: Path):
    # Each message is stored as ~1.1-1.3 kB of XML (900 bytes of body, 450 characters): three
    # fit in 4000 bytes, a fourth does not -- counted in bytes, not characters.
    body = "é" * 450
    async with running_server(tmp_path, "offline.max_bytes=4000") as server:
        alice = await slix(server, await add_user(server, "alice"))
        bob_jid = await add_user(server, "bob")
        errors = await _errors(alice)
        try:
            for i in range(5):
                alice.send_message(mto=bob_jid, mbody=f"{i}{body}", mtype="chat")
            bounced = [await asyncio.wait_for(errors.get(), 5) for _ in range(2)]
            assert [e["body"] for e in bounced] == [f"3{body}", f"4{body}"]
            for e in bounced:
                assert e["error"]["condition"] == "service-unavailable" and e["error"]["type"] == "cancel"
                assert e["error"]["text"] == f"offline storage of {bob_jid} is full"
            n, used = await server.features["offline"].repo.usage("bob", server.domain)
            assert n == 3 and used <= 4000
        finally:
            await slix_close(alice)
        bob, inbox = await _online(server, bob_jid)
        try:
            got = [await asyncio.wait_for(inbox.get(), 5) for _ in range(3)]
            assert [m["body"] for m in got] == [f"{i}{body}" for i in range(3)]
            await asyncio.sleep(0.1)
            assert inbox.empty()
            await _wait_count(server, "bob", 0)
        finally:
            await slix_close(bob)


async def test_message_to_a_nonexistent_account_is_bounced(server):
    alice = await slix(server, await add_user(server, "alice"))
    errors = await _errors(alice)
    try:
        alice.send_message(mto=f"nobody@{server.domain}", mbody="hi", mtype="chat")
        e = await asyncio.wait_for(errors.get(), 5)
        assert e["error"]["condition"] == "service-unavailable"
    finally:
        await slix_close(alice)


async def _restart_roundtrip(tmp_path: Path, *overrides: str) -> None:
    async with running_server(tmp_path, *overrides) as server:
        alice = await slix(server, await add_user(server, "alice"))
        bob_jid = await add_user(server, "bob")
        try:
            for i in range(3):
                alice.send_message(mto=bob_jid, mbody=f"before restart {i}", mtype="chat")
            await _wait_count(server, "bob", 3)
        finally:
            await slix_close(alice)
    async with running_server(tmp_path, *overrides) as server:
        bob, inbox = await _online(server, bob_jid)
        try:
            got = [await asyncio.wait_for(inbox.get(), 5) for _ in range(3)]
            assert [m["body"] for m in got] == [f"before restart {i}" for i in range(3)]
            assert all(m["delay"]["from"] == server.domain for m in got)
            await _wait_count(server, "bob", 0)
        finally:
            await slix_close(bob)


async def test_stored_messages_survive_a_restart_on_sqlite(tmp_path: Path):
    await _restart_roundtrip(tmp_path)


async def test_stored_messages_survive_a_restart_on_mariadb(tmp_path: Path, mariadb_server):
    url = mariadb_server.create_database("offline_restart")
    try:
        await _restart_roundtrip(tmp_path, f"storage.url={url.render_as_string(hide_password=False)}", "storage.auto_upgrade=true")
    finally:
        mariadb_server.drop_database(url)


@pytest.mark.parametrize(
    ("xml", "stored"),
    [
        ("<message xmlns='jabber:client'><body>x</body></message>", True),
        ("<message xmlns='jabber:client'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", False),
        ("<message xmlns='jabber:client'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>", False),
        ("<message xmlns='jabber:client'><active xmlns='http://jabber.org/protocol/chatstates'/><store xmlns='urn:xmpp:hints'/></message>", True),
        ("<message xmlns='jabber:client'><received xmlns='urn:xmpp:receipts' id='1'/></message>", True),
        ("<message xmlns='jabber:client'><thread>t</thread></message>", False),
    ],
)
def test_worth_storing(xml, stored):
    assert worth_storing(etree.fromstring(xml)) is stored

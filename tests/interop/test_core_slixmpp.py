"""RFC 6120 core over real sockets with slixmpp: TLS, SASL, binding, routing, errors."""
from __future__ import annotations

import asyncio

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from ..helpers import add_user, slix, slix_close

pytestmark = pytest.mark.interop


def _messages(client: slixmpp.ClientXMPP) -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    client.add_event_handler("message", lambda m: q.put_nowait(m))
    return q


@pytest.mark.parametrize("mode", ["starttls", "direct"])
# slixmpp has no tls-server-end-point channel binding (only tls-unique, and nothing on TLS 1.3):
# the -PLUS mechanisms are proven over the wire by test_sasl_plus.py with scramp's client.
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
async def test_login_every_mechanism_on_both_tls_modes(server, mode, mech):
    jid = await add_user(server, "alice")
    client = await slix(server, jid, mode=mode, mech=mech)
    try:
        assert client.boundjid.bare == jid
        assert client.boundjid.resource  # the server made one
        session = server.sessions.get(__import__("xmppd.jid", fromlist=["JID"]).JID.parse(str(client.boundjid)))
        assert session is not None and session.stream.tls
    finally:
        await slix_close(client)


async def test_wrong_password_is_refused(server):
    jid = await add_user(server, "alice")
    with pytest.raises(ConnectionError):
        await slix(server, jid, "wrong password", timeout=5)
    assert len(server.sessions) == 0


async def test_message_between_two_clients_keeps_order_and_stamps_from(server):
    a = await slix(server, await add_user(server, "alice"))
    b = await slix(server, await add_user(server, "bob"))
    try:
        inbox = _messages(b)
        for i in range(50):
            a.send_message(mto=b.boundjid.full, mbody=f"m{i}", mtype="chat")
        got = [await asyncio.wait_for(inbox.get(), 5) for _ in range(50)]
        assert [m["body"] for m in got] == [f"m{i}" for i in range(50)]
        assert all(m["from"] == a.boundjid for m in got)
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_spoofed_from_is_overwritten(server):
    a = await slix(server, await add_user(server, "alice"))
    b = await slix(server, await add_user(server, "bob"))
    try:
        inbox = _messages(b)
        msg = a.make_message(mto=b.boundjid.full, mbody="hi", mtype="chat")
        msg["from"] = "admin@localhost/evil"
        msg.send()
        got = await asyncio.wait_for(inbox.get(), 5)
        assert got["from"] == a.boundjid
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_message_to_bare_jid_goes_to_highest_priority_resource(server):
    jid_b = await add_user(server, "bob")
    a = await slix(server, await add_user(server, "alice"))
    b1 = await slix(server, jid_b)
    b2 = await slix(server, jid_b)
    try:
        b1.send_presence(ppriority=1)
        b2.send_presence(ppriority=5)
        in1, in2 = _messages(b1), _messages(b2)
        await asyncio.sleep(0.2)
        a.send_message(mto=jid_b, mbody="to the bare jid", mtype="chat")
        got = await asyncio.wait_for(in2.get(), 5)
        assert got["body"] == "to the bare jid"
        await asyncio.sleep(0.2)
        assert in1.empty()
    finally:
        for c in (a, b1, b2):
            await slix_close(c)


async def test_iq_to_unavailable_full_jid_gets_service_unavailable(server):
    a = await slix(server, await add_user(server, "alice"))
    await add_user(server, "bob")
    try:
        iq = a.make_iq_get(queryxmlns="urn:example:nothing", ito="bob@localhost/nowhere")
        with pytest.raises(IqError) as err:
            await iq.send(timeout=5)
        assert err.value.condition == "service-unavailable"
    finally:
        await slix_close(a)


async def test_iq_between_clients_is_routed_and_answered(server):
    a = await slix(server, await add_user(server, "alice"), plugins=("xep_0092",))
    b = await slix(server, await add_user(server, "bob"), plugins=("xep_0092",))
    try:
        b.plugin["xep_0092"].software_name = "bob-client"
        result = await a.plugin["xep_0092"].get_version(b.boundjid.full, timeout=5)
        assert result["software_version"]["name"] == "bob-client"
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_unknown_payload_to_server_is_service_unavailable(server):
    a = await slix(server, await add_user(server, "alice"))
    try:
        iq = a.make_iq_get(queryxmlns="urn:example:unknown", ito="localhost")
        with pytest.raises(IqError) as err:
            await iq.send(timeout=5)
        assert err.value.condition == "service-unavailable"
    finally:
        await slix_close(a)


async def test_new_session_on_same_full_jid_replaces_old_with_conflict(server):
    jid = await add_user(server, "alice")
    first = await slix(server, jid + "/phone")
    errors: asyncio.Queue = asyncio.Queue()
    first.add_event_handler("stream_error", lambda e: errors.put_nowait(e))
    first.auto_reconnect = False
    second = await slix(server, jid + "/phone")
    try:
        err = await asyncio.wait_for(errors.get(), 5)
        assert err["condition"] == "conflict"
        assert len(server.sessions) == 1
        assert str(second.boundjid) == jid + "/phone"
    finally:
        await slix_close(first)
        await slix_close(second)


async def test_message_to_other_domain_gets_remote_server_not_found(server):
    a = await slix(server, await add_user(server, "alice"))
    try:
        inbox = _messages(a)
        a.send_message(mto="someone@elsewhere.example", mbody="hi", mtype="chat")
        err = await asyncio.wait_for(inbox.get(), 5)
        assert err["type"] == "error"
        assert err["error"]["condition"] == "remote-server-not-found"
    finally:
        await slix_close(a)

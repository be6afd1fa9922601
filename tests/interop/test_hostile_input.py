"""Hostile input over real sockets: each case gets the RFC 6120 stream error and closes only
that connection; a logged-in bystander keeps chatting. XEP-0205 limits are proven here too."""
from __future__ import annotations

import asyncio
import base64

import pytest

from ..helpers import PASSWORD, RawClient, add_user, running_server, slix, slix_close

pytestmark = pytest.mark.interop

BILLION_LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    b"<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
    b"<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>"
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>&lol3;"
)
XXE = (
    b"<?xml version='1.0'?><!DOCTYPE foo [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


@pytest.fixture
async def plain_server(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", "c2s.max_stanza_size=4096", "c2s.max_depth=16") as srv:
        await add_user(srv, "mallory")
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        yield srv


async def _bystanders(server):
    a = await slix(server, "alice@localhost")
    b = await slix(server, "bob@localhost")
    return a, b


async def _still_chatting(a, b) -> None:
    inbox: asyncio.Queue = asyncio.Queue()
    b.add_event_handler("message", lambda m: inbox.put_nowait(m))
    a.send_message(mto=b.boundjid.full, mbody="still here", mtype="chat")
    msg = await asyncio.wait_for(inbox.get(), 5)
    assert msg["body"] == "still here"


@pytest.mark.parametrize(
    "name,payload,condition",
    [
        ("billion-laughs", BILLION_LAUGHS, b"restricted-xml"),
        ("xxe", XXE, b"restricted-xml"),
    ],
)
async def test_dtd_attacks_before_the_stream(plain_server, name, payload, condition):
    a, b = await _bystanders(plain_server)
    try:
        raw = await RawClient.connect(plain_server)
        await raw.send(payload)
        data = await raw.read_all()
        assert condition in data
        assert b"root:" not in data  # nothing of /etc/passwd
        assert data.rstrip().endswith(b"</stream:stream>")
        await _still_chatting(a, b)
    finally:
        await slix_close(a)
        await slix_close(b)


@pytest.mark.parametrize(
    "name,stanza,condition",
    [
        ("comment", b"<message to='bob@localhost'><!-- hi --><body>x</body></message>", b"restricted-xml"),
        ("processing-instruction", b"<message to='bob@localhost'><?evil data?><body>x</body></message>", b"restricted-xml"),
        ("undefined-entity", b"<message to='bob@localhost'><body>&xxe;</body></message>", b"restricted-xml"),
        ("invalid-utf8", b"<message to='bob@localhost'><body>\xff\xfe</body></message>", b"not-well-formed"),
        ("control-character", b"<message to='bob@localhost'><body>\x01</body></message>", b"not-well-formed"),
        ("control-character-reference", b"<message to='bob@localhost'><body>&#1;</body></message>", b"not-well-formed"),
        ("surrogate-reference", b"<message to='bob@localhost'><body>&#xD800;</body></message>", b"not-well-formed"),
        ("oversized", b"<message to='bob@localhost'><body>" + b"x" * 8000 + b"</body></message>", b"policy-violation"),
        ("deeply-nested", b"<message>" + b"<a>" * 40 + b"</a>" * 40 + b"</message>", b"policy-violation"),
        ("mismatched-tags", b"<message><body></message>", b"not-well-formed"),
    ],
)
async def test_bad_stanzas_after_login_close_only_that_stream(plain_server, name, stanza, condition):
    a, b = await _bystanders(plain_server)
    try:
        raw = await RawClient.connect(plain_server)
        await raw.plain_login("mallory")
        await raw.send(stanza)
        data = await raw.read_all()
        assert condition in data, data
        assert data.rstrip().endswith(b"</stream:stream>")
        await _still_chatting(a, b)
        await asyncio.sleep(0.05)
        assert not [s for s in plain_server.live if s.jid and s.jid.local == "mallory"]
    finally:
        await slix_close(a)
        await slix_close(b)


async def test_preauth_buffer_is_smaller_than_the_stanza_limit(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", "c2s.preauth_max_stanza_size=1024") as srv:
        raw = await RawClient.connect(srv)
        await raw.open_stream()
        await raw.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + b"A" * 4000 + b"</auth>")
        data = await raw.read_all()
        assert b"policy-violation" in data


async def test_malformed_jid_gets_jid_malformed(plain_server):
    raw = await RawClient.connect(plain_server)
    await raw.plain_login("mallory")
    await raw.send(b"<message id='m1' to='bad@@jid'><body>x</body></message>")
    data = await raw.read_until(b"</message>")
    assert b"jid-malformed" in data and b"id=\"m1\"" in data


async def test_connections_per_address_are_limited(tmp_path):
    async with running_server(tmp_path, "c2s.max_connections_per_ip=3") as srv:
        clients = [await RawClient.connect(srv) for _ in range(3)]
        for c in clients:
            await c.open_stream()
        extra = await RawClient.connect(srv)
        data = await extra.read_all()
        assert b"policy-violation" in data and b"too many connections" in data
        for c in clients:
            c.close()
        await asyncio.sleep(0.2)
        assert srv.connections.total() == 0
        assert not srv.live


async def test_authentication_deadline_closes_silent_connections(tmp_path):
    async with running_server(tmp_path, "c2s.auth_timeout=0.3") as srv:
        raw = await RawClient.connect(srv)
        await raw.open_stream()
        data = await raw.read_all(timeout=5)
        assert b"connection-timeout" in data
        await asyncio.sleep(0.05)
        assert not srv.live


async def test_sessions_per_account_are_limited(tmp_path):
    async with running_server(tmp_path, "c2s.max_sessions_per_account=2") as srv:
        jid = await add_user(srv, "alice")
        c1 = await slix(srv, jid)
        c2 = await slix(srv, jid)
        try:
            with pytest.raises((ConnectionError, asyncio.TimeoutError)):
                await slix(srv, jid, timeout=3)
            assert len(srv.sessions) == 2
        finally:
            await slix_close(c1)
            await slix_close(c2)


async def test_failed_logins_are_throttled_per_account(tmp_path):
    async with running_server(tmp_path, "c2s.auth_failures_per_account=2", "c2s.require_tls=false") as srv:
        await add_user(srv, "alice")
        for _ in range(2):
            raw = await RawClient.connect(srv)
            await raw.open_stream()
            token = base64.b64encode(b"\0alice\0wrong").decode()
            await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
            assert b"not-authorized" in await raw.read_until(b"</failure>")
            raw.close()
        # Now even the right password is refused for a while.
        raw = await RawClient.connect(srv)
        await raw.open_stream()
        token = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
        await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        assert b"temporary-auth-failure" in await raw.read_until(b"</failure>")
        raw.close()


async def test_failed_logins_are_throttled_per_address(tmp_path):
    async with running_server(tmp_path, "c2s.auth_failures_per_ip=3", "c2s.require_tls=false") as srv:
        await add_user(srv, "alice")
        for user in ("u1", "u2", "u3"):  # three different accounts, one address
            raw = await RawClient.connect(srv)
            await raw.open_stream()
            token = base64.b64encode(f"\0{user}\0x".encode()).decode()
            await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
            assert b"not-authorized" in await raw.read_until(b"</failure>")
            raw.close()
        raw = await RawClient.connect(srv)
        await raw.open_stream()
        token = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
        await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        assert b"temporary-auth-failure" in await raw.read_until(b"</failure>")
        raw.close()


async def test_plain_authzid_for_another_user_is_refused(plain_server):
    raw = await RawClient.connect(plain_server)
    await raw.open_stream()
    token = base64.b64encode(f"alice@localhost\0mallory\0{PASSWORD}".encode()).decode()
    await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    assert b"invalid-authzid" in await raw.read_until(b"</failure>")


async def test_client_supplied_stanza_id_and_delay_claiming_to_be_ours_are_stripped(plain_server):
    a, b = await _bystanders(plain_server)
    try:
        raw = await RawClient.connect(plain_server)
        await raw.plain_login("mallory")
        inbox: asyncio.Queue = asyncio.Queue()
        b.add_event_handler("message", lambda m: inbox.put_nowait(m))
        await raw.send(
            f"<message to='{b.boundjid.full}' type='chat'><body>forged</body>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='localhost' id='fake'/>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='other.example' id='theirs'/>"
            "<delay xmlns='urn:xmpp:delay' from='localhost' stamp='2001-01-01T00:00:00Z'/></message>"
        )
        msg = await asyncio.wait_for(inbox.get(), 5)
        xml = str(msg)
        assert "forged" in xml
        assert "id=\"fake\"" not in xml and "2001-01-01" not in xml
        assert "id=\"theirs\"" in xml  # another entity's id is not ours to remove
    finally:
        await slix_close(a)
        await slix_close(b)

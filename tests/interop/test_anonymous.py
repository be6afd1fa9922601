"""The anonymous host (RFC 4505 SASL ANONYMOUS, XEP-0175; docs/auth.md "Anonymous visitors")
over real sockets: offered there alone and never on the main domain, its limits, and what a
guest may and may not do."""
from __future__ import annotations

import asyncio
import base64
import logging
import re
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from xmppd.jid import JID

from ..helpers import RawClient, add_user, running_server, slix, slix_close, slix_guest
from .jsclients import wait_until

pytestmark = pytest.mark.interop

GUEST = "guest.localhost"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
PLAIN_OPTS = ("c2s.require_tls=false", f"anonymous.domain={GUEST}")


def mechanisms(features: bytes) -> list[bytes]:
    return re.findall(rb"<mechanism>([^<]+)</mechanism>", features)


async def answer(raw: RawClient) -> str:
    """"success" or the <failure/> condition of the SASL exchange under way."""
    data = await raw.sasl_answer()
    if b"<success" in data:
        return "success"
    m = re.search(rb"<failure[^>]*><([a-z-]+)", data)
    assert m, data
    return m.group(1).decode()


async def attempt(srv, mechanism: str, payload: bytes = b"", *, domain: str = GUEST, source: str = "127.0.0.1") -> tuple[RawClient, str]:
    """One SASL attempt on a fresh plaintext stream to ``domain``; the connection stays open."""
    raw = await RawClient.connect(srv, source=source)
    await raw.open_stream(domain)
    raw.buffer = b""
    data = base64.b64encode(payload).decode() or "="
    await raw.send(f"<auth xmlns='{SASL}' mechanism='{mechanism}'>{data}</auth>")
    return raw, await answer(raw)


async def test_anonymous_is_offered_on_its_host_alone_and_nothing_else_is(tmp_path):
    async with running_server(tmp_path, *PLAIN_OPTS, "registration.open=true") as srv:
        await add_user(srv, "bob")
        main = await RawClient.connect(srv)
        features = await main.open_stream("localhost")
        assert "ANONYMOUS" not in [m.decode() for m in mechanisms(features)] and b"SCRAM-SHA-1" in features
        main.close()
        guest = await RawClient.connect(srv)
        features = await guest.open_stream(GUEST)
        assert f"from='{GUEST}'".encode() in features
        assert mechanisms(features) == [b"ANONYMOUS"] and b"jabber:iq:register" not in features  # no in-band registration
        guest.close()

        raw, got = await attempt(srv, "ANONYMOUS", domain="localhost")
        raw.close()
        assert got == "invalid-mechanism"  # never on the main domain
        raw, got = await attempt(srv, "PLAIN", b"\0bob\0correct horse battery")
        raw.close()
        assert got == "invalid-mechanism"  # a real account's password is no use on the guest host
        raw, got = await attempt(srv, "SCRAM-SHA-1", b"n,,n=bob,r=abcdefghijkl")
        raw.close()
        assert got == "invalid-mechanism"
        raw, got = await attempt(srv, "ANONYMOUS", b"visitor from the pricing page")
        assert got == "success"
        raw.buffer = b""
        await raw.open_stream(GUEST)
        await raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        bound = (await raw.read_until(b"</iq>")).decode()
        jid = JID.parse(re.search(r"<jid>([^<]+)</jid>", bound).group(1))
        assert jid.domain == GUEST and re.fullmatch(r"[0-9a-f]{32}", jid.local)
        assert await srv.accounts.get(jid.local, GUEST) is None and await srv.accounts.get(jid.local, srv.domain) is None
        raw.close()


async def test_anonymous_logins_are_limited_per_address_and_overall(tmp_path, caplog):
    caplog.set_level(logging.INFO, "xmppd.core.session")
    limits = ("anonymous.logins_per_ip_per_minute=3", "anonymous.max_sessions_per_ip=2", "anonymous.max_sessions=3")
    async with running_server(tmp_path, *PLAIN_OPTS, *limits) as srv:
        a1, got1 = await attempt(srv, "ANONYMOUS")
        a2, got2 = await attempt(srv, "ANONYMOUS")
        a3, got3 = await attempt(srv, "ANONYMOUS")
        assert (got1, got2, got3) == ("success", "success", "temporary-auth-failure")  # 2 at once per address
        a3.close()
        a1.close()
        await wait_until(lambda: srv.guests.sessions == 1, 5, "the closed guest's slot freed")
        a4, got4 = await attempt(srv, "ANONYMOUS")
        assert got4 == "success"
        a4.close()
        await wait_until(lambda: srv.guests.sessions == 1, 5, "the closed guest's slot freed")
        a5, got5 = await attempt(srv, "ANONYMOUS")
        a5.close()
        assert got5 == "temporary-auth-failure"  # 3 logins from this address this minute
        b1, gotb1 = await attempt(srv, "ANONYMOUS", source="127.0.0.2")
        b2, gotb2 = await attempt(srv, "ANONYMOUS", source="127.0.0.3")
        b3, gotb3 = await attempt(srv, "ANONYMOUS", source="127.0.0.4")
        assert (gotb1, gotb2, gotb3) == ("success", "success", "temporary-auth-failure")  # 3 at once in all
        for raw in (a2, b1, b2, b3):
            raw.close()
        # A password login on the main domain is not touched by the guests' limits.
        await add_user(srv, "bob")
        raw, got = await attempt(srv, "PLAIN", b"\0bob\0correct horse battery", domain="localhost")
        raw.close()
        assert got == "success"
    refusals = [r.getMessage() for r in caplog.records if "anonymous login refused" in r.getMessage()]
    assert any("anonymous.max_sessions_per_ip" in m for m in refusals)
    assert any("anonymous.logins_per_ip_per_minute" in m for m in refusals)
    assert any("anonymous.max_sessions)" in m for m in refusals)


async def test_a_guest_reaches_only_what_it_is_allowed_and_its_address_dies_with_it(tmp_path):
    async with running_server(tmp_path, f"anonymous.domain={GUEST}", "anonymous.allow_to=['carol@localhost']") as srv:
        bob = await slix(srv, await add_user(srv, "bob"))
        carol = await slix(srv, await add_user(srv, "carol"))
        guest = await slix_guest(srv, GUEST)
        other = await slix_guest(srv, GUEST)
        try:
            me = guest.boundjid
            assert me.domain == GUEST and me.bare != other.boundjid.bare
            # The guests' check is set on guest sessions alone; others' stanzas never pass it.
            assert srv.sessions.get(JID.parse(str(me))).inbound is not None
            assert srv.sessions.get(JID.parse(str(bob.boundjid))).inbound is None
            inbox: dict[str, asyncio.Queue] = {}
            for name, c in (("bob", bob), ("carol", carol), ("guest", guest)):
                inbox[name] = asyncio.Queue()
                c.add_event_handler("message", inbox[name].put_nowait)  # errors too
            bob.send_presence()
            carol.send_presence()

            # An ordinary user (or another guest) is out of reach: forbidden.
            guest.send_message(mto="bob@localhost", mbody="hi bob", mtype="chat")
            err = await asyncio.wait_for(inbox["guest"].get(), 5)
            assert err["type"] == "error" and err["error"]["condition"] == "forbidden" and str(err["from"]) == "bob@localhost"
            guest.send_message(mto=str(other.boundjid), mbody="hi", mtype="chat")
            err = await asyncio.wait_for(inbox["guest"].get(), 5)
            assert err["error"]["condition"] == "forbidden"
            # anonymous.allow_to opens one address; the answer reaches the guest.
            guest.send_message(mto="carol@localhost", mbody="hi carol", mtype="chat")
            got = await asyncio.wait_for(inbox["carol"].get(), 5)
            assert got["body"] == "hi carol" and got["from"] == me
            carol.send_message(mto=str(me), mbody="hello guest", mtype="chat")
            got = await asyncio.wait_for(inbox["guest"].get(), 5)
            assert got["body"] == "hello guest"
            assert inbox["bob"].empty()
            # No roster: a subscription request never reaches a guest (what follows it does).
            asked: list = []
            guest.add_event_handler("presence_subscribe", asked.append)
            carol.send_presence(pto=str(me.bare), ptype="subscribe")
            carol.send_message(mto=str(me), mbody="after the request", mtype="chat")
            assert (await asyncio.wait_for(inbox["guest"].get(), 5))["body"] == "after the request"
            assert asked == []

            # The server answers what it tells anyone; nothing is kept in a guest's name.
            info = await guest.make_iq_get(ito="localhost", queryxmlns="http://jabber.org/protocol/disco#info").send(timeout=5)
            assert info.xml[0].find("{http://jabber.org/protocol/disco#info}identity") is not None
            roster = await guest.make_iq_get(queryxmlns="jabber:iq:roster").send(timeout=5)
            assert len(roster.xml[0]) == 0
            with pytest.raises(IqError) as vcard:
                await guest.make_iq_get(queryxmlns="vcard-temp").send(timeout=5)
            assert vcard.value.iq["error"]["condition"] == "service-unavailable"
            with pytest.raises(IqError) as register:
                iq = guest.make_iq_set(ito="localhost")
                iq.append(ET.fromstring("<query xmlns='jabber:iq:register'><remove/></query>"))
                await iq.send(timeout=5)
            assert register.value.iq["error"]["condition"] == "forbidden"

            # Gone is gone: no offline storage for a guest's address.
            guest.disconnect()
            await wait_until(lambda: srv.guests.sessions == 1, 5, "the guest's session ended")
            carol.send_message(mto=str(me.bare), mbody="still there?", mtype="chat")
            bounced = await asyncio.wait_for(inbox["carol"].get(), 5)
            assert bounced["type"] == "error" and bounced["error"]["condition"] == "service-unavailable"
        finally:
            for c in (bob, carol, other):
                await slix_close(c)

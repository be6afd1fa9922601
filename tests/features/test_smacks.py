"""XEP-0198 stream management over real sockets: acks both ways, hibernation, resumption with
every stanza delivered exactly once, expiry to offline storage, failures."""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from xmppd.jid import JID

from ..helpers import add_user, running_server, slix, slix_close
from .smacks_support import SM, SmClient

pytestmark = pytest.mark.interop

C = "{jabber:client}"


@pytest.fixture
async def sm_server(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", "smacks.resume_timeout=30", "smacks.request_every=0") as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        yield srv


def _bodies(elements) -> list[str]:
    return [e.findtext(f"{C}body") for e in elements if e.tag == f"{C}message" and e.findtext(f"{C}body")]


async def _until(pred, timeout: float = 5) -> None:
    async def go() -> None:
        while not pred():  # noqa: ASYNC110 - polling server state the test cannot subscribe to
            await asyncio.sleep(0.01)
    await asyncio.wait_for(go(), timeout)


async def test_acks_both_ways_count_handled_stanzas(sm_server):
    bob = await SmClient.login(sm_server, "bob")
    alice = await slix(sm_server, "alice@localhost")
    try:
        bob.send_stanza("<presence/>")
        bob.send_stanza("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        bob.write(f"<r xmlns='{SM}'/>")
        a = await bob.expect(lambda e: e.tag == f"{{{SM}}}a")
        assert a.get("h") == "2"
        for i in range(3):
            alice.send_message(mto="bob@localhost/phone", mbody=f"m{i}", mtype="chat")
        got = await bob.messages(3)
        assert _bodies(got) == ["m0", "m1", "m2"]
        session = sm_server.sessions.get(JID.parse("bob@localhost/phone"))
        assert session is not None
        # Bob's own presence, the ping result and the three messages wait for an acknowledgement.
        await _until(lambda: len(session.observer.counters.unacked) == 5)
        assert bob.received == 5
        bob.ack()
        await _until(lambda: len(session.observer.counters.unacked) == 0)
    finally:
        await slix_close(alice)
        await bob.close()


async def test_server_requests_acks(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", "smacks.request_every=2") as srv:
        await add_user(srv, "bob")
        bob = await SmClient.login(srv, "bob")
        try:
            bob.send_stanza("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
            bob.send_stanza("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
            r = await bob.expect(lambda e: e.tag == f"{{{SM}}}r")
            assert r is not None and bob.received == 2  # the two ping results
        finally:
            await bob.close()


async def test_enable_before_bind_and_twice_fail(sm_server):
    c = await SmClient.authenticate(sm_server, "bob")
    try:
        failed = await c.enable()
        assert failed.tag == f"{{{SM}}}failed" and failed.find("{urn:ietf:params:xml:ns:xmpp-stanzas}unexpected-request") is not None
        await c.bind("x")
        assert (await c.enable()).tag == f"{{{SM}}}enabled"
        again = await c.enable()
        assert again.tag == f"{{{SM}}}failed"
    finally:
        await c.close()


async def test_cut_hibernate_resume_delivers_every_message_exactly_once(sm_server):
    """3 messages before the cut (1 acknowledged), 5 while hibernating: each arrives once."""
    alice = await slix(sm_server, "alice@localhost")
    bob = await SmClient.login(sm_server, "bob")
    seen: list[str] = []
    try:
        bob.send_stanza("<presence/>")
        await bob.expect(lambda e: e.tag == f"{C}presence")  # his own, reflected
        for i in range(3):
            alice.send_message(mto="bob@localhost/phone", mbody=f"before{i}", mtype="chat")
        got = await bob.messages(3)
        seen += _bodies(got)
        # bob acknowledges his presence and the first message only, then his network goes away
        bob.write(f"<a xmlns='{SM}' h='2'/>")
        h_at_cut = bob.received  # what bob really handled: 4
        assert h_at_cut == 4
        session = sm_server.sessions.get(JID.parse("bob@localhost/phone"))
        await _until(lambda: len(session.observer.counters.unacked) == 2)
        live_before = len(sm_server.live)
        bob.cut()
        await _until(lambda: session.hibernating)
        # still bound, still available, still in the registry; the connection slot is free
        assert sm_server.sessions.get(JID.parse("bob@localhost/phone")) is session
        assert session.available
        assert sm_server.connections._open.get("127.0.0.1", 0) == 1  # alice only
        assert len(sm_server.live) == live_before
        for i in range(5):
            alice.send_message(mto="bob@localhost/phone", mbody=f"during{i}", mtype="chat")
        for i in range(2):
            alice.send_message(mto="bob@localhost", mbody=f"bare{i}", mtype="chat")
        await _until(lambda: len(session.observer.counters.unacked) == 9)

        bob2 = await SmClient.authenticate(sm_server, "bob")
        resumed = await bob2.resume(bob.resume_id, h_at_cut)
        assert resumed.tag == f"{{{SM}}}resumed", resumed
        assert resumed.get("previd") == bob.resume_id
        assert resumed.get("h") == "1"  # bob's presence
        got = await bob2.messages(7)
        seen += _bodies(got)
        seen += _bodies(await bob2.drain(0.3))
        counts = Counter(seen)
        expected = [f"before{i}" for i in range(3)] + [f"during{i}" for i in range(5)] + [f"bare{i}" for i in range(2)]
        assert sorted(counts) == sorted(expected)
        assert all(n == 1 for n in counts.values()), counts
        # the resumed stream is the same session identity, in the registry once
        new = sm_server.sessions.get(JID.parse("bob@localhost/phone"))
        assert new is not session and new.jid == session.jid and new.available
        assert len(sm_server.sessions.of(JID.parse("bob@localhost"))) == 1
        assert session.is_closed and not new.hibernating
        # it keeps working: a new message and acks continue the count
        alice.send_message(mto="bob@localhost/phone", mbody="after", mtype="chat")
        assert _bodies(await bob2.messages(1)) == ["after"]
        bob2.write(f"<a xmlns='{SM}' h='{h_at_cut + bob2.received}'/>")
        await _until(lambda: len(new.observer.counters.unacked) == 0)
        # a second resume of the same id (the session is connected now) and an unknown id fail
        for previd in (bob.resume_id, "nope"):
            third = await SmClient.authenticate(sm_server, "bob")
            failed = await third.resume(previd, 0)
            assert failed.tag == f"{{{SM}}}failed"
            assert failed.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
            # ... and the stream goes on: it can bind normally
            assert (await third.bind("other")).endswith("/other")
            await third.close()
        await bob2.close()
        await _until(lambda: not sm_server.sessions.of(JID.parse("bob@localhost")))
        assert sm_server.connections._open.get("127.0.0.1", 0) == 1
    finally:
        await slix_close(alice)


async def test_resume_of_another_accounts_session_fails(sm_server):
    bob = await SmClient.login(sm_server, "bob")
    bob.cut()
    session = sm_server.sessions.get(JID.parse("bob@localhost/phone"))
    await _until(lambda: session.hibernating)
    mallory = await SmClient.authenticate(sm_server, "alice")
    failed = await mallory.resume(bob.resume_id, 0)
    assert failed.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
    assert session.hibernating
    await mallory.close()


async def test_hibernation_hides_unavailable_until_expiry_then_offline(tmp_path, storage_overrides):
    async with running_server(tmp_path, "c2s.require_tls=false", "smacks.resume_timeout=1", "smacks.request_every=0", *storage_overrides) as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        alice = await slix(srv, "alice@localhost", plugins=("xep_0030",))
        bob = await SmClient.login(srv, "bob")
        seen_presence: asyncio.Queue = asyncio.Queue()
        seen_available: asyncio.Queue = asyncio.Queue()
        alice.add_event_handler("presence_unavailable", lambda p: seen_presence.put_nowait(p))
        alice.add_event_handler("presence_available", lambda p: seen_available.put_nowait(p))
        alice.send_presence()
        # Directed presence to a bare JID reaches the resources available when it is routed: wait
        # for alice's (her initial presence and bob's directed one race otherwise).
        await _until(lambda: any(s.available for s in srv.sessions.of(JID.parse("alice@localhost"))))
        try:
            bob.send_stanza("<presence/>")
            bob.send_stanza("<presence to='alice@localhost'/>")  # directed: alice sees bob's presence
            session = srv.sessions.get(JID.parse("bob@localhost/phone"))
            await _until(lambda: session.available)
            while (await asyncio.wait_for(seen_available.get(), 5))["from"].full != "bob@localhost/phone":
                pass  # alice sees bob
            alice.send_message(mto="bob@localhost/phone", mbody="unacked", mtype="chat")
            assert _bodies(await bob.messages(1)) == ["unacked"]
            bob.cut()
            await _until(lambda: session.hibernating)
            await asyncio.sleep(0.3)
            assert seen_presence.empty()  # hibernating: nobody is told bob left
            alice.send_message(mto="bob@localhost/phone", mbody="queued", mtype="chat")
            await _until(lambda: len(session.observer.counters.unacked) == 2)
            await asyncio.wait_for(session.closed_event.wait(), 5)
            assert srv.sessions.get(JID.parse("bob@localhost/phone")) is None
            gone = await asyncio.wait_for(seen_presence.get(), 5)  # now the cleanup ran
            assert gone["from"].full == "bob@localhost/phone"
            # both went to offline storage, once; bob gets them at his next login
            stored = await srv.features["offline"].repo.fetch("bob", "localhost")
            assert [m.stanza.count("unacked") + m.stanza.count("queued") for m in stored] == [1, 1]
            bob_again = await SmClient.login(srv, "bob", resource="again", enable=False)
            bob_again.write("<presence/>")
            got = [m for m in await bob_again.drain(0.5) if m.tag == f"{C}message"]
            assert _bodies(got) == ["unacked", "queued"]
            assert all(m.find("{urn:xmpp:delay}delay").get("stamp") for m in got)
            # the archive has each once too (re-routing does not archive again)
            bob_again.send_stanza("<iq type='set' id='mam'><query xmlns='urn:xmpp:mam:2' queryid='x'/></iq>")
            await bob_again.expect(lambda e: e.get("id") == "mam")
            results = [e for e in bob_again.skipped if e.find("{urn:xmpp:mam:2}result") is not None]
            archived = [r.findtext(".//{jabber:client}body") for r in results]
            assert archived == ["unacked", "queued"]
            # an expired id cannot be resumed
            late = await SmClient.authenticate(srv, "bob")
            failed = await late.resume(bob.resume_id, 1)
            assert failed.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
            await late.close()
            await bob_again.close()
        finally:
            await slix_close(alice)


async def test_unacked_messages_go_to_another_resource_once(sm_server):
    """Expiry re-routes to the bare JID: the other available resource gets them, once."""
    bob = await SmClient.login(sm_server, "bob", resource="phone")
    laptop = await SmClient.login(sm_server, "bob", resource="laptop", enable=False)
    alice = await slix(sm_server, "alice@localhost")
    try:
        bob.send_stanza("<presence/>")
        laptop.write("<presence/>")
        phone = sm_server.sessions.get(JID.parse("bob@localhost/phone"))
        await _until(lambda: phone.available)
        alice.send_message(mto="bob@localhost/phone", mbody="for the phone", mtype="chat")
        assert _bodies(await bob.messages(1)) == ["for the phone"]
        await bob.close()  # a clean close without acknowledging
        got = await laptop.expect(lambda e: e.findtext(f"{C}body") == "for the phone")
        assert got.find("{urn:xmpp:delay}delay") is not None
        assert _bodies(await laptop.drain(0.3)) == []
    finally:
        await slix_close(alice)
        await laptop.close()


async def test_server_shutdown_ends_hibernating_sessions(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false") as srv:
        await add_user(srv, "bob")
        bob = await SmClient.login(srv, "bob")
        session = srv.sessions.get(JID.parse("bob@localhost/phone"))
        bob.cut()
        await _until(lambda: session.hibernating)
    assert session.is_closed and session.closed_event.is_set()


async def test_slixmpp_resumes_after_its_socket_is_cut(tmp_path):
    """slixmpp's own XEP-0198 (server-requested acks every stanza): 50 before, 50 while cut."""
    async with running_server(tmp_path, "smacks.request_every=1") as srv:
        await add_user(srv, "alice")
        await add_user(srv, "bob")
        alice = await slix(srv, "alice@localhost")
        bob = await slix(srv, "bob@localhost/phone", plugins=("xep_0198",))
        bodies: list[str] = []
        bob.add_event_handler("message", lambda m: bodies.append(m["body"]))
        resumed = asyncio.Event()
        gone = asyncio.Event()
        bob.add_event_handler("session_resumed", lambda e: resumed.set())
        bob.add_event_handler("disconnected", lambda e: gone.set())
        try:
            await _until(lambda: bob.plugin["xep_0198"].sm_id is not None)
            for i in range(50):
                alice.send_message(mto="bob@localhost/phone", mbody=f"b{i}", mtype="chat")
            await _until(lambda: len(bodies) == 50)
            session = srv.sessions.get(JID.parse("bob@localhost/phone"))
            bob.transport.abort()
            await asyncio.wait_for(gone.wait(), 5)
            await _until(lambda: session.hibernating)
            for i in range(50):
                alice.send_message(mto="bob@localhost/phone", mbody=f"d{i}", mtype="chat")
            await _until(lambda: len(session.observer.counters.unacked) >= 50)
            bob.connect("127.0.0.1", srv.ports["c2s"])
            await asyncio.wait_for(resumed.wait(), 5)
            await _until(lambda: len(bodies) >= 100)
            await asyncio.sleep(0.3)
            assert Counter(bodies) == Counter([f"b{i}" for i in range(50)] + [f"d{i}" for i in range(50)])
            assert len(bodies) == 100
            new = srv.sessions.get(JID.parse("bob@localhost/phone"))
            await _until(lambda: len(new.observer.counters.unacked) == 0)  # slixmpp acked them all
        finally:
            await slix_close(alice)
            await slix_close(bob)


async def test_error_replies_of_the_stream_core_are_counted(sm_server):
    """A stanza the core rejects (bad 'to') is handled, and its error reply is a stanza too."""
    bob = await SmClient.login(sm_server, "bob")
    try:
        bob.send_stanza("<message to='a@b@c' id='bad'><body>x</body></message>")
        err = await bob.expect(lambda e: e.get("id") == "bad")
        assert err.get("type") == "error"
        bob.write(f"<r xmlns='{SM}'/>")
        a = await bob.expect(lambda e: e.tag == f"{{{SM}}}a")
        assert a.get("h") == "1"
        session = sm_server.sessions.get(JID.parse("bob@localhost/phone"))
        await _until(lambda: len(session.observer.counters.unacked) == 1)
        bob.ack()  # h=1: the error reply; a mismatch would be handled-count-too-high
        await _until(lambda: len(session.observer.counters.unacked) == 0)
        assert not session.is_closed
    finally:
        await bob.close()

"""Inbound shaping and stalled clients over real sockets (issue 15 item 8, docs/security.md
"Traffic"): a flood of stanzas or bytes is slowed to the configured rate, a sustained one is cut
with policy-violation (TCP and WebSocket), a normal client is not touched, a client that floods
pings without reading is cut at the write-buffer limit, and one that stops half-way through a
stanza is dropped after ``c2s.stanza_timeout``.

The rate tests assert upper bounds only: "no more than burst + rate x elapsed had arrived by
then", which a slow machine can only make easier to meet.
"""
from __future__ import annotations

import asyncio
import re
import time

import pytest

from xmppd.jid import JID

from ..helpers import add_user, running_server, slix, slix_close
from .test_websocket import Ws, stream_error, ws_server
from .test_write_buffer import _OPEN, LIMIT, UNSHAPED, Client, login

pytestmark = pytest.mark.interop

PLAIN = "c2s.require_tls=false"


async def _arrivals(c: Client, n: int, timeout: float = 30) -> list[tuple[float, bytes]]:
    """The next ``n`` messages ``c`` receives, each with the time it was read."""
    out = []
    for _ in range(n):
        chunk = await c.until(b"</message>", timeout)
        out.append((time.monotonic(), chunk))
    return out


def _bodies(arrivals: list[tuple[float, bytes]]) -> list[str]:
    return [re.search(rb"<body>([^<]*)</body>", chunk).group(1).decode() for _, chunk in arrivals]  # type: ignore[union-attr]


async def _session_gone(server, jid: str) -> bool:
    for _ in range(250):
        if server.sessions.get(JID.parse(jid)) is None:
            return True
        await asyncio.sleep(0.02)
    return False


# ------------------------------------------------------------------------------ stanza rate


async def test_a_message_flood_is_slowed_to_the_stanza_rate(tmp_path):
    rate, burst, n = 10, 20, 60
    async with running_server(tmp_path, PLAIN, f"c2s.rate_stanzas={rate}", f"c2s.burst_stanzas={burst}") as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        port = server.ports["c2s"]
        alice, _ = await login(port, "alice")
        bob, bob_jid = await login(port, "bob")
        start = time.monotonic()
        alice.writer.write("".join(f"<message to='{bob_jid}' type='chat'><body>{i}</body></message>" for i in range(n)).encode())
        await alice.writer.drain()
        got = await _arrivals(bob, n)
        # Every message arrives, in order, but never faster than the bucket lets them through
        # (alice's bind iq took one token before the flood).
        assert _bodies(got) == [str(i) for i in range(n)]
        for i, (when, _) in enumerate(got, 1):
            assert i <= burst + rate * (when - start), f"{i} messages processed within {when - start:.2f} s"
        # Slowed, not cut: alice is still served.
        await alice.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert b"p1" in await alice.until(b"p1", 30)
        alice.writer.close()
        bob.writer.close()


async def test_a_session_the_server_closes_is_not_held_back_by_its_stanza_rate(tmp_path):
    # 1 a second and a grace long enough never to cut: 40 messages would take 40 s.
    async with running_server(tmp_path, PLAIN, "c2s.rate_stanzas=1", "c2s.burst_stanzas=1", "c2s.flood_grace=1000") as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        port = server.ports["c2s"]
        bob, bob_jid = await login(port, "bob")
        phone, phone_jid = await login(port, "alice", resource="phone")
        phone.writer.write("".join(f"<message to='{bob_jid}' type='chat'><body>{i}</body></message>" for i in range(40)).encode())
        await phone.writer.drain()
        await bob.until(b"</message>", 30)  # the backlog is being worked through, slowly
        old = server.sessions.get(JID.parse(phone_jid))
        assert old is not None
        # RFC 6120 §7.7.2.2: a new session for the same resource replaces it; the old one ends
        # (what it sent is still delivered) before the new one is bound, not 40 s later.
        again, again_jid = await login(port, "alice", resource="phone")
        assert again_jid == phone_jid
        assert old.is_closed
        assert b"<conflict" in await phone.until(b"</stream:stream>", 30)
        got = 1
        while got < 40:
            await bob.until(b"</message>", 30)
            got += 1
        for c in (bob, again):
            c.writer.close()


async def test_a_sustained_stanza_flood_is_cut_with_policy_violation(tmp_path):
    rate, burst = 2, 4  # cut once more than burst + 30 s x rate = 64 elements wait
    async with running_server(tmp_path, PLAIN, f"c2s.rate_stanzas={rate}", f"c2s.burst_stanzas={burst}") as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        port = server.ports["c2s"]
        alice, alice_jid = await login(port, "alice")
        bob, bob_jid = await login(port, "bob")
        alice.writer.write("".join(f"<message to='{bob_jid}' type='chat'><body>{i}</body></message>" for i in range(1000)).encode())
        await alice.writer.drain()
        error = await alice.until(b"</stream:stream>", 30)
        assert b"<policy-violation" in error and b"too many stanzas: the limit is 2 a second" in error
        assert await _session_gone(server, alice_jid)
        # The flood was dropped, not queued: bob got at most what the burst allowed at once.
        await bob.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        seen = await bob.until(b"p1", 30)
        assert seen.count(b"<message") <= burst
        bob.writer.close()


async def test_a_sustained_stanza_flood_over_websocket_is_cut_with_close_1008(tmp_path):
    # One stanza a message: the backlog stays under 64 + 20 x 4 (reading pauses at 64), so what
    # ends it is being slowed down without a break for longer than c2s.flood_grace.
    async with ws_server(tmp_path, PLAIN, "c2s.rate_stanzas=20", "c2s.burst_stanzas=4", "c2s.flood_grace=4") as server:
        await add_user(server, "alice")
        ws = await Ws.connect(server)
        try:
            await ws.login(f"alice@{server.domain}")
            for i in range(400):  # pings: cheap to answer, so the server is never the slow one
                await ws.send(f"<iq xmlns='jabber:client' type='get' id='p{i}'><ping xmlns='urn:xmpp:ping'/></iq>")
            texts, code = await ws.until_closed(30)
            assert stream_error(texts) == "policy-violation"
            assert code == 1008
        finally:
            await ws.close()


async def test_a_flood_before_login_is_slowed_to_the_stricter_preauth_rate(tmp_path):
    n = 60
    async with running_server(tmp_path, PLAIN) as server:
        cfg = server.config.c2s
        rate, burst = cfg.preauth_rate_stanzas, cfg.preauth_burst_stanzas  # the defaults: 5/s, 30
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["c2s"])
        c = Client(reader, writer)
        await c.send(_OPEN)
        await c.until(b"</stream:features>")
        start = time.monotonic()
        # In-band registration forms (XEP-0077): the one kind of iq allowed before login.
        await c.send("".join(f"<iq type='get' id='q{i}'><query xmlns='jabber:iq:register'/></iq>" for i in range(n)))
        for i in range(1, n + 1):
            answer = await c.until(b"</iq>", 30)
            assert f"id='q{i - 1}'".encode() in answer.replace(b'"', b"'")
            elapsed = time.monotonic() - start
            assert i <= burst + rate * elapsed, f"{i} elements answered within {elapsed:.2f} s before login"
        writer.close()


# ------------------------------------------------------------------------------ bandwidth


async def test_a_byte_flood_is_slowed_to_the_byte_rate(tmp_path):
    rate, burst, n = 4096, 8192, 24
    async with running_server(tmp_path, PLAIN, f"c2s.rate_bytes={rate}", f"c2s.burst_bytes={burst}") as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        port = server.ports["c2s"]
        alice, _ = await login(port, "alice")
        bob, bob_jid = await login(port, "bob")
        stanzas = [f"<message to='{bob_jid}' type='chat'><body>{i:04d}{'x' * 996}</body></message>".encode() for i in range(n)]
        size = len(stanzas[0])
        start = time.monotonic()
        alice.writer.write(b"".join(stanzas))
        await alice.writer.drain()
        got = await _arrivals(bob, n)
        assert [b[:4] for b in _bodies(got)] == [f"{i:04d}" for i in range(n)]
        for i, (when, _) in enumerate(got, 1):
            assert i * size <= burst + rate * (when - start), f"{i * size} bytes processed within {when - start:.2f} s"
        alice.writer.close()
        bob.writer.close()


async def test_a_byte_flood_over_websocket_is_slowed_to_the_byte_rate(tmp_path):
    rate, burst, n = 4096, 8192, 24
    async with ws_server(tmp_path, PLAIN, f"c2s.rate_bytes={rate}", f"c2s.burst_bytes={burst}") as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        bob, bob_jid = await login(server.ports["c2s"], "bob")
        ws = await Ws.connect(server)
        try:
            await ws.login(f"alice@{server.domain}")
            stanzas = [f"<message xmlns='jabber:client' to='{bob_jid}' type='chat'><body>{i:04d}{'x' * 996}</body></message>" for i in range(n)]
            size = len(stanzas[0])
            start = time.monotonic()
            for s in stanzas:
                await ws.send(s)
            got = await _arrivals(bob, n)
            assert [b[:4] for b in _bodies(got)] == [f"{i:04d}" for i in range(n)]
            # A WebSocket message is taken whole: the debt it leaves pauses the next one.
            for i, (when, _) in enumerate(got, 1):
                assert (i - 1) * size <= burst + rate * (when - start), f"{i * size} bytes processed within {when - start:.2f} s"
        finally:
            await ws.close()
            bob.writer.close()


# ------------------------------------------------------------------------------ normal use


async def test_a_normal_client_is_not_touched_by_the_default_limits(tmp_path):
    async with running_server(tmp_path) as server:
        alice = await slix(server, await add_user(server, "alice"))
        bob = await slix(server, await add_user(server, "bob"))
        inbox: asyncio.Queue = asyncio.Queue()
        bob.add_event_handler("message", lambda m: inbox.put_nowait(m["body"]))
        closed: list[str] = []
        alice.add_event_handler("stream_error", lambda e: closed.append(str(e)))
        try:
            # A burst bigger than people type: a hundred messages and a 100 kB one at once.
            for i in range(100):
                alice.send_message(mto=bob.boundjid, mbody=f"m{i}", mtype="chat")
            alice.send_message(mto=bob.boundjid, mbody="y" * 100_000, mtype="chat")
            got = [await asyncio.wait_for(inbox.get(), 10) for _ in range(101)]
            assert got == [f"m{i}" for i in range(100)] + ["y" * 100_000]
            assert not closed
        finally:
            await slix_close(alice)
            await slix_close(bob)


# ------------------------------------------------------------------------------ not reading


async def test_a_ping_flood_without_reading_is_cut_at_the_write_buffer_limit(tmp_path):
    # Unshaped, so that the pings come as fast as the client can send them.
    async with running_server(tmp_path, PLAIN, f"c2s.write_buffer_limit={LIMIT}", *UNSHAPED) as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        port = server.ports["c2s"]
        alice, alice_jid = await login(port, "alice", rcvbuf=4096)  # and never reads again
        bob, _ = await login(port, "bob")
        session = server.sessions.get(JID.parse(alice_jid))
        assert session is not None
        transport = session.transport.transport  # the server's end of alice's connection
        pings = "".join(f"<iq type='get' id='p{i}'><ping xmlns='urn:xmpp:ping'/></iq>" for i in range(500)).encode()
        most = 0
        with pytest.raises((ConnectionError, OSError)):
            for _ in range(2000):  # up to 1M pings: far more answers than the kernel holds
                alice.writer.write(pings)
                await asyncio.wait_for(alice.writer.drain(), 10)
                most = max(most, transport.get_write_buffer_size())
                if transport.is_closing():
                    raise ConnectionResetError("cut")
        # What the server held for alice never passed the limit by more than one turn's answers.
        assert most <= LIMIT + len(pings) * 2
        assert await _session_gone(server, alice_jid)
        # The server still serves others.
        await bob.send("<iq type='get' id='b1'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert b"b1" in await bob.until(b"b1")
        bob.writer.close()


# ------------------------------------------------------------------------------ half a stanza


@pytest.mark.parametrize(
    "half",
    ["<message to='bob@localhost' type='chat'><body>half a mess", "<message to='bob@localhost' ty"],
    ids=["inside-the-stanza", "inside-the-start-tag"],
)
async def test_a_stanza_left_half_way_is_dropped_after_the_deadline(tmp_path, half):
    async with running_server(tmp_path, PLAIN, "c2s.stanza_timeout=1") as server:
        await add_user(server, "alice")
        alice, alice_jid = await login(server.ports["c2s"], "alice")
        await alice.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>" + half)
        error = await alice.until(b"</stream:stream>", 15)
        assert b"<connection-timeout" in error and b"not completed within 1 seconds" in error
        assert await _session_gone(server, alice_jid)


async def test_an_idle_client_between_stanzas_is_not_dropped_by_the_stanza_deadline(tmp_path):
    async with running_server(tmp_path, PLAIN, "c2s.stanza_timeout=0.5") as server:
        await add_user(server, "alice")
        alice, alice_jid = await login(server.ports["c2s"], "alice")
        # Whitespace keep-alives and complete stanzas, then silence longer than the deadline.
        await alice.send("<presence/> \n ")
        await asyncio.sleep(1.5)
        await alice.send(" <iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert b"p2" in await alice.until(b"p2")
        assert server.sessions.get(JID.parse(alice_jid)) is not None
        alice.writer.close()

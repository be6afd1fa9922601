"""XEP-0045 at size: 200 lightweight raw clients in one room, one message fanned out to all of them."""
from __future__ import annotations

import asyncio
import base64

import pytest

from ..helpers import PASSWORD, RawClient, running_server

pytestmark = pytest.mark.interop
N = 200
ROOM = "big@conference.localhost"


async def _login(srv, name: str) -> RawClient:
    c = await RawClient.connect(srv)
    await c.open_stream()
    token = base64.b64encode(f"\0{name}\0{PASSWORD}".encode()).decode()
    await c.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    await c.read_until(b"<success")
    c.buffer = b""
    await c.open_stream()
    await c.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
    await c.read_until(b"</iq>")
    c.buffer = b""
    return c


async def test_two_hundred_occupants_get_every_message(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", "muc.lock_new_rooms=false", "c2s.max_connections_per_ip=1000") as srv:
        await asyncio.gather(*(srv.account_service.create(f"u{i}", PASSWORD) for i in range(N)))
        clients = await asyncio.gather(*(_login(srv, f"u{i}") for i in range(N)))
        try:
            for i, c in enumerate(clients):
                await c.send(f"<presence to='{ROOM}/n{i}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>")
                await c.read_until(b'code="110"', timeout=10)
            room = srv.features["muc"].get_room(ROOM)
            assert len(room.occupants) == N
            # everybody saw everybody arrive: the first client got N-1 presences of others
            await clients[0].read_until(f"from=\"{ROOM}/n{N - 1}\"".encode(), timeout=10)
            for c in clients:
                c.buffer = b""
            await clients[7].send(f"<message to='{ROOM}' type='groupchat' id='big1'><body>hello two hundred</body></message>")
            got = await asyncio.gather(*(c.read_until(b"hello two hundred</body>", timeout=10) for c in clients))
            for i, data in enumerate(got):
                assert f'to="u{i}@localhost/r"'.encode() in data
                assert f'from="{ROOM}/n7"'.encode() in data
        finally:
            for c in clients:
                c.close()

"""SCRAM-*-PLUS with tls-server-end-point over real TLS sockets, on STARTTLS and direct TLS.

slixmpp and aioxmpp only know tls-unique (unavailable on TLS 1.3), so the client here is
scramp's independent SCRAM client computing the binding from the certificate it received.
"""
from __future__ import annotations

import asyncio
import base64
import re

import pytest
from scramp import ScramClient

from xmppd.transport.tls import tls_server_end_point

from ..helpers import PASSWORD, add_user, client_ssl_context

pytestmark = pytest.mark.interop
HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


async def _read_until(reader: asyncio.StreamReader, needle: bytes, buf: bytearray) -> bytes:
    while needle not in buf:
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        if not chunk:
            raise EOFError(bytes(buf))
        buf += chunk
    data = bytes(buf)
    buf.clear()
    return data


async def _connect(server, mode: str):
    ctx = client_ssl_context(server)
    if mode == "direct":
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["c2s_tls"], ssl=ctx, server_hostname="localhost")
        return reader, writer, bytearray()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["c2s"])
    buf = bytearray()
    writer.write(HEADER.encode())
    await _read_until(reader, b"</stream:features>", buf)
    writer.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await _read_until(reader, b"<proceed", buf)
    await writer.start_tls(ctx, server_hostname="localhost")
    return reader, writer, buf


async def _login(server, mode: str, mech: str, cb_override: bytes | None = None) -> bytes:
    reader, writer, buf = await _connect(server, mode)
    try:
        writer.write(HEADER.encode())
        features = await _read_until(reader, b"</stream:features>", buf)
        assert f"<mechanism>{mech}</mechanism>".encode() in features
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        cb = ("tls-server-end-point", cb_override or tls_server_end_point(der))
        client = ScramClient([mech], "alice", PASSWORD, channel_binding=cb)
        first = base64.b64encode(client.get_client_first().encode()).decode()
        writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{first}</auth>".encode())
        challenge = await _read_until(reader, b"</challenge>", buf)
        client.set_server_first(base64.b64decode(re.search(rb">([^<]+)</challenge>", challenge).group(1)).decode())
        final = base64.b64encode(client.get_client_final().encode()).decode()
        writer.write(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{final}</response>".encode())
        answer = await asyncio.wait_for(reader.read(65536), 5)
        if b"<success" in answer:
            client.set_server_final(base64.b64decode(re.search(rb">([^<]+)</success>", answer).group(1)).decode())
        return answer
    finally:
        writer.close()


@pytest.mark.parametrize("mode", ["starttls", "direct"])
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
async def test_plus_login_with_tls_server_end_point(server, mode, mech):
    await add_user(server, "alice")
    answer = await _login(server, mode, mech)
    assert b"<success" in answer  # and the server signature verified by scramp


async def test_plus_with_wrong_binding_data_is_refused(server):
    await add_user(server, "alice")
    answer = await _login(server, "direct", "SCRAM-SHA-256-PLUS", cb_override=b"\0" * 32)
    assert b"not-authorized" in answer

"""aioxmpp as an independent test client (installed with --no-deps: see requirements/aioxmpp.txt).

aioxmpp's certificate checks need PyOpenSSL contexts and DANE/PKIX configuration; the tests
talk to a self-signed loopback server, so it runs with ``no_verify=True`` (slixmpp and the
raw TLS tests verify the certificate against the generated CA file instead).
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aioxmpp
import aioxmpp.connector

from xmppd.app import Server

from .helpers import PASSWORD


@contextlib.asynccontextmanager
async def aioxmpp_client(server: Server, jid: str, password: str = PASSWORD, *, direct: bool = False) -> AsyncIterator[Any]:
    """A connected aioxmpp PresenceManagedClient (available presence sent)."""
    port = server.ports["c2s_tls" if direct else "c2s"]
    connector = aioxmpp.connector.XMPPOverTLSConnector() if direct else aioxmpp.connector.STARTTLSConnector()
    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(jid),
        aioxmpp.make_security_layer(password, no_verify=True),
        override_peer=[("127.0.0.1", port, connector)],
    )
    async with client.connected():
        yield client

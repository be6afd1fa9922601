"""XEP-0215 External Service Discovery over the wire: the STUN/TURN list, a type filter, fresh
TURN credentials that a TURN server using the REST convention (coturn's use-auth-secret) would
accept, and the errors XEP-0215 names."""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
from slixmpp import ET
from slixmpp.exceptions import IqError

from ..helpers import add_user, running_server, slix, slix_close

NS = "urn:xmpp:extdisco:2"
SERVICES = (
    'extdisco.services=[{type="stun", host="stun.example.net", port=3478, transport="udp"},'
    ' {type="turn", host="turn.example.net", port=3478, transport="udp", name="Relay", secret="s3cret", ttl=600},'
    ' {type="turns", host="turn.example.net", port=5349, transport="tcp", secret="s3cret", ttl=600}]'
)


@pytest.fixture
async def server(tmp_path):
    async with running_server(tmp_path, SERVICES) as srv:
        yield srv


async def _get(client, inner: str):
    iq = client.make_iq_get(ito=client.boundjid.domain)
    iq.append(ET.fromstring(inner))
    return await iq.send(timeout=5)


def _turn_server_accepts(secret: str, username: str, password: str) -> bool:
    """What coturn does with use-auth-secret: recompute the HMAC, check the time in the name."""
    expected = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return hmac.compare_digest(expected, password) and int(username.split(":", 1)[0]) > time.time()


async def test_services_list_filter_and_credentials(server):
    alice = await slix(server, await add_user(server, "alice"), plugins=("xep_0030",))
    try:
        info = await alice.plugin["xep_0030"].get_info(jid=server.domain, cached=False)
        assert NS in info["disco_info"]["features"]

        got = (await _get(alice, f"<services xmlns='{NS}'/>")).xml.find(f"{{{NS}}}services")
        services = got.findall(f"{{{NS}}}service")
        assert [(s.get("type"), s.get("host"), s.get("port"), s.get("transport")) for s in services] == [
            ("stun", "stun.example.net", "3478", "udp"),
            ("turn", "turn.example.net", "3478", "udp"),
            ("turns", "turn.example.net", "5349", "tcp"),
        ]
        stun, turn, _ = services
        assert stun.get("username") is None and stun.get("password") is None  # no secret: open
        assert turn.get("name") == "Relay" and turn.get("restricted") == "1"
        assert turn.get("username").endswith(":alice")
        assert _turn_server_accepts("s3cret", turn.get("username"), turn.get("password"))
        expires = datetime.strptime(turn.get("expires"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        assert 500 < expires - time.time() <= 601
        assert int(turn.get("username").split(":")[0]) == int(expires)
        assert "s3cret" not in ET.tostring(got).decode()  # the secret never leaves the server

        only_turn = (await _get(alice, f"<services xmlns='{NS}' type='turn'/>")).xml.find(f"{{{NS}}}services")
        assert only_turn.get("type") == "turn"
        assert [s.get("type") for s in only_turn] == ["turn"]
        none = (await _get(alice, f"<services xmlns='{NS}' type='ftp'/>")).xml.find(f"{{{NS}}}services")
        assert len(none) == 0

        creds = await _get(alice, f"<credentials xmlns='{NS}'><service host='turn.example.net' type='turns'/></credentials>")
        (svc,) = creds.xml.find(f"{{{NS}}}credentials")
        assert svc.get("port") == "5349" and _turn_server_accepts("s3cret", svc.get("username"), svc.get("password"))
    finally:
        await slix_close(alice)


@pytest.mark.parametrize("inner,condition", [
    (f"<credentials xmlns='{NS}'/>", "bad-request"),
    (f"<credentials xmlns='{NS}'><service host='nowhere.example'/></credentials>", "item-not-found"),
    (f"<credentials xmlns='{NS}'><service host='turn.example.net' type='stun'/></credentials>", "item-not-found"),
    (f"<credentials xmlns='{NS}'><service host='stun.example.net'/></credentials>", "item-not-found"),
])
async def test_credential_errors(server, inner, condition):
    alice = await slix(server, await add_user(server, "alice"))
    try:
        with pytest.raises(IqError) as err:
            await _get(alice, inner)
        assert err.value.iq["error"]["condition"] == condition
        assert err.value.iq["error"]["text"]
    finally:
        await slix_close(alice)


async def test_no_services_configured_gives_an_empty_list(tmp_path):
    async with running_server(tmp_path) as srv:
        alice = await slix(srv, await add_user(srv, "alice"))
        try:
            got = (await _get(alice, f"<services xmlns='{NS}'/>")).xml.find(f"{{{NS}}}services")
            assert got is not None and len(got) == 0
        finally:
            await slix_close(alice)

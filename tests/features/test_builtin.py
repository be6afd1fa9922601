"""Built-in features over the wire: disco (XEP-0030), ping both ways (XEP-0199), version
(XEP-0092), in-band registration (XEP-0077); and a feature loaded from outside the package."""
from __future__ import annotations

import asyncio
import base64
import textwrap

import pytest
from slixmpp.exceptions import IqError

from xmppd.app import Server
from xmppd.core.loader import discover

from ..helpers import PASSWORD, RawClient, add_user, make_config, running_server, slix, slix_close

REG = "jabber:iq:register"


async def test_disco_info_and_items_of_the_server(server):
    c = await slix(server, await add_user(server, "alice"), plugins=("xep_0030",))
    try:
        info = await c.plugin["xep_0030"].get_info(jid="localhost", timeout=5)
        features = info["disco_info"]["features"]
        for var in ("http://jabber.org/protocol/disco#info", "urn:xmpp:ping", "jabber:iq:version"):
            assert var in features
        assert ("server", "im", None, "xmppd") in info["disco_info"]["identities"]
        items = await c.plugin["xep_0030"].get_items(jid="localhost", timeout=5)
        assert items["type"] == "result"
        with pytest.raises(IqError) as err:
            await c.plugin["xep_0030"].get_info(jid="localhost", node="no-such-node", timeout=5)
        assert err.value.condition == "item-not-found"
    finally:
        await slix_close(c)


async def test_disco_of_accounts_self_yes_strangers_no(server):
    alice = await slix(server, await add_user(server, "alice"), plugins=("xep_0030",))
    await add_user(server, "bob")
    try:
        own = await alice.plugin["xep_0030"].get_info(jid="alice@localhost", timeout=5)
        assert ("account", "registered", None, None) in own["disco_info"]["identities"]
        with pytest.raises(IqError) as err:
            await alice.plugin["xep_0030"].get_info(jid="bob@localhost", timeout=5)
        assert err.value.condition == "service-unavailable"
    finally:
        await slix_close(alice)


async def test_client_pings_server_and_own_account(server):
    c = await slix(server, await add_user(server, "alice"), plugins=("xep_0199",))
    try:
        rtt = await c.plugin["xep_0199"].ping("localhost", timeout=5)
        assert rtt >= 0
        await c.plugin["xep_0199"].ping("alice@localhost", timeout=5)
    finally:
        await slix_close(c)


async def test_server_pings_silent_client_and_drops_dead_connection(tmp_path):
    async with running_server(tmp_path, "c2s.require_tls=false", "ping.idle=0.3", "ping.timeout=0.3") as srv:
        await add_user(srv, "alice")
        raw = await RawClient.connect(srv)
        await raw.open_stream()
        token = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
        await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        await raw.read_until(b"<success")
        await raw.open_stream()
        await raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        # The client now stays silent: the server pings, gets nothing, and closes.
        data = await raw.read_all(timeout=5)
        assert b"urn:xmpp:ping" in data
        assert b"connection-timeout" in data
        await asyncio.sleep(0.05)
        assert len(srv.sessions) == 0 and not srv.live


async def test_server_ping_answered_keeps_client(tmp_path):
    async with running_server(tmp_path, "ping.idle=0.3", "ping.timeout=1") as srv:
        c = await slix(srv, await add_user(srv, "alice"), plugins=("xep_0199",))
        try:
            await asyncio.sleep(1.2)  # several ping rounds, each answered by slixmpp
            assert len(srv.sessions) == 1
        finally:
            await slix_close(c)


async def test_software_version(server):
    c = await slix(server, await add_user(server, "alice"), plugins=("xep_0092",))
    try:
        result = await c.plugin["xep_0092"].get_version("localhost", timeout=5)
        assert result["software_version"]["name"] == "xmppd"
        assert result["software_version"]["os"] in (None, "")
    finally:
        await slix_close(c)


async def _register(srv: Server, username: str, password: str) -> bytes:
    raw = await RawClient.connect(srv)
    features = await raw.open_stream()
    await raw.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await raw.read_until(b"<proceed")
    from ..helpers import client_ssl_context

    await raw.writer.start_tls(client_ssl_context(srv), server_hostname="localhost")
    raw.buffer = b""
    features = await raw.open_stream()
    await raw.send(f"<iq type='get' id='g'><query xmlns='{REG}'/></iq>")
    form = await raw.read_until(b"</iq>")
    raw.buffer = b""
    await raw.send(
        f"<iq type='set' id='s'><query xmlns='{REG}'><username>{username}</username><password>{password}</password></query></iq>"
    )
    await raw.read_until(b'id="s"')
    for _ in range(100):  # the answer is either <iq .../> or <iq ...>...</iq>
        tail = raw.buffer.split(b'id="s"', 1)[1]
        if b"</iq>" in tail or tail.split(b">", 1)[0].endswith(b"/"):
            break
        await asyncio.sleep(0.02)
        raw.buffer += await asyncio.wait_for(raw.reader.read(65536), 5)
    answer = raw.buffer
    raw.close()
    return features + form + answer


async def test_inband_registration_when_open_then_login(open_server):
    data = await _register(open_server, "newbie", PASSWORD)
    assert b"http://jabber.org/features/iq-register" in data
    assert b"<username/>" in data and b"<password/>" in data
    answer = data.rsplit(b"<iq", 1)[1]
    assert b'id="s"' in answer and b'type="result"' in answer
    c = await slix(open_server, "newbie@localhost")
    await slix_close(c)


async def test_inband_registration_conflict_and_closed(open_server, tmp_path):
    await add_user(open_server, "taken")
    data = await _register(open_server, "taken", PASSWORD)
    assert b"<conflict" in data
    data = await _register(open_server, "shorty", "short")
    assert b"not-acceptable" in data
    async with running_server(tmp_path / "closed") as closed:
        data = await _register(closed, "someone", PASSWORD)
        assert b"iq-register" not in data.split(b"</stream:features>")[0]
        assert b"not-allowed" in data


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("root", b"the username 'root' is reserved"),
        ("Postmaster", b"the username 'postmaster' is reserved"),
        ("adm\u0456n", b"it looks like 'admin'"),
        ("s-0000abcd", b"reserved for the addresses of cs"),
        ("conference.localhost", b"looks like the domain conference.localhost"),
        ("cs.localhost", b"looks like the domain cs.localhost"),
    ],
)
async def test_inband_registration_refuses_reserved_and_look_alike_names(open_server, name, why):
    data = await _register(open_server, name, PASSWORD)
    answer = data.rsplit(b"<iq", 1)[1]
    assert b'type="error"' in answer and b"<conflict" in answer and why in answer
    assert await open_server.accounts.count("localhost") == 0


async def test_inband_registration_cannot_take_an_admins_name(tmp_path):
    async with running_server(tmp_path, "registration.open=true", 'server.admins=["boss@localhost"]') as srv:
        data = await _register(srv, "boss", PASSWORD)
        assert b"<conflict" in data.rsplit(b"<iq", 1)[1]
        assert await srv.accounts.get("boss", "localhost") is None


async def test_password_change_and_account_removal(open_server):
    jid = await add_user(open_server, "alice")
    c = await slix(open_server, jid, plugins=("xep_0077",))
    try:
        await c.plugin["xep_0077"].change_password("a new long password", jid="localhost", timeout=5)
    finally:
        await slix_close(c)
    with pytest.raises(ConnectionError):
        await slix(open_server, jid, PASSWORD, timeout=5)
    c = await slix(open_server, jid, "a new long password", plugins=("xep_0077",))
    ended: asyncio.Event = asyncio.Event()
    c.add_event_handler("disconnected", lambda e: ended.set())
    await c.plugin["xep_0077"].cancel_registration(jid="localhost", timeout=5)
    await asyncio.wait_for(ended.wait(), 5)
    for _ in range(50):
        if await open_server.accounts.get("alice", "localhost") is None:
            break
        await asyncio.sleep(0.05)
    assert await open_server.accounts.get("alice", "localhost") is None


async def test_feature_from_outside_the_package_loads_through_entry_points(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    pkg.mkdir()
    (pkg / "echofeature.py").write_text(
        textwrap.dedent(
            '''
            """A third-party feature: answers <echo xmlns='urn:example:echo'/> with its text."""
            from lxml import etree
            from xmppd.core.feature import Feature, iq_handler

            class Echo(Feature):
                name = "echo"
                disco_features = ("urn:example:echo",)

                @iq_handler("get", "{urn:example:echo}echo")
                async def echo(self, req):
                    out = etree.Element("{urn:example:echo}echo", nsmap={None: "urn:example:echo"})
                    out.text = (req.payload.text or "")[::-1]
                    return out
            '''
        )
    )
    dist = pkg / "echofeature-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echofeature\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[xmppd.features]\necho = echofeature:Echo\n")
    monkeypatch.syspath_prepend(str(pkg))
    classes = discover()
    assert "echo" in classes and classes["echo"].__module__ == "echofeature"
    srv = Server(make_config(tmp_path / "data"), feature_classes=classes)
    await srv.start()
    try:
        c = await slix(srv, await add_user(srv, "alice"), plugins=("xep_0030",))
        try:
            iq = c.make_iq_get(ito="localhost")
            from lxml import etree as _  # noqa: F401
            from slixmpp.xmlstream import ET

            el = ET.Element("{urn:example:echo}echo")
            el.text = "olleh"
            iq.append(el)
            result = await iq.send(timeout=5)
            assert result.xml.find("{urn:example:echo}echo").text == "hello"
            info = await c.plugin["xep_0030"].get_info(jid="localhost", timeout=5)
            assert "urn:example:echo" in info["disco_info"]["features"]
        finally:
            await slix_close(c)
    finally:
        await srv.stop()
    # Teardown undid every registration of every feature.
    assert srv.iq_table.lookup("get", __import__("xmppd.core.dispatch", fromlist=["Target"]).Target.HOST, "localhost", "{urn:example:echo}echo") is None

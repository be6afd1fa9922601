"""Server-owned elements cannot be forged (issue 15): every installed feature declares what only
the server writes into stanzas (``Feature.server_owned``, xmppd/core/server_owned.py), the core
declares its own, and one step in the router strips clients' copies before anything sees them.

The wire test walks every declaration of every installed feature and forges each element from a
real slixmpp client in a chat message, a groupchat message and a presence; the recipient gets
the stanza (with a harmless extension that proves extensions do travel) but never the forgery.
The schema test ties the declarations to the XSDs of our namespaces, both ways."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lxml import etree
from slixmpp import ET

from xmppd.core import server_owned
from xmppd.core.loader import discover
from xmppd.core.server_owned import ServerOwned

from ..features.muc_support import create, join, room_jid, user
from ..helpers import running_server, slix_close

pytestmark = pytest.mark.interop

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
XS = "{http://www.w3.org/2001/XMLSchema}"
TEST_NS = "urn:example:forgery-test"


def declarations() -> list[tuple[str, ServerOwned]]:
    """(owner, declaration) for the core and every installed feature."""
    out = [("core", o) for o in server_owned.CORE]
    for name, cls in sorted(discover().items()):
        out.extend((name, o) for o in cls.server_owned)
    return out


def schema_elements(namespace: str) -> list[str]:
    """The top-level elements the XSD of one of our namespaces declares (all of them: requests too)."""
    for path in sorted(SCHEMAS.glob("*.xsd")):
        root = etree.parse(str(path)).getroot()
        if root.get("targetNamespace") == namespace:
            return [el.get("name") for el in root.findall(f"{XS}element")]
    raise AssertionError(f"no schema for {namespace}")


def forgeries() -> list[tuple[str, ServerOwned]]:
    """One forgery per declared element; for a namespace owned whole, every element its schema
    declares (requests included: in a message they are no request) and a made-up one."""
    out: list[tuple[str, ServerOwned]] = []
    for owner, o in declarations():
        if o.whole_namespace:
            names = [*schema_elements(o.namespace), "made-up"]
            out.extend((owner, ServerOwned(f"{{{o.namespace}}}{n}")) for n in names)
        else:
            out.append((owner, o))
    return out


def forgery(owned: ServerOwned, domain: str, n: int) -> ET.Element:
    el = etree.Element(owned.qname, nsmap={None: owned.namespace})
    el.set("id", f"forged-{n}")  # the server's own copies (a stanza-id it adds) never say so
    if owned.claims:  # the claim that makes it ours: it names our domain
        el.set(owned.claims, domain)
    return ET.fromstring(etree.tostring(el))  # as slixmpp builds its stanzas


def control() -> ET.Element:
    return ET.fromstring(f"<harmless xmlns='{TEST_NS}'/>")


def forged_children(stanza) -> list[str]:  # type: ignore[no-untyped-def]
    return [etree.QName(c.tag).text for c in _lxml(stanza) if (c.get("id") or "").startswith("forged-")]


def _lxml(stanza) -> etree._Element:  # type: ignore[no-untyped-def]
    return etree.fromstring(str(stanza).encode())


def has_control(stanza) -> bool:  # type: ignore[no-untyped-def]
    return _lxml(stanza).find(f"{{{TEST_NS}}}harmless") is not None


def test_the_features_that_author_stanza_elements_declare_them():
    owners = {name for name, _ in declarations()}
    assert {"core", "carbons", "mam", "mute", "redpacket", "cs"} <= owners
    qnames = [o.qname for _, o in declarations()]
    assert len(qnames) == len(set(qnames)), "an element is declared twice"


def test_every_server_only_element_of_our_schemas_is_declared_and_every_declaration_is_in_them():
    """An XSD marks an element ``<xs:appinfo>server-only</xs:appinfo>`` when the server writes it
    into messages or presence; each is declared (by name, or with its whole namespace), and an
    element declared by name in one of our namespaces is marked there."""
    whole = {o.namespace for _, o in declarations() if o.whole_namespace}
    named: dict[str, set[str]] = {}
    for _, o in declarations():
        if not o.whole_namespace:
            named.setdefault(o.namespace, set()).add(o.localname)
    schemas = sorted(SCHEMAS.glob("*.xsd"))
    assert schemas
    for path in schemas:
        root = etree.parse(str(path)).getroot()
        target = root.get("targetNamespace")
        marked = {
            el.get("name")
            for el in root.findall(f"{XS}element")
            if any((info.text or "").strip() == "server-only" for info in el.iterfind(f"{XS}annotation/{XS}appinfo"))
        }
        assert marked, f"{path.name} marks no server-only element"
        undeclared = set() if target in whole else marked - named.get(target, set())
        assert not undeclared, f"{path.name}: {sorted(undeclared)} are server-only but no feature declares them"
        unmarked = named.get(target, set()) - marked
        assert not unmarked, f"{path.name}: {sorted(unmarked)} are declared server-owned but not marked"


@pytest.fixture
async def forge_server(tmp_path: Path):
    async with running_server(tmp_path, "c2s.max_connections_per_ip=100") as srv:
        yield srv


async def test_no_declared_element_can_be_forged_in_chat_groupchat_or_presence(forge_server):
    server = forge_server
    decls = forgeries()
    loaded = set(server.features)
    assert {name for name, _ in declarations() if name != "core"} <= loaded, "a declaring feature is not loaded"
    room = room_jid(server, "forge")
    alice, bob = await user(server, "alice"), await user(server, "bob")
    try:
        await create(alice, room, "Alice")
        await join(bob, room, "Bob")
        bob.inbox.drain()
        bob_full = str(bob.boundjid)
        for n, (_, owned) in enumerate(decls):
            chat = alice.make_message(mto="bob@localhost", mbody=f"chat {n}", mtype="chat")
            chat.xml.append(forgery(owned, server.domain, n))
            chat.xml.append(control())
            chat.send()
            gc = alice.make_message(mto=room, mbody=f"gc {n}", mtype="groupchat")
            gc.xml.append(forgery(owned, server.domain, n))
            gc.xml.append(control())
            gc.send()
            for to in (bob_full, f"{room}/Alice"):  # directed, and to the room (broadcast)
                pres = alice.make_presence(pto=to, pstatus=f"pr {n}")
                pres.xml.append(forgery(owned, server.domain, n))
                pres.xml.append(control())
                pres.send()
        got: dict[str, list] = {}
        want = {f"{kind} {n}" for n in range(len(decls)) for kind in ("chat", "gc")}

        async def collect_messages() -> None:
            while not want <= set(got):
                m = await bob.inbox.messages.get()
                got.setdefault(str(m["body"]), []).append(m)

        await asyncio.wait_for(collect_messages(), 20)
        presences: dict[str, list] = {}

        async def collect_presences() -> None:
            while not all(len(presences.get(f"pr {n}", [])) >= 2 for n in range(len(decls))):
                p = await bob.inbox.presences.get()
                presences.setdefault(str(p["status"]), []).append(p)

        await asyncio.wait_for(collect_presences(), 20)
        for n, (owner, owned) in enumerate(decls):
            for key in (f"chat {n}", f"gc {n}"):
                for stanza in got[key]:
                    assert has_control(stanza), f"{key}: extensions do not travel, the test proves nothing"
                    assert forged_children(stanza) == [], f"{owner}'s {owned.qname} forged in {key} reached bob"
            for stanza in presences[f"pr {n}"]:
                assert has_control(stanza), f"pr {n} ({stanza['from']}): extensions do not travel"
                assert forged_children(stanza) == [], f"{owner}'s {owned.qname} forged in presence reached bob"
    finally:
        await slix_close(alice)
        await slix_close(bob)

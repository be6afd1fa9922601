"""OMEMO (XEP-0384) end to end through our PEP, with two slixmpp-omemo clients: device lists and
bundles are published and fetched through PEP (notifications filtered by caps), an encrypted
message round-trips (OMEMO 0.3, the version slixmpp-omemo encrypts with), and offline storage and MAM keep the encrypted element intact."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from lxml import etree
from omemo.storage import Just, Maybe, Nothing, Storage
from omemo.types import DeviceInformation, JSONType
from slixmpp import ET
from slixmpp.jid import JID
from slixmpp.plugins import register_plugin
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from slixmpp_omemo import XEP_0384

from ..helpers import slix_close
from .pep_support import PepClient, befriend

TWOMEMO = "urn:xmpp:omemo:2"
# slixmpp-omemo 2.2 encrypts with OMEMO 0.3 (it has no SCE for omemo:2 yet), and publishes the
# device lists and bundles of both versions.
OLDMEMO = "eu.siacs.conversations.axolotl"
DEVICES = "urn:xmpp:omemo:2:devices"
MAM = "urn:xmpp:mam:2"
WAIT = 10.0

# Each account's OMEMO state survives its client (a reconnection keeps its device and sessions).
STORES: dict[str, dict[str, JSONType]] = {}


class MemoryStorage(Storage):
    def __init__(self, data: dict[str, JSONType]) -> None:
        super().__init__()
        self._data = data

    async def _load(self, key: str) -> Maybe[JSONType]:
        return Just(json.loads(json.dumps(self._data[key]))) if key in self._data else Nothing()

    async def _store(self, key: str, value: JSONType) -> None:
        self._data[key] = value

    async def _delete(self, key: str) -> None:
        self._data.pop(key, None)


class XEP_0384Impl(XEP_0384):  # noqa: N801 (slixmpp's plugin naming)
    """A test client's OMEMO: in-memory storage per account, blind trust before verification."""

    default_config = {"fallback_message": "This message is OMEMO encrypted."}

    @property
    def storage(self) -> Storage:
        if not hasattr(self, "_test_storage"):
            self._test_storage = MemoryStorage(STORES.setdefault(self.xmpp.boundjid.bare, {}))
        return self._test_storage

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _devices_blindly_trusted(self, blindly_trusted: frozenset[DeviceInformation], identifier: str | None) -> None:
        return None

    async def _prompt_manual_trust(self, manually_trusted: frozenset[DeviceInformation], identifier: str | None) -> None:
        raise AssertionError(f"BTBV should have decided: {manually_trusted}")


register_plugin(XEP_0384Impl)


async def omemo_client(server, name: str, *, create: bool) -> tuple[PepClient, asyncio.Queue]:
    inbox: asyncio.Queue = asyncio.Queue()
    c = await PepClient.login(server, name, (DEVICES,), create=create, plugins=("xep_0280", "xep_0334", "xep_0004", "xep_0384"),
                              presence=False)
    c.c.add_event_handler("message", lambda m: inbox.put_nowait(m) if m["type"] in ("chat", "normal") else None)
    await c.c.plugin["xep_0384"].get_session_manager()  # device list and bundle published
    c.c.send_presence()
    await c.learnt(DEVICES)
    return c, inbox


async def encrypted_from(inbox: asyncio.Queue, sender: str) -> Any:
    while True:
        msg = await asyncio.wait_for(inbox.get(), WAIT)
        if msg["from"].bare == sender and msg.xml.find(f"{{{OLDMEMO}}}encrypted") is not None:
            return msg


def c14n(el: Any) -> tuple:
    """A canonical form (tag, attributes, text, children) -- libxml2's C14N refuses the relative
    namespace URI of OMEMO 0.3."""
    def canon(e: etree._Element) -> tuple:
        return (e.tag, tuple(sorted(e.attrib.items())), (e.text or "").strip(), tuple(canon(c) for c in e))
    return canon(etree.fromstring(ET.tostring(el)))


async def send_encrypted(alice: PepClient, to: str, body: str) -> tuple:
    msg = alice.c.make_message(mto=to, mtype="chat")
    msg["body"] = body
    xep = alice.c.plugin["xep_0384"]
    encrypted, errors = await xep.encrypt_message(msg, JID(to))
    assert encrypted is not None and not errors, errors
    encrypted.send()
    return c14n(encrypted.xml.find(f"{{{OLDMEMO}}}encrypted"))


async def test_omemo_device_lists_bundles_and_an_encrypted_message_through_offline_and_mam(server):
    STORES.clear()
    alice, _ = await omemo_client(server, "alice", create=True)
    bob, inbox = await omemo_client(server, "bob", create=True)
    await befriend(server, alice.bare, bob.bare)
    try:
        # each device list is a PEP item both can read, and each names its own device
        alice_sm = await alice.c.plugin["xep_0384"].get_session_manager()
        bob_sm = await bob.c.plugin["xep_0384"].get_session_manager()
        alice_device = (await alice_sm.get_own_device_information())[0].device_id
        bob_device = (await bob_sm.get_own_device_information())[0].device_id
        got = await alice.iq("get", f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{DEVICES}'/></pubsub>", to=bob.bare)
        assert [int(d.get("id")) for d in got.iter(f"{{{TWOMEMO}}}device")] == [bob_device]
        got = await bob.iq("get", f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:omemo:2:bundles'>"
                                  f"<item id='{alice_device}'/></items></pubsub>", to=alice.bare)
        assert got.find(f".//{{{TWOMEMO}}}bundle") is not None
        got = await alice.iq("get", f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{OLDMEMO}.devicelist'/></pubsub>", to=bob.bare)
        assert [int(d.get("id")) for d in got.iter(f"{{{OLDMEMO}}}device")] == [bob_device]
        got = await bob.iq("get", f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{OLDMEMO}.bundles:{alice_device}'/>"
                                  "</pubsub>", to=alice.bare)
        assert got.find(f".//{{{OLDMEMO}}}bundle") is not None

        # a round trip, with bundles fetched from PEP on both sides
        await send_encrypted(alice, bob.bare, "meet at noon")
        decrypted, sender = await bob.c.plugin["xep_0384"].decrypt_message(await encrypted_from(inbox, alice.bare))
        assert decrypted["body"] == "meet at noon" and sender.device_id == alice_device
        reply = bob.c.make_message(mto=alice.bare, mtype="chat")
        reply["body"] = "ok"
        encrypted, errors = await bob.c.plugin["xep_0384"].encrypt_message(reply, JID(alice.bare))
        assert not errors
        alice_inbox: asyncio.Queue = asyncio.Queue()
        alice.c.add_event_handler("message", lambda m: alice_inbox.put_nowait(m))
        encrypted.send()
        decrypted, _ = await alice.c.plugin["xep_0384"].decrypt_message(await encrypted_from(alice_inbox, bob.bare))
        assert decrypted["body"] == "ok"

        # bob goes offline; the message waits in offline storage and is still decryptable
        await slix_close(bob.c)
        for _ in range(200):
            if not server.sessions.of(JID(bob.bare)):
                break
            await asyncio.sleep(0.01)
        sent = await send_encrypted(alice, bob.bare, "while you were away")
        for _ in range(200):
            if await server.features["offline"].repo.count("bob", server.domain):
                break
            await asyncio.sleep(0.01)
        bob, inbox = await omemo_client(server, "bob", create=False)
        offline = await encrypted_from(inbox, alice.bare)
        assert c14n(offline.xml.find(f"{{{OLDMEMO}}}encrypted")) == sent
        decrypted, _ = await bob.c.plugin["xep_0384"].decrypt_message(offline)
        assert decrypted["body"] == "while you were away"

        # the archive holds the same encrypted element, byte for byte after c14n
        results: list[Any] = []
        bob.c.register_handler(Callback("mam", MatchXPath(f"{{jabber:client}}message/{{{MAM}}}result"), lambda m: results.append(m.xml)))
        iq = bob.c.make_iq_set()
        ET.SubElement(iq.xml, f"{{{MAM}}}query", {"queryid": "omemo"})
        await iq.send(timeout=WAIT)
        archived = [r.find(f"{{{MAM}}}result/{{urn:xmpp:forward:0}}forwarded/{{jabber:client}}message/{{{OLDMEMO}}}encrypted")
                    for r in results]
        assert sent in [c14n(a) for a in archived if a is not None]
    finally:
        await slix_close(alice.c)
        await slix_close(bob.c)

"""XEP-0398 avatar conversion (XEP-0084 through PEP <-> XEP-0054 vCard PHOTO) and the XEP-0153
hash the server puts in presence; aioxmpp's AvatarService on one side, slixmpp on the other."""
from __future__ import annotations

import asyncio
import base64
import hashlib

import aioxmpp
import aioxmpp.avatar
from lxml import etree
from slixmpp import ET

from ..aiox import aioxmpp_client
from ..helpers import add_user, slix_close
from .pep_support import PepClient, befriend

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
METADATA = "urn:xmpp:avatar:metadata"
UPDATE = "vcard-temp:x:update"


async def _vcard_photo(client: PepClient, jid: str) -> tuple[str | None, bytes | None]:
    got = await client.iq("get", "<vCard xmlns='vcard-temp'/>", to=jid)
    photo = got.find("{vcard-temp}vCard/{vcard-temp}PHOTO")
    if photo is None:
        return None, None
    return photo.findtext("{vcard-temp}TYPE"), base64.b64decode(photo.findtext("{vcard-temp}BINVAL"))


async def _photo_in_presence(client: PepClient, sender: str) -> str | None:
    """The vcard-temp:x:update photo of the next available presence from ``sender``."""
    got: asyncio.Queue = asyncio.Queue()
    handler = lambda p: got.put_nowait(etree.fromstring(str(p)))  # noqa: E731
    client.c.add_event_handler("presence", handler)
    try:
        while True:
            p = await asyncio.wait_for(got.get(), 5)
            if p.get("from", "").startswith(sender + "/") and p.get("type") is None:
                x = p.find(f"{{{UPDATE}}}x")
                assert x is not None, etree.tostring(p)
                return x.findtext(f"{{{UPDATE}}}photo")
    finally:
        client.c.del_event_handler("presence", handler)


async def test_pep_avatar_from_aioxmpp_becomes_the_vcard_photo_and_the_presence_hash(server):
    alice_jid = await add_user(server, "alice")
    bob = await PepClient.login(server, "bob", (METADATA,), plugins=("xep_0054",))
    await befriend(server, alice_jid, bob.bare)
    sha1 = hashlib.sha1(PNG).hexdigest()
    try:
        async with aioxmpp_client(server, alice_jid) as alice:
            avatars = alice.summon(aioxmpp.avatar.AvatarService)
            avatars.synchronize_vcard = False  # the server does the conversion
            avatar_set = aioxmpp.avatar.AvatarSet()
            avatar_set.add_avatar_image("image/png", image_bytes=PNG)
            await avatars.publish_avatar_set(avatar_set)
            # bob, interested in metadata, is notified through PEP
            ev = await bob.event(METADATA)
            assert ev.find(f".//{{{METADATA}}}info").get("id") == sha1
            # the vCard now carries the image (XEP-0398 §3.1)
            assert await _vcard_photo(bob, alice_jid) == ("image/png", PNG)
            # and every available presence of alice carries its hash (§4)
            waiting = asyncio.ensure_future(_photo_in_presence(bob, alice_jid))
            await asyncio.sleep(0)
            alice.presence = aioxmpp.PresenceState(True, aioxmpp.PresenceShow.AWAY)
            assert await waiting == sha1
    finally:
        await slix_close(bob.c)


async def test_vcard_photo_becomes_a_pep_avatar_read_by_aioxmpp(server):
    alice = await PepClient.login(server, "alice", plugins=("xep_0054",))
    bob_jid = await add_user(server, "bob")
    sha1 = hashlib.sha1(PNG).hexdigest()
    try:
        card = ET.fromstring(
            "<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE>"
            f"<BINVAL>{base64.b64encode(PNG).decode()}</BINVAL></PHOTO></vCard>"
        )
        iq = alice.c.make_iq_set()
        iq.append(card)
        await iq.send(timeout=5)
        async with aioxmpp_client(server, bob_jid) as bob:
            avatars = bob.summon(aioxmpp.avatar.AvatarService)
            descriptors = await avatars.get_avatar_metadata(aioxmpp.JID.fromstr(alice.bare), require_fresh=True)
            pep = [d for d in descriptors if isinstance(d, aioxmpp.avatar.service.PubsubAvatarDescriptor)]
            assert [d.normalized_id for d in pep] == [sha1]
            assert pep[0].mime_type == "image/png" and pep[0].nbytes == len(PNG)
            assert await pep[0].get_image_bytes() == PNG
        # a client presence with an empty x gets the hash; an empty photo stays empty
        waiting = asyncio.ensure_future(_photo_in_presence(alice, alice.bare))
        await asyncio.sleep(0)
        alice.c.send_presence(pstatus="x")
        assert await waiting == sha1
        waiting = asyncio.ensure_future(_photo_in_presence(alice, alice.bare))
        await asyncio.sleep(0)
        p = alice.c.make_presence()
        p.append(ET.fromstring(f"<x xmlns='{UPDATE}'><photo/></x>"))
        p.send()
        assert await waiting == ""  # untouched: <photo/>
        # removing the PHOTO publishes empty metadata: the avatar is disabled (XEP-0084 §4.5)
        iq = alice.c.make_iq_set()
        iq.append(ET.fromstring("<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>"))
        await iq.send(timeout=5)
        got = await alice.iq("get", f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{METADATA}'/></pubsub>")
        meta = got.findall(f".//{{{METADATA}}}metadata")
        assert len(meta) == 1 and len(meta[0]) == 0
    finally:
        await slix_close(alice.c)

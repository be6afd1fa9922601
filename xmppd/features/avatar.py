"""XEP-0398: User Avatar to vCard-Based Avatars Conversion (with XEP-0084 and XEP-0153).

The server keeps a user's XEP-0084 avatar (PEP nodes ``urn:xmpp:avatar:data`` and
``urn:xmpp:avatar:metadata``) and the ``PHOTO`` of their vCard (XEP-0054) in step:

* PEP to vCard (§3.1): when the user publishes to the metadata node, the ``<info/>`` without a
  ``url`` names the image; its item in the data node is decoded, its SHA-1 checked against the
  id, and it becomes the vCard's ``PHOTO`` (``TYPE`` from the info). Empty metadata (the
  avatar disabled, XEP-0084 §4.5) removes the ``PHOTO``.
* vCard to PEP (§3.2): a vCard set with a ``PHOTO`` whose image differs from the current one
  publishes the image to the data node (item id: its SHA-1) and then the metadata node (one
  ``<info/>`` with ``bytes``, ``id`` and ``type``), which notifies the metadata node's
  interested contacts; a vCard without ``PHOTO`` publishes empty metadata when there was one.
  Nodes the conversion creates are ``open`` like the vCard itself (§6: the vCard has no
  access control; the account advertises ``urn:xmpp:pep-vcard-conversion:0`` so that clients
  can warn).
* XEP-0153 hash (§4): every available presence a client sends, broadcast or directed (MUC
  joins), gets ``<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>`` for the current
  avatar (``<photo/>`` when there is none), replacing what the client put there, unless the
  client sent an empty ``<photo/>`` (which goes untouched). The hash per account is read from
  the vCard once and kept (bounded); conversions on this node update it. With several
  cluster nodes, a vCard or avatar change made through another node drops the account's entry
  here (the cache invalidation ``avatar``, docs/cluster.md §2), read again at its next use.
"""
from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import logging
from collections.abc import Awaitable

from lxml import etree

from ..core import hooks as H
from ..core.feature import Feature, hook
from ..core.hooks import Flow, Routed, SessionEvent
from ..errors import StanzaError
from ..jid import JID
from ..xml.builder import element, sub

log = logging.getLogger(__name__)

CONVERSION = "urn:xmpp:pep-vcard-conversion:0"
DATA = "urn:xmpp:avatar:data"
METADATA = "urn:xmpp:avatar:metadata"
UPDATE = "vcard-temp:x:update"
VCARD = "vcard-temp"
_V = f"{{{VCARD}}}"
_ORIGIN = "avatar"
_OPEN = {"access_model": "open", "persist_items": True, "max_items": 1}
_CACHE_SIZE = 10000


def _photo(vcard: etree._Element | None) -> tuple[bytes, str] | None:
    """The decoded image and type of a vCard's PHOTO (None: none, or not decodable)."""
    if vcard is None:
        return None
    photo = vcard.find(_V + "PHOTO")
    if photo is None:
        return None
    binval = "".join((photo.findtext(_V + "BINVAL") or "").split())
    if not binval:
        return None
    try:
        data = base64.b64decode(binval, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data, (photo.findtext(_V + "TYPE") or "image/png").strip()


class Avatar(Feature):
    name = "avatar"
    implements = ("XEP-0398", "XEP-0153", "XEP-0084")
    account_disco_features = (CONVERSION,)
    depends = ("pep", "vcard")

    async def setup(self) -> None:
        self.pep = self.ctx.feature("pep")
        self.vcard = self.ctx.feature("vcard")
        self._hashes: collections.OrderedDict[JID, str] = collections.OrderedDict()
        self._generation = 0  # moves at every invalidation: a load racing with one keeps nothing
        # Another cluster node's vCard or avatar write (xmppd/core/invalidation.py).
        self._inval = self.ctx.invalidation("avatar", self._invalidated, self._flush)
        self.ctx.on_teardown(self.pep.add_listener(self._on_pep))
        self.ctx.on_teardown(self.vcard.add_listener(self._on_vcard))

    # ------------------------------------------------------------------ the hash

    def _invalidated(self, key: str) -> None:
        self._generation += 1
        self._hashes.pop(JID.parse(key), None)

    def _flush(self) -> None:
        self._generation += 1
        self._hashes.clear()

    def _changed(self, owner: JID, sha1: str) -> None:
        """This node wrote ``owner``'s avatar: remember it, and tell the other nodes."""
        self._generation += 1
        self._remember(owner, sha1)
        self._inval.publish(str(owner.bare))

    def _remember(self, owner: JID, sha1: str) -> None:
        self._hashes[owner] = sha1
        self._hashes.move_to_end(owner)
        while len(self._hashes) > _CACHE_SIZE:
            self._hashes.popitem(last=False)

    async def avatar_hash(self, owner: JID) -> str:
        """The SHA-1 (hex) of ``owner``'s avatar, '' when there is none."""
        owner = owner.bare
        cached = self._hashes.get(owner)
        if cached is not None:
            return cached
        generation = self._generation
        photo = _photo(await self.vcard.load(owner))
        sha1 = hashlib.sha1(photo[0]).hexdigest() if photo else ""
        if generation == self._generation:
            self._remember(owner, sha1)
        return sha1

    @hook(H.STANZA_IN, priority=50)
    def on_presence(self, r: Routed) -> "Flow | Awaitable[Flow]":
        if r.kind != "presence" or r.origin is None or r.stanza.get("type") is not None:
            return Flow.CONTINUE  # (messages and iqs without a coroutine: see core.hooks)
        return self._presence(r)

    async def _presence(self, r: Routed) -> Flow:
        st = r.stanza
        x = st.find(f"{{{UPDATE}}}x")
        if x is not None:
            photo = x.find(f"{{{UPDATE}}}photo")
            if photo is not None and not (photo.text or "").strip():
                return Flow.CONTINUE  # §4: an empty photo goes untouched
            st.remove(x)
        sha1 = await self.avatar_hash(r.from_jid)
        x = element(f"{{{UPDATE}}}x", default_ns=UPDATE)
        sub(x, f"{{{UPDATE}}}photo", text=sha1 or None)
        st.append(x)
        return Flow.CONTINUE

    @hook(H.SESSION_CLOSED)
    async def on_closed(self, event: SessionEvent) -> Flow:
        jid = event.session.jid
        if jid is not None:
            self._hashes.pop(jid.bare, None)  # read again at the next presence
        return Flow.CONTINUE

    # ------------------------------------------------------------------ PEP -> vCard

    async def _on_pep(self, owner: JID, node: str, item_id: str, payload: etree._Element | None, origin: str) -> None:
        if node != METADATA or origin == _ORIGIN or payload is None:
            return
        try:
            await self._pep_to_vcard(owner, payload)
        except StanzaError as exc:
            log.info("avatar of %s not copied to the vCard: %s", owner, exc)

    async def _pep_to_vcard(self, owner: JID, metadata: etree._Element) -> None:
        infos = [i for i in metadata.findall(f"{{{METADATA}}}info") if i.get("url") is None]
        vcard = await self.vcard.load(owner)
        if vcard is None:
            vcard = element(_V + "vCard", default_ns=VCARD)
        for old in vcard.findall(_V + "PHOTO"):
            vcard.remove(old)
        if not infos:
            if metadata.find(f"{{{METADATA}}}info") is not None:
                return  # only external URLs: nothing the vCard can hold
            await self.vcard.store(owner, vcard, origin=_ORIGIN)
            self._changed(owner, "")
            return
        info = infos[0]
        sha1 = (info.get("id") or "").lower()
        data_item = next((p for i, p in await self.pep.get_items(owner, DATA) if i.lower() == sha1), None)
        if data_item is None:
            log.info("avatar metadata of %s names %s, which is not in %s", owner, sha1, DATA)
            return
        try:
            image = base64.b64decode("".join((data_item.text or "").split()), validate=True)
        except (binascii.Error, ValueError):
            log.info("avatar data of %s is not base64", owner)
            return
        if hashlib.sha1(image).hexdigest() != sha1:
            log.info("avatar data of %s does not hash to its id %s", owner, sha1)
            return
        photo = sub(vcard, _V + "PHOTO")
        sub(photo, _V + "TYPE", text=info.get("type") or "image/png")
        sub(photo, _V + "BINVAL", text=base64.b64encode(image).decode("ascii"))
        await self.vcard.store(owner, vcard, origin=_ORIGIN)
        self._changed(owner, sha1)

    # ------------------------------------------------------------------ vCard -> PEP

    async def _on_vcard(self, owner: JID, vcard: etree._Element, origin: str) -> None:
        if origin == _ORIGIN:
            return
        photo = _photo(vcard)
        sha1 = hashlib.sha1(photo[0]).hexdigest() if photo else ""
        before = self._hashes.get(owner)
        self._changed(owner, sha1)
        try:
            if photo is None:
                if before:
                    await self.pep.publish_item(owner, METADATA, "current", element(f"{{{METADATA}}}metadata", default_ns=METADATA),
                                                _OPEN, origin=_ORIGIN)
                return
            if sha1 == before:
                return
            image, mime = photo
            data = element(f"{{{DATA}}}data", default_ns=DATA, text=base64.b64encode(image).decode("ascii"))
            await self.pep.publish_item(owner, DATA, sha1, data, _OPEN, origin=_ORIGIN)
            metadata = element(f"{{{METADATA}}}metadata", default_ns=METADATA)
            sub(metadata, f"{{{METADATA}}}info", {"bytes": str(len(image)), "id": sha1, "type": mime})
            await self.pep.publish_item(owner, METADATA, sha1, metadata, _OPEN, origin=_ORIGIN)
        except StanzaError as exc:
            log.info("vCard avatar of %s not published to PEP: %s", owner, exc)

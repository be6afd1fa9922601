"""XEP-0402: PEP Native Bookmarks, with the XEP-0048 compatibility of §5.3 and XEP-0411.

Bookmarks live in the PEP node ``urn:xmpp:bookmarks:1``, one item per room (item id: the
room's JID, payload ``<conference xmlns='urn:xmpp:bookmarks:1'/>``); clients publish them with
the publish-options XEP-0402 §3 prescribes (``persist_items``, ``max_items`` = ``max``,
``send_last_published_item`` = ``never``, ``access_model`` = ``whitelist``), which the PEP
feature checks like any precondition. That node is the one truth; the older forms are views
of it, so that a client of either generation sees the same bookmarks:

* XEP-0048 in private XML storage (XEP-0049, ``storage:bookmarks``; advertised with
  ``urn:xmpp:bookmarks:1#compat``): a get builds ``<storage/>`` from the node's items; a set
  publishes every conference whose content changed (keeping the ``<extensions/>`` a newer
  client stored) and retracts, with notifications, the rooms it no longer lists. ``<url/>``
  bookmarks have no XEP-0402 form and are not kept.
* XEP-0048 in PEP (the ``storage:bookmarks`` node; ``urn:xmpp:bookmarks:1#compat-pep`` and XEP-0411
  ``urn:xmpp:bookmarks-conversion:0``):
  a client publishing there updates ``urn:xmpp:bookmarks:1`` the same way, and a change of
  ``urn:xmpp:bookmarks:1`` republishes the ``storage:bookmarks`` item (when that node exists,
  i.e. a legacy client uses it) so that its subscribers are notified.
"""
from __future__ import annotations

import logging

from lxml import etree

from ..core.feature import Feature
from ..errors import Condition, StanzaError
from ..jid import JID, JIDError
from ..xml.builder import element, sub

log = logging.getLogger(__name__)

NATIVE = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
COMPAT = NATIVE + "#compat"
COMPAT_PEP = NATIVE + "#compat-pep"
CONVERSION = "urn:xmpp:bookmarks-conversion:0"
_N = f"{{{NATIVE}}}"
_L = f"{{{LEGACY}}}"
_ORIGIN = "bookmarks"
NATIVE_OPTIONS = {"persist_items": True, "max_items": "max", "send_last_published_item": "never", "access_model": "whitelist"}
LEGACY_OPTIONS = {"persist_items": True, "access_model": "whitelist", "max_items": 1}


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true")


class Bookmarks(Feature):
    name = "bookmarks"
    implements = ("XEP-0402", "XEP-0411", "XEP-0048")
    account_disco_features = (COMPAT, COMPAT_PEP, CONVERSION)
    depends = ("pep", "private")

    async def setup(self) -> None:
        self.pep = self.ctx.feature("pep")
        self.ctx.on_teardown(self.ctx.feature("private").delegate(LEGACY, self._private_get, self._private_set))
        self.ctx.on_teardown(self.pep.add_listener(self._on_pep))

    def _native_options(self) -> dict[str, object]:
        return {**NATIVE_OPTIONS, "max_items": self.pep.options.max_items}

    # ------------------------------------------------------------------ views

    async def storage(self, owner: JID) -> etree._Element:
        """The XEP-0048 ``<storage/>`` for ``owner``'s native bookmarks."""
        out = element(_L + "storage", default_ns=LEGACY)
        for room, conf in await self.pep.get_items(owner, NATIVE):
            if conf.tag != _N + "conference":
                continue
            c = sub(out, _L + "conference", {"jid": room})
            name = conf.get("name")
            if name:
                c.set("name", name)
            c.set("autojoin", "true" if _truthy(conf.get("autojoin")) else "false")
            for tag in ("nick", "password"):
                text = conf.findtext(_N + tag)
                if text:
                    sub(c, _L + tag, text=text)
        return out

    async def _replace_from_storage(self, owner: JID, storage: etree._Element) -> None:
        """Make the native node list exactly the conferences of a XEP-0048 ``<storage/>``."""
        wanted: dict[str, etree._Element] = {}
        for conf in storage.findall(_L + "conference"):
            try:
                room = str(JID.parse(conf.get("jid") or "").bare)
            except JIDError:
                raise StanzaError(Condition.BAD_REQUEST, f"{conf.get('jid')!r} is not a room JID") from None
            wanted[room] = conf
        if len(wanted) > self.pep.options.max_items:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"at most {self.pep.options.max_items} bookmarks are kept")
        current = dict(await self.pep.get_items(owner, NATIVE))
        for room, conf in wanted.items():
            native = element(_N + "conference", default_ns=NATIVE)
            name = conf.get("name")
            if name:
                native.set("name", name)
            if _truthy(conf.get("autojoin")):
                native.set("autojoin", "true")
            for tag in ("nick", "password"):
                text = conf.findtext(_L + tag)
                if text:
                    sub(native, _N + tag, text=text)
            old = current.get(room)
            if old is not None:
                ext = old.find(_N + "extensions")
                if ext is not None:
                    native.append(ext)  # what a XEP-0402 client stored beside stays
                if etree.tostring(old) == etree.tostring(native):
                    continue
            await self.pep.publish_item(owner, NATIVE, room, native, self._native_options(), origin=_ORIGIN)
        gone = [room for room in current if room not in wanted]
        if gone:
            await self.pep.retract_items(owner, NATIVE, gone, notify=True, origin=_ORIGIN)

    # ------------------------------------------------------------------ XEP-0049 (private storage)

    async def _private_get(self, owner: JID) -> etree._Element:
        return await self.storage(owner)

    async def _private_set(self, owner: JID, storage: etree._Element) -> None:
        if storage.tag != _L + "storage":
            raise StanzaError(Condition.BAD_REQUEST, "storage:bookmarks holds a <storage/> element")
        await self._replace_from_storage(owner, storage)
        await self._republish_legacy(owner)

    # ------------------------------------------------------------------ PEP both ways

    async def _on_pep(self, owner: JID, node: str, item_id: str, payload: etree._Element | None, origin: str) -> None:
        if origin == _ORIGIN:
            return
        try:
            if node == LEGACY and payload is not None and payload.tag == _L + "storage":
                await self._replace_from_storage(owner, payload)
            elif node == NATIVE:
                await self._republish_legacy(owner)
        except StanzaError as exc:
            log.info("bookmarks of %s not converted: %s", owner, exc)

    async def _republish_legacy(self, owner: JID) -> None:
        """Refresh the XEP-0048-in-PEP item when a legacy client uses that node."""
        if await self.pep.repo.node(owner.local or "", owner.domain, LEGACY) is None:
            return
        await self.pep.publish_item(owner, LEGACY, "current", await self.storage(owner), LEGACY_OPTIONS, origin=_ORIGIN)

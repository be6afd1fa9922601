"""XEP-0054: vcard-temp.

A user reads and replaces their own vCard (iq without 'to', or to their bare JID) and reads
anyone's by sending the get to that bare JID; the server answers on the account's behalf
(never forwarding to a resource). Per XEP-0054 (1.2) §3.1 a user without a vCard gets an
empty ``<vCard/>``; another account's missing vCard and a non-existent account both get
``item-not-found`` (§3.3: the same condition for both, against directory harvesting). Setting
anyone else's vCard is ``forbidden``; a vCard larger than ``[vcard] max_size`` bytes is
``not-acceptable``. The XML is stored as text.

Public API for other features (the avatar conversion, XEP-0398): ``async load(owner_bare)``
(the stored ``<vCard/>`` or None), ``async store(owner_bare, vcard_element, origin=)`` (size
checked as a client's set), ``add_listener(fn)``: ``await fn(owner_bare, vcard_element, origin)``
after every stored vCard (``origin`` 'client' for a client's set).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from lxml import etree

from ...config import AtLeast
from ...core.dispatch import IqRequest, Target
from ...core.feature import Feature, iq_handler
from ...errors import Condition, StanzaError
from ...jid import JID
from ...storage.accounts import AccountNotFound
from ...xml.builder import element
from .repository import SqlVCardRepository, VCardRepository

__all__ = ["VCARD", "VCard", "VCardOptions"]

VCARD = "vcard-temp"
_VCARD = f"{{{VCARD}}}vCard"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


@dataclass(frozen=True, slots=True)
class VCardOptions:
    # Largest vCard stored, in bytes of XML (photos included).
    max_size: Annotated[int, AtLeast(64)] = 65536


class VCard(Feature):
    name = "vcard"
    implements = ("XEP-0054",)
    disco_features = (VCARD,)
    Options = VCardOptions
    migrations = str(Path(__file__).parent / "migrations")

    repo: VCardRepository

    async def setup(self) -> None:
        self.repo = SqlVCardRepository(self.ctx.db)
        self._listeners: list[Callable[[JID, etree._Element, str], Awaitable[None]]] = []

    def add_listener(self, fn: Callable[[JID, etree._Element, str], Awaitable[None]]) -> Callable[[], None]:
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn)

    async def load(self, owner: JID) -> etree._Element | None:
        xml = await self.repo.get(owner.local or "", owner.domain)
        return None if xml is None else etree.fromstring(xml, _PARSER)

    async def store(self, owner: JID, vcard: etree._Element, *, origin: str) -> None:
        """Replace ``owner``'s vCard; ``StanzaError`` when too large or the account is gone."""
        xml = etree.tostring(vcard, encoding="unicode")
        size = len(xml.encode())
        if size > self.options.max_size:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"the vCard has {size} bytes; at most {self.options.max_size} are stored")
        try:
            await self.repo.set(owner.local or "", owner.domain, xml, datetime.fromtimestamp(self.ctx.clock.now(), UTC))
        except AccountNotFound:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "the account no longer exists") from None
        for fn in list(self._listeners):
            await fn(owner.bare, vcard, origin)

    @iq_handler("get", _VCARD, target=Target.BARE)
    async def get(self, req: IqRequest) -> etree._Element:
        owner = req.to.bare
        xml = await self.repo.get(owner.local or "", owner.domain)
        if xml is not None:
            return etree.fromstring(xml, _PARSER)
        if req.is_self:
            return element(_VCARD, default_ns=VCARD)
        raise StanzaError(Condition.ITEM_NOT_FOUND, f"no vCard for {owner}")

    @iq_handler("set", _VCARD, target=Target.BARE)
    async def set(self, req: IqRequest) -> None:
        if not req.is_self:
            raise StanzaError(Condition.FORBIDDEN, "you can only change your own vCard")
        await self.store(req.from_jid.bare, req.payload, origin="client")
        return None


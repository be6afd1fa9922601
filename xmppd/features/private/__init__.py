"""XEP-0049: Private XML Storage.

``<query xmlns='jabber:iq:private'>`` on the user's own account only (``forbidden`` for
anyone else's). Each child is stored under its namespace, one fragment per namespace; a get
names exactly one namespace and returns what is stored, or the empty element it asked with.
Namespaces ``jabber:*`` (including ``jabber:iq:private`` itself) are ``not-acceptable`` (§3);
a child without a namespace is ``bad-request``; a fragment larger than ``[private] max_size``
bytes or more than ``max_items`` namespaces per account is ``not-acceptable``.

Another feature may keep one namespace itself (``delegate(ns, get, set)``, returning its
removal): the bookmarks feature serves ``storage:bookmarks`` from PEP (XEP-0402 §5.3 /
XEP-0411), ``get(owner_bare) -> element`` and ``set(owner_bare, element)``.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from lxml import etree

from ...config import AtLeast, PositiveInt
from ...core.dispatch import IqRequest, Target
from ...core.feature import Feature, iq_handler
from ...errors import Condition, StanzaError
from ...jid import JID
from ...storage.accounts import AccountNotFound
from ...xml.builder import element
from .repository import MAX_NAMESPACE_LENGTH, PrivateFull, PrivateRepository, SqlPrivateRepository

__all__ = ["PRIVATE", "Private", "PrivateOptions"]

PRIVATE = "jabber:iq:private"
_QUERY = f"{{{PRIVATE}}}query"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


Getter = Callable[[JID], Awaitable[etree._Element]]
Setter = Callable[[JID, etree._Element], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PrivateOptions:
    # Largest fragment stored per namespace, in bytes of XML.
    max_size: Annotated[int, AtLeast(64)] = 65536
    # Namespaces one account may store.
    max_items: PositiveInt = 100


def _namespace(child: etree._Element) -> str:
    tag = child.tag
    if not isinstance(tag, str):
        raise StanzaError(Condition.BAD_REQUEST, "only elements can be stored")
    qn = etree.QName(child)
    nsuri = qn.namespace
    if not nsuri:
        raise StanzaError(Condition.BAD_REQUEST, f"<{qn.localname}/> needs a namespace of its own")
    if nsuri.startswith("jabber:"):
        raise StanzaError(Condition.NOT_ACCEPTABLE, f"the namespace {nsuri} is reserved (jabber:*) and cannot be stored")
    if len(nsuri) > MAX_NAMESPACE_LENGTH:
        raise StanzaError(Condition.NOT_ACCEPTABLE, f"namespaces longer than {MAX_NAMESPACE_LENGTH} characters cannot be stored")
    return nsuri


class Private(Feature):
    name = "private"
    implements = ("XEP-0049",)
    Options = PrivateOptions
    migrations = str(Path(__file__).parent / "migrations")

    repo: PrivateRepository

    async def setup(self) -> None:
        self.repo = SqlPrivateRepository(self.ctx.db)
        self._delegates: dict[str, tuple[Getter, Setter]] = {}

    def delegate(self, namespace: str, get: "Getter", set: "Setter") -> Callable[[], None]:
        """Serve ``namespace`` through ``get``/``set`` instead of the table."""
        self._delegates[namespace] = (get, set)

        def undo() -> None:
            self._delegates.pop(namespace, None)

        return undo

    @staticmethod
    def _own(req: IqRequest) -> tuple[str, str]:
        if not req.is_self:
            raise StanzaError(Condition.FORBIDDEN, "private storage belongs to its owner only")
        return req.from_jid.local or "", req.from_jid.domain

    @staticmethod
    def _children(req: IqRequest) -> list[etree._Element]:
        return [c for c in req.payload if isinstance(c.tag, str)]

    @iq_handler("get", _QUERY, target=Target.BARE)
    async def get(self, req: IqRequest) -> etree._Element:
        username, domain = self._own(req)
        children = self._children(req)
        if len(children) != 1:
            raise StanzaError(Condition.BAD_REQUEST, "a get names exactly one element to retrieve")
        nsuri = _namespace(children[0])
        result = element(_QUERY, default_ns=PRIVATE)
        if nsuri in self._delegates:
            result.append(await self._delegates[nsuri][0](req.from_jid.bare))
            return result
        xml = await self.repo.get(username, domain, nsuri)
        if xml is None:
            # Nothing stored: the empty element asked for comes back.
            etree.SubElement(result, children[0].tag, nsmap={None: nsuri})
        else:
            result.append(etree.fromstring(xml, _PARSER))
        return result

    @iq_handler("set", _QUERY, target=Target.BARE)
    async def set(self, req: IqRequest) -> None:
        username, domain = self._own(req)
        children = self._children(req)
        if not children:
            raise StanzaError(Condition.BAD_REQUEST, "a set carries at least one element to store")
        items: dict[str, str] = {}
        delegated: list[tuple[Setter, etree._Element]] = []
        seen: set[str] = set()
        for child in children:
            nsuri = _namespace(child)
            if nsuri in seen:
                raise StanzaError(Condition.BAD_REQUEST, f"two elements in the namespace {nsuri}: one per namespace")
            seen.add(nsuri)
            if nsuri in self._delegates:
                delegated.append((self._delegates[nsuri][1], child))
                continue
            xml = etree.tostring(child, encoding="unicode")
            size = len(xml.encode())
            if size > self.options.max_size:
                raise StanzaError(Condition.NOT_ACCEPTABLE, f"<{etree.QName(child).localname}/> has {size} bytes; at most {self.options.max_size} are stored")
            items[nsuri] = xml
        if items:
            try:
                await self.repo.set(username, domain, list(items.items()), self.options.max_items)
            except PrivateFull as exc:
                raise StanzaError(Condition.NOT_ACCEPTABLE, str(exc)) from None
            except AccountNotFound:
                raise StanzaError(Condition.ITEM_NOT_FOUND, "the account no longer exists") from None
        for setter, child in delegated:
            await setter(req.from_jid.bare, child)
        return None


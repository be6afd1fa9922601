"""XEP-0030: Service Discovery of the server, its services and its accounts.

Other features contribute: their class ``disco_features`` / ``account_disco_features``,
services via ``add_item``, and node handlers via ``add_node`` (ad-hoc commands use one).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from lxml import etree

from ..core.dispatch import IqRequest, Target
from ..core.feature import Feature, iq_handler
from ..errors import Condition, StanzaError
from ..jid import JID
from ..xml import ns
from ..xml.builder import element, sub

_INFO = f"{{{ns.DISCO_INFO}}}query"
_ITEMS = f"{{{ns.DISCO_ITEMS}}}query"


@dataclass(frozen=True, slots=True)
class Identity:
    category: str
    type: str
    name: str | None = None


@dataclass(slots=True)
class NodeInfo:
    identities: list[Identity] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    items: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (jid, node, name)
    forms: list[etree._Element] = field(default_factory=list)


# (requester, node) -> NodeInfo, or None when the node is not there for this requester
NodeHandler = Callable[[JID, str], Awaitable[NodeInfo | None]]
# (requester, owner) -> may the requester see the account's information?
AccountVisibility = Callable[[JID, JID], Awaitable[bool]]


class Disco(Feature):
    name = "disco"
    implements = ("XEP-0030",)
    disco_features = (ns.DISCO_INFO, ns.DISCO_ITEMS)
    account_disco_features = (ns.DISCO_INFO,)

    async def setup(self) -> None:
        self._items: dict[str, str | None] = {}
        self._nodes: dict[str, NodeHandler] = {}
        self._host_only: set[str] = set()  # nodes not answered on accounts' bare JIDs
        self._visibility: list[AccountVisibility] = []
        self._extended: list[Callable[[], etree._Element]] = []
        self._account_identities: list[Identity] = []

    # -- contributions from other features
    def add_item(self, jid: str, name: str | None = None) -> Callable[[], None]:
        self._items[jid] = name
        return lambda: self._items.pop(jid, None)  # type: ignore[func-returns-value]

    def add_node(self, node: str, handler: NodeHandler, *, on_accounts: bool = True) -> Callable[[], None]:
        """``on_accounts=False``: the node exists on the server domain only, not on accounts."""
        if node in self._nodes:
            raise ValueError(f"disco node {node} is already handled")
        self._nodes[node] = handler
        if not on_accounts:
            self._host_only.add(node)

        def remove() -> None:
            self._nodes.pop(node, None)
            self._host_only.discard(node)

        return remove

    def add_account_visibility(self, check: AccountVisibility) -> Callable[[], None]:
        """E.g. the roster lets subscribed contacts see an account's information."""
        self._visibility.append(check)
        return lambda: self._visibility.remove(check)

    def add_account_identity(self, identity: Identity) -> Callable[[], None]:
        """An identity every account's bare JID shows besides account/registered (PEP: pubsub/pep)."""
        self._account_identities.append(identity)
        return lambda: self._account_identities.remove(identity)

    def add_extended_info(self, make: Callable[[], etree._Element]) -> Callable[[], None]:
        """XEP-0128 forms on the server's info."""
        self._extended.append(make)
        return lambda: self._extended.remove(make)

    def server_features(self) -> list[str]:
        out: set[str] = set()
        for f in self.ctx.loaded_features():
            out.update(f.disco_features)
        return sorted(out)

    def account_features(self) -> list[str]:
        out: set[str] = set()
        for f in self.ctx.loaded_features():
            out.update(f.account_disco_features)
        return sorted(out)

    # -- handlers
    @iq_handler("get", _INFO)
    async def host_info(self, req: IqRequest) -> etree._Element:
        node = req.payload.get("node")
        if node:
            return await self._node(req, node, _INFO)
        info = NodeInfo([Identity("server", "im", self.ctx.config.server.name)], self.server_features())
        info.forms = [make() for make in self._extended]
        return info_element(info, None)

    @iq_handler("get", _ITEMS)
    async def host_items(self, req: IqRequest) -> etree._Element:
        node = req.payload.get("node")
        if node:
            return await self._node(req, node, _ITEMS)
        return items_element(NodeInfo(items=[(j, None, n) for j, n in sorted(self._items.items())]), None)

    @iq_handler("get", _INFO, target=Target.BARE)
    async def account_info(self, req: IqRequest) -> etree._Element:
        await self._check_visible(req)
        node = req.payload.get("node")
        if node:
            return await self._node(req, node, _INFO)
        return info_element(NodeInfo([Identity("account", "registered"), *self._account_identities], self.account_features()), None)

    @iq_handler("get", _ITEMS, target=Target.BARE)
    async def account_items(self, req: IqRequest) -> etree._Element:
        await self._check_visible(req)
        node = req.payload.get("node")
        if node:
            return await self._node(req, node, _ITEMS)
        return items_element(NodeInfo(), None)

    async def _check_visible(self, req: IqRequest) -> None:
        owner = req.to.bare
        if await self.ctx.accounts.get(owner.local or "", owner.domain) is None:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE, "no such account")
        if req.is_self or self.ctx.is_admin(req.from_jid):
            return
        for check in self._visibility:
            if await check(req.from_jid, owner):
                return
        # XEP-0030 §3.1 / RFC 6121 §8.5.1: not subscribed -> as if the account did not exist
        raise StanzaError(Condition.SERVICE_UNAVAILABLE, "not subscribed to this account")

    async def _node(self, req: IqRequest, node: str, which: str) -> etree._Element:
        handler = self._nodes.get(node)
        if req.to.local is not None and node in self._host_only:
            handler = None
        info = await handler(req.from_jid, node) if handler else None
        if info is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"no node {node!r}")
        return info_element(info, node) if which == _INFO else items_element(info, node)


def info_element(info: NodeInfo, node: str | None) -> etree._Element:
    """The disco#info ``<query/>`` for ``info`` (services answering disco themselves use it too)."""
    q = element(_INFO, default_ns=ns.DISCO_INFO)
    if node:
        q.set("node", node)
    for ident in info.identities:
        attrs = {"category": ident.category, "type": ident.type}
        if ident.name:
            attrs["name"] = ident.name
        sub(q, f"{{{ns.DISCO_INFO}}}identity", attrs)
    for var in info.features:
        sub(q, f"{{{ns.DISCO_INFO}}}feature", {"var": var})
    for form in info.forms:
        q.append(form)
    return q


def items_element(info: NodeInfo, node: str | None) -> etree._Element:
    """The disco#items ``<query/>`` for ``info``."""
    q = element(_ITEMS, default_ns=ns.DISCO_ITEMS)
    if node:
        q.set("node", node)
    for jid, inode, name in info.items:
        attrs = {"jid": jid}
        if inode:
            attrs["node"] = inode
        if name:
            attrs["name"] = name
        sub(q, f"{{{ns.DISCO_ITEMS}}}item", attrs)
    return q

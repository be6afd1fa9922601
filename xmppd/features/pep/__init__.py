"""XEP-0163: Personal Eventing Protocol (XEP-0060 PubSub on every account; XEP-0223 private nodes).

Every account is a PEP service at its bare JID. Nodes are created on first publish
(``#auto-create``) with the default configuration overlaid by the publish-options
(``#publish-options``); on an existing node every publish-option must equal the node's
configuration, else ``conflict`` + ``precondition-not-met``. Only the owner publishes,
retracts, creates, configures, purges and deletes; reading items is governed by the node's
``pubsub#access_model``: ``open`` (anyone), ``presence`` (the owner's presence subscribers, the
default), ``roster`` (contacts in ``roster_groups_allowed``), ``whitelist`` (the owner only:
XEP-0223 private storage is whitelist + ``persist_items``).

Notifications (XEP-0163 §4.3, filtered notifications): a published item, a retraction (when
``notify``), a purge and a deletion go, as ``headline`` messages from the owner's bare JID, to
the available resources of the owner and of the contacts the access model admits whose entity
capabilities (XEP-0115, ``xmppd.features.caps``) list ``<node>+notify``. A client's caps are
learnt once per verification string: when a session advertises a ver the server does not know,
the server asks that session's disco#info at ``node#ver``, checks the hash and keeps the
features (bounded, shared by every session with the same ver). When a session sends its initial
available presence, or changes its caps, it receives the last item of every node it is
interested in (``+notify``) of its own account and of every local contact whose presence it
receives (``send_last_published_item`` = ``on_sub_and_presence``).

Limits (``[pep]``): ``max_item_size`` bytes per item payload (``not-acceptable`` +
``payload-too-big``), ``max_items`` items per node (what ``pubsub#max_items`` = ``max`` means),
``max_nodes`` nodes per account (``not-allowed`` + ``max-nodes-exceeded`` ...).

Public API for other features (avatars, bookmarks): ``publish_item(owner, node, item_id,
payload, options, origin=)``, ``retract_items(owner, node, ids)``, ``get_items(owner, node)``,
``add_listener(fn)`` -- ``fn(owner, node, item_id, payload_or_None, origin)`` after every
publish (payload None: a retraction).

Not built: explicit subscriptions to PEP nodes (subscribe/unsubscribe answer
``feature-not-implemented`` + ``unsupported``), affiliations on PEP nodes (the owner alone),
collections, ``authorize``; notifications to other servers (there is no s2s).
"""
from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from lxml import etree

from ... import timestamps
from ...config import AtLeast, AtMost
from ...core import hooks as H
from ...core.dispatch import IqRequest, Target
from ...core.feature import Feature, hook, iq_handler
from ...core.hooks import Flow, Routed
from ...errors import Condition, StanzaError
from ...jid import JID
from ...storage.accounts import AccountNotFound
from ...xml import ns
from ...xml.builder import element, stanza, sub
from ..caps import CapsInfo
from .config import check_preconditions, config_form, configure, default_config, publish_options
from .const import EVENT, OWNER, PUBSUB, Q_OWNER, Q_PUBSUB, E, O, P, feature, node_name, pubsub_error
from .repository import MAX_ID_LENGTH, Item, NodeExists, NodeRecord, SqlPepRepository, TooManyNodes

if TYPE_CHECKING:
    from ...core.session import Session

__all__ = ["Pep", "PepOptions", "PUBSUB", "EVENT", "OWNER"]

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_DI = f"{{{ns.DISCO_INFO}}}"
Listener = Callable[[JID, str, str, "etree._Element | None", str], Awaitable[None]]
_LEARNT_KEY = "pep-last"  # session.data: the caps whose last items were delivered

PEP_FEATURES = tuple(feature(f) for f in (
    "access-open", "access-presence", "access-roster", "access-whitelist", "auto-create", "auto-subscribe",
    "config-node", "config-node-max", "create-and-configure", "create-nodes", "delete-items", "delete-nodes", "filtered-notifications",
    "item-ids", "last-published", "persistent-items", "presence-notifications", "publish", "publish-options",
    "purge-nodes", "retract-items", "retrieve-affiliations", "retrieve-default", "retrieve-items",
)) + (PUBSUB,)


@dataclass(frozen=True, slots=True)
class PepOptions:
    # Largest item payload stored or relayed, in bytes of XML.
    max_item_size: Annotated[int, AtLeast(1024), AtMost(1048576)] = 131072
    # Items one node keeps at most (what pubsub#max_items = max means).
    max_items: Annotated[int, AtLeast(1), AtMost(10000)] = 256
    # Nodes one account may have.
    max_nodes: Annotated[int, AtLeast(1), AtMost(10000)] = 128


class Pep(Feature):
    name = "pep"
    implements = ("XEP-0060", "XEP-0163", "XEP-0223")
    account_disco_features = PEP_FEATURES
    depends = ("disco", "roster", "caps")
    Options = PepOptions
    migrations = str(Path(__file__).parent / "migrations")

    repo: SqlPepRepository

    async def setup(self) -> None:
        from ..disco import Identity

        self.repo = SqlPepRepository(self.ctx.db)
        self.roster = self.ctx.feature("roster")
        self.caps = self.ctx.feature("caps").cache
        self._listeners: list[Listener] = []
        self._learning: dict[tuple[str, str], asyncio.Future[frozenset[str] | None]] = {}
        self.ctx.on_teardown(self.ctx.feature("disco").add_account_identity(Identity("pubsub", "pep")))
        # Notifications for sessions on other nodes: filtered by caps there (docs/cluster.md §3).
        self.ctx.on_teardown(self.ctx.router.add_stanza_check("pep-notify", self._wants_event))

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn)

    # ------------------------------------------------------------------ access

    async def _refusal(self, requester: JID, owner: JID, config: dict[str, Any]) -> StanzaError | None:
        """Why ``requester`` may not read ``owner``'s node with ``config`` (None: it may)."""
        if requester.bare == owner.bare:
            return None
        model = config.get("access_model", "presence")
        if model == "open":
            return None
        if model == "presence":
            if await self.roster.subscription(owner, requester.bare) in ("from", "both"):
                return None
            return StanzaError(Condition.NOT_AUTHORIZED, "only contacts who receive the owner's presence may read this node",
                               app=pubsub_error("presence-subscription-required"))
        if model == "roster":
            item = await self.roster.item(owner, requester.bare)
            allowed = set(config.get("roster_groups_allowed") or ())
            if item is not None and item.listed and allowed & set(item.groups):
                return None
            return StanzaError(Condition.NOT_AUTHORIZED, "only contacts in the allowed roster groups may read this node",
                               app=pubsub_error("not-in-roster-group"))
        return StanzaError(Condition.NOT_ALLOWED, "this node is private to its owner", app=pubsub_error("closed-node"))

    @staticmethod
    def _owner_only(req: IqRequest, what: str) -> JID:
        if not req.is_self:
            raise StanzaError(Condition.FORBIDDEN, f"only the owner of this PEP service may {what}")
        return req.from_jid.bare

    async def _node(self, owner: JID, node: str) -> NodeRecord:
        rec = await self.repo.node(owner.local or "", owner.domain, node)
        if rec is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"no node {node!r}")
        return rec

    def _keep(self, config: dict[str, Any]) -> int:
        return max(1, min(int(config.get("max_items", 1)), self.options.max_items))

    # ------------------------------------------------------------------ pubsub (entity use cases)

    @iq_handler("set", Q_PUBSUB, target=Target.BARE)
    async def pubsub_set(self, req: IqRequest) -> etree._Element | None:
        children = [c for c in req.payload if isinstance(c.tag, str)]
        verbs = [c for c in children if c.tag not in (P + "publish-options", P + "configure")]
        if len(verbs) != 1:
            raise StanzaError(Condition.BAD_REQUEST, "one pubsub action per request")
        verb = verbs[0]
        if verb.tag == P + "publish":
            return await self._publish(req, verb)
        if verb.tag == P + "retract":
            await self._retract(req, verb)
            return None
        if verb.tag == P + "create":
            return await self._create(req, verb)
        name = etree.QName(verb).localname
        if name in ("subscribe", "unsubscribe", "options"):
            raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, "PEP subscriptions follow presence (XEP-0163 §4); explicit ones are not offered",
                              app=pubsub_error("unsupported", "subscribe"))
        raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"<{name}/> is not supported",
                          app=pubsub_error("unsupported", name))

    @iq_handler("get", Q_PUBSUB, target=Target.BARE)
    async def pubsub_get(self, req: IqRequest) -> etree._Element:
        verb = next((c for c in req.payload if isinstance(c.tag, str)), None)
        if verb is None:
            raise StanzaError(Condition.BAD_REQUEST, "empty pubsub request")
        if verb.tag == P + "items":
            return await self._items(req, verb)
        if verb.tag == P + "affiliations":
            self._owner_only(req, "list affiliations")
            out = element(Q_PUBSUB, default_ns=PUBSUB)
            affs = sub(out, P + "affiliations")
            for rec in await self.repo.nodes(req.to.local or "", req.to.domain):
                sub(affs, P + "affiliation", {"node": rec.node, "affiliation": "owner"})
            return out
        name = etree.QName(verb).localname
        raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"<{name}/> is not supported", app=pubsub_error("unsupported", name))

    async def _publish(self, req: IqRequest, publish: etree._Element) -> etree._Element:
        owner = self._owner_only(req, "publish")
        node = node_name(publish)
        items = publish.findall(P + "item")
        if len(items) > 1:
            raise StanzaError(Condition.BAD_REQUEST, "publish one item per request", app=pubsub_error("invalid-payload"))
        item_el = items[0] if items else None
        payloads = [c for c in item_el if isinstance(c.tag, str)] if item_el is not None else []
        if len(payloads) > 1:
            raise StanzaError(Condition.BAD_REQUEST, "an item carries one payload element", app=pubsub_error("invalid-payload"))
        if not payloads:
            raise StanzaError(Condition.BAD_REQUEST, "the item needs a payload", app=pubsub_error("payload-required"))
        item_id = item_el.get("id") if item_el is not None else None
        if item_id is not None and (not item_id or len(item_id) > MAX_ID_LENGTH):
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"item ids have 1 to {MAX_ID_LENGTH} characters")
        po = req.payload.find(P + "publish-options")
        options = publish_options(po.find(f"{{{ns.DATA_FORMS}}}x") if po is not None else None, self.options.max_items)
        rec = await self.repo.node(owner.local or "", owner.domain, node)
        if rec is not None:
            check_preconditions(rec.config, options)
        item_id = await self.publish_item(owner, node, item_id, payloads[0], options, origin="client", publisher=req.from_jid)
        out = element(Q_PUBSUB, default_ns=PUBSUB)
        sub(sub(out, P + "publish", {"node": node}), P + "item", {"id": item_id})
        return out

    async def publish_item(
        self, owner: JID, node: str, item_id: str | None, payload: etree._Element, options: dict[str, Any], *,
        origin: str, publisher: JID | None = None,
    ) -> str:
        """Store and notify one item on ``owner``'s ``node`` (created with ``options`` when
        missing); returns the item id. Raises ``StanzaError`` on limits."""
        xml = etree.tostring(payload, encoding="unicode")
        size = len(xml.encode())
        if size > self.options.max_item_size:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"the payload has {size} bytes; at most {self.options.max_item_size} are accepted",
                              app=pubsub_error("payload-too-big"))
        if item_id is None:
            item_id = f"{self.ctx.rng.getrandbits(64):016x}"
        create_config = {**default_config(), **options}
        item = Item(item_id, xml, str((publisher or owner).bare), datetime.fromtimestamp(self.ctx.clock.now(), UTC))
        try:
            rec, _created, _dropped = await self.repo.publish(
                owner.local or "", owner.domain, node, create_config, item, self.options.max_items, self.options.max_nodes,
            )
        except TooManyNodes as exc:
            raise StanzaError(Condition.NOT_ALLOWED, str(exc), app=pubsub_error("max-nodes-exceeded")) from None
        except AccountNotFound:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "the account no longer exists") from None
        event = self._event(owner, rec.node)
        it = sub(sub(event[0], E + "items", {"node": rec.node}), E + "item", {"id": item_id, "publisher": item.publisher})
        if rec.config.get("deliver_payloads", True):
            it.append(copy.deepcopy(payload))
        await self._notify(owner, rec, event)
        for fn in list(self._listeners):
            await fn(owner, rec.node, item_id, payload, origin)
        return item_id

    async def _retract(self, req: IqRequest, retract: etree._Element) -> None:
        owner = self._owner_only(req, "retract items")
        node = node_name(retract)
        ids = [i.get("id") or "" for i in retract.findall(P + "item")]
        if not ids or not all(ids):
            raise StanzaError(Condition.BAD_REQUEST, "name the item to retract", app=pubsub_error("item-required"))
        notify = (retract.get("notify") or "").lower() in ("1", "true")
        await self.retract_items(owner, node, ids, notify=notify)
        return None

    async def retract_items(self, owner: JID, node: str, ids: list[str], *, notify: bool = True, origin: str = "client") -> None:
        rec = await self._node(owner, node)
        removed = await self.repo.retract(rec.id, ids)
        if not removed:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such item")
        if notify and rec.config.get("notify_retract", True):
            event = self._event(owner, node)
            items = sub(event[0], E + "items", {"node": node})
            for i in removed:
                sub(items, E + "retract", {"id": i})
            await self._notify(owner, rec, event)
        for i in removed:
            for fn in list(self._listeners):
                await fn(owner, node, i, None, origin)

    async def _create(self, req: IqRequest, create: etree._Element) -> etree._Element:
        owner = self._owner_only(req, "create nodes")
        node = node_name(create)
        config = default_config()
        conf = req.payload.find(P + "configure")
        x = conf.find(f"{{{ns.DATA_FORMS}}}x") if conf is not None else None
        if x is not None:
            config = configure(x, config, self.options.max_items)
        try:
            await self.repo.create(owner.local or "", owner.domain, node, config, self.options.max_nodes)
        except NodeExists:
            raise StanzaError(Condition.CONFLICT, f"the node {node!r} exists") from None
        except TooManyNodes as exc:
            raise StanzaError(Condition.NOT_ALLOWED, str(exc), app=pubsub_error("max-nodes-exceeded")) from None
        except AccountNotFound:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "the account no longer exists") from None
        out = element(Q_PUBSUB, default_ns=PUBSUB)
        sub(out, P + "create", {"node": node})
        return out

    async def _items(self, req: IqRequest, items_el: etree._Element) -> etree._Element:
        owner = req.to.bare
        node = node_name(items_el)
        rec = await self._node(owner, node)
        refusal = await self._refusal(req.from_jid, owner, rec.config)
        if refusal is not None:
            raise refusal
        ids = [i.get("id") or "" for i in items_el.findall(P + "item")]
        newest: int | None = None
        if items_el.get("max_items") is not None:
            raw = items_el.get("max_items") or ""
            if not raw.isdigit() or int(raw) < 1:
                raise StanzaError(Condition.BAD_REQUEST, "max_items is a positive integer")
            newest = int(raw)
        found = await self.repo.items(rec.id, ids or None, newest)
        if ids and not found:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such item")
        out = element(Q_PUBSUB, default_ns=PUBSUB)
        el = sub(out, P + "items", {"node": node})
        for it in found:
            item = sub(el, P + "item", {"id": it.id, "publisher": it.publisher})
            item.append(etree.fromstring(it.payload, _PARSER))
        return out

    async def get_items(self, owner: JID, node: str) -> list[tuple[str, etree._Element]]:
        """The items of ``owner``'s ``node`` oldest first (an empty list when there is no node)."""
        rec = await self.repo.node(owner.local or "", owner.domain, node)
        if rec is None:
            return []
        return [(it.id, etree.fromstring(it.payload, _PARSER)) for it in await self.repo.items(rec.id)]

    # ------------------------------------------------------------------ pubsub#owner

    @iq_handler("get", Q_OWNER, target=Target.BARE)
    async def owner_get(self, req: IqRequest) -> etree._Element:
        owner = self._owner_only(req, "read node configurations")
        verb = next((c for c in req.payload if isinstance(c.tag, str)), None)
        out = element(Q_OWNER, default_ns=OWNER)
        if verb is not None and verb.tag == O + "configure":
            node = node_name(verb)
            rec = await self._node(owner, node)
            sub(out, O + "configure", {"node": node}).append(config_form(rec.config, self.options.max_items).to_element())
            return out
        if verb is not None and verb.tag == O + "default":
            sub(out, O + "default").append(config_form(default_config(), self.options.max_items).to_element())
            return out
        name = etree.QName(verb).localname if verb is not None else "pubsub"
        raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"<{name}/> is not supported", app=pubsub_error("unsupported", name))

    @iq_handler("set", Q_OWNER, target=Target.BARE)
    async def owner_set(self, req: IqRequest) -> None:
        owner = self._owner_only(req, "manage nodes")
        verb = next((c for c in req.payload if isinstance(c.tag, str)), None)
        if verb is None:
            raise StanzaError(Condition.BAD_REQUEST, "empty pubsub#owner request")
        node = node_name(verb)
        rec = await self._node(owner, node)
        if verb.tag == O + "configure":
            x = verb.find(f"{{{ns.DATA_FORMS}}}x")
            if x is None:
                raise StanzaError(Condition.BAD_REQUEST, "the configuration form is missing")
            config = configure(x, rec.config, self.options.max_items)
            await self.repo.configure(rec.id, config, self._keep(config))
            return None
        if verb.tag == O + "purge":
            await self.repo.purge(rec.id)
            event = self._event(owner, node)
            sub(event[0], E + "purge", {"node": node})
            await self._notify(owner, rec, event)
            return None
        if verb.tag == O + "delete":
            event = self._event(owner, node)
            sub(event[0], E + "delete", {"node": node})
            recipients, bares = await self._recipients(owner, rec)
            await self.repo.delete(rec.id)
            if rec.config.get("notify_delete", True):
                self.ctx.router.fan_out_elsewhere(event, bares, "message", only_if="pep-notify")
                if recipients:
                    await self.ctx.router.fan_out(event, recipients, "message")
            return None
        name = etree.QName(verb).localname
        raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"<{name}/> is not supported", app=pubsub_error("unsupported", name))

    # ------------------------------------------------------------------ notifications

    def _event(self, owner: JID, node: str) -> etree._Element:
        msg = stanza("message", frm=str(owner.bare), type="headline", id=f"pep-{self.ctx.rng.getrandbits(64):016x}")
        msg.append(element(E + "event", default_ns=EVENT))
        return msg

    def _wants(self, session: "Session", node: str) -> bool:
        return self.caps.supports(session, node + "+notify") is True

    def _wants_event(self, session: "Session", event: etree._Element) -> bool:
        """The stanza check ``pep-notify``: ``session`` wants the notification ``event``."""
        ev = event.find(E + "event")
        child = next((c for c in ev if isinstance(c.tag, str)), None) if ev is not None else None
        node = child.get("node") if child is not None else None
        return node is not None and self._wants(session, node)

    async def _recipients(self, owner: JID, rec: NodeRecord) -> tuple[list[JID], list[JID]]:
        """Full JIDs of the available local resources the node notifies (caps-filtered), and
        the bare JIDs notified (their sessions on other nodes are filtered there)."""
        bares = [owner.bare]
        model = rec.config.get("access_model", "presence")
        if model in ("open", "presence"):
            bares += [c for c in await self.roster.subscribers(owner.bare) if c.domain == self.ctx.domain]
        elif model == "roster":
            allowed = set(rec.config.get("roster_groups_allowed") or ())
            for item in await self.roster.items(owner.bare):
                if item.subscription in ("from", "both") and allowed & set(item.groups):
                    j = JID.parse(item.contact)
                    if j.domain == self.ctx.domain:
                        bares.append(j)
        out: list[JID] = []
        for bare in bares:
            for s in self.ctx.sessions.of(bare):
                if s.available and s.jid is not None and self._wants(s, rec.node):
                    out.append(s.jid)
        return out, bares

    async def _notify(self, owner: JID, rec: NodeRecord, event: etree._Element) -> None:
        recipients, bares = await self._recipients(owner, rec)
        self.ctx.router.fan_out_elsewhere(event, bares, "message", only_if="pep-notify")
        if recipients:
            await self.ctx.router.fan_out(event, recipients, "message")

    # ------------------------------------------------------------------ caps and last items

    @hook(H.PRESENCE_BROADCAST, priority=150)
    async def on_presence(self, r: Routed) -> Flow:
        session = r.origin
        if session is None or session.jid is None or not session.available or r.stanza.get("type") is not None:
            if session is not None:
                session.data.pop(_LEARNT_KEY, None)
            return Flow.CONTINUE
        info = self.caps.of(session)
        if info is None or session.data.get(_LEARNT_KEY) == info:
            return Flow.CONTINUE
        session.data[_LEARNT_KEY] = info
        self.ctx.spawn(self._after_caps(session.jid, info), name="pep-last-items")
        return Flow.CONTINUE

    async def _after_caps(self, full: JID, info: CapsInfo) -> None:
        features = self.caps.features(info)
        if features is None:
            features = await self._learn(full, info)
        if not features or not any(f.endswith("+notify") for f in features):
            return  # interested in no node: nothing to look up
        await self._deliver_last(full, features)

    async def _learn(self, full: JID, info: CapsInfo) -> frozenset[str] | None:
        """Ask ``full`` its disco#info at ``node#ver`` (once per ver at a time) and verify it."""
        key = (info.hash or "", info.ver)
        pending = self._learning.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if len(self._learning) >= 256:
            return None
        fut: asyncio.Future[frozenset[str] | None] = asyncio.get_running_loop().create_future()
        self._learning[key] = fut
        result: frozenset[str] | None = None
        try:
            iq = stanza("iq", type="get", to=str(full), frm=self.ctx.domain)
            iq.append(element(_DI + "query", {"node": f"{info.node}#{info.ver}"}, default_ns=ns.DISCO_INFO))
            try:
                answer = await self.ctx.send_iq(iq, timeout=10)
            except (TimeoutError, StanzaError):
                answer = None
            query = answer.find(_DI + "query") if answer is not None and answer.get("type") == "result" else None
            if query is not None and self.caps.learn(info, query):
                result = self.caps.features(info)
        finally:
            del self._learning[key]
            fut.set_result(result)
        return result

    async def _deliver_last(self, full: JID, features: frozenset[str]) -> None:
        user = full.bare
        owners = [user] + [c for c in await self.roster.subscriptions(user) if c.domain == self.ctx.domain and c.local]
        rows = await self.repo.last_items([o.local or "" for o in owners], self.ctx.domain)
        for username, rec, item in rows:
            if rec.node + "+notify" not in features:
                continue
            if rec.config.get("send_last_published_item", "on_sub_and_presence") != "on_sub_and_presence":
                continue
            owner = JID(username, self.ctx.domain)
            if await self._refusal(user, owner, rec.config) is not None:
                continue
            msg = self._event(owner, rec.node)
            it = sub(sub(msg[0], E + "items", {"node": rec.node}), E + "item", {"id": item.id, "publisher": item.publisher})
            if rec.config.get("deliver_payloads", True):
                it.append(etree.fromstring(item.payload, _PARSER))
            sub(msg, f"{{{ns.DELAY}}}delay", {"stamp": timestamps.micros(item.published_at), "from": str(owner)})
            msg.set("to", str(full))
            await self.ctx.router.deliver_to(full, msg, "message")

"""XEP-0060: Publish-Subscribe, the generic service at ``pubsub.<domain>``.

Local users create nodes (``create``, optionally with a configuration form: they become the
node's owner; ``[pubsub] max_nodes_per_user`` each, server admins alike); the owner
configures (the XEP-0004 form of PEP's node configuration, access models ``open`` and
``whitelist``), purges, deletes and manages affiliations (``owner``, ``publisher``, ``member``,
``outcast``, ``none``; a node keeps at least one owner). Owners and publishers publish (with
publish-options preconditions) and retract; anyone the access model admits (``open``: all but
outcasts; ``whitelist``: owners, publishers and members) subscribes -- its own bare or full
JID only -- and retrieves items; the last item is sent on subscription when
``send_last_published_item`` is ``on_sub`` or ``on_sub_and_presence``. Notifications (items,
retractions with ``notify``, purge, deletion) go to every subscription, as ``headline``
messages from the service. ``subscriptions`` and ``affiliations`` list the requester's own;
``pubsub#owner`` ``subscriptions``/``affiliations`` list a node's for its owners. Disco: the
service (identity pubsub/service), its nodes (items: every open node; info per node: identity
pubsub/leaf and the node's configuration as a form).

Bounded: ``max_item_size`` bytes per item, ``max_items`` per node (``max``),
``max_subscriptions`` per node. An account's deletion removes its subscriptions and
affiliations, and the nodes it alone owned.

Not built: collection nodes, subscription options and approval (``authorize``), presence- and
roster-based access on the service, item expiry, notifications to other servers.
"""
from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from lxml import etree

from ...config import AtLeast, AtMost
from ...core.feature import Feature
from ...core.hooks import Routed
from ...errors import Condition, StanzaError
from ...jid import JID, JIDError
from ...xml import ns
from ...xml.builder import element, error_reply, iq_result, stanza, sub
from ..pep.config import check_preconditions, config_form, configure, default_config, publish_options
from ..pep.const import EVENT, OWNER, PUBSUB, Q_OWNER, Q_PUBSUB, E, O, P, feature, node_name, pubsub_error
from ..pep.repository import MAX_ID_LENGTH, Item, NodeExists, NodeRecord, TooManyNodes
from .repository import PubSubRepository, TooManySubscriptions

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ...storage.accounts import AccountDeletion

__all__ = ["PubSub", "PubSubOptions"]

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_DI = f"{{{ns.DISCO_INFO}}}"
_DIT = f"{{{ns.DISCO_ITEMS}}}"
_X = f"{{{ns.DATA_FORMS}}}x"
SERVICE_ACCESS = ("open", "whitelist")
AFFILIATIONS = ("owner", "publisher", "member", "none", "outcast")
SERVICE_FEATURES = tuple(feature(f) for f in (
    "access-open", "access-whitelist", "config-node", "config-node-max", "create-and-configure", "create-nodes", "delete-items",
    "delete-nodes", "instant-nodes", "item-ids", "last-published", "modify-affiliations", "persistent-items",
    "publish", "publish-options", "publisher-affiliation", "member-affiliation", "outcast-affiliation", "purge-nodes",
    "retract-items", "retrieve-affiliations", "retrieve-default", "retrieve-items", "retrieve-subscriptions",
    "subscribe",
)) + (PUBSUB, ns.DISCO_INFO, ns.DISCO_ITEMS)


@dataclass(frozen=True, slots=True)
class PubSubOptions:
    # The service's domain; empty: "pubsub." + server.domain.
    domain: str = ""
    # The service's name in service discovery.
    name: str = "Publish-Subscribe"
    # Largest item payload, in bytes of XML.
    max_item_size: Annotated[int, AtLeast(1024), AtMost(1048576)] = 65536
    # Items one node keeps at most (what pubsub#max_items = max means).
    max_items: Annotated[int, AtLeast(1), AtMost(10000)] = 100
    # Nodes one user may own.
    max_nodes_per_user: Annotated[int, AtLeast(0), AtMost(100000)] = 20
    # Subscriptions one node may have.
    max_subscriptions: Annotated[int, AtLeast(1), AtMost(1000000)] = 10000


class PubSub(Feature):
    name = "pubsub"
    implements = ("XEP-0060",)
    depends = ("disco",)
    Options = PubSubOptions
    migrations = str(Path(__file__).parent / "migrations")

    async def setup(self) -> None:
        self.domain = self.options.domain or f"pubsub.{self.ctx.domain}"
        self.repo = PubSubRepository(self.ctx.db)
        self.ctx.add_service(self.domain, self)
        self.ctx.on_teardown(self.ctx.feature("disco").add_item(self.domain, self.options.name))

    @classmethod
    async def delete_account_txn(cls, conn: "AsyncConnection", deletion: "AccountDeletion") -> Any:
        return await PubSubRepository.delete_account_txn(conn, deletion.jid)

    # ------------------------------------------------------------------ the service's door

    async def receive(self, r: Routed) -> None:
        typ = r.stanza.get("type")
        if r.kind != "iq" or typ not in ("get", "set"):
            if r.kind == "message" and typ != "error":
                await self.ctx.send(error_reply(r.stanza, StanzaError(Condition.SERVICE_UNAVAILABLE, "the pubsub service takes no messages")))
            return
        try:
            if r.to is not None and r.to.local is not None:
                raise StanzaError(Condition.SERVICE_UNAVAILABLE, "nodes are addressed with node='...' on the service")
            payload = next((c for c in r.stanza if isinstance(c.tag, str)), None)
            if payload is None:
                raise StanzaError(Condition.BAD_REQUEST, "an empty iq")
            result = await self._iq(r.from_jid, typ, payload)
        except StanzaError as err:
            await self.ctx.send(error_reply(r.stanza, err))
            return
        await self.ctx.send(iq_result(r.stanza, result))

    async def _iq(self, who: JID, typ: str, payload: etree._Element) -> etree._Element | None:
        tag = payload.tag
        if tag == _DI + "query" and typ == "get":
            return await self._disco_info(who, payload.get("node"))
        if tag == _DIT + "query" and typ == "get":
            return await self._disco_items(payload.get("node"))
        if tag == Q_PUBSUB:
            return await (self._pubsub_set(who, payload) if typ == "set" else self._pubsub_get(who, payload))
        if tag == Q_OWNER:
            return await (self._owner_set(who, payload) if typ == "set" else self._owner_get(who, payload))
        raise StanzaError(Condition.SERVICE_UNAVAILABLE, f"the pubsub service does not handle {tag}")

    # ------------------------------------------------------------------ helpers

    def _local_user(self, who: JID) -> None:
        if who.domain != self.ctx.domain or who.local is None:
            raise StanzaError(Condition.FORBIDDEN, "only users of this server may do this")

    async def _node(self, node: str) -> NodeRecord:
        rec = await self.repo.node(node)
        if rec is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, f"no node {node!r}")
        return rec

    async def _affiliation(self, rec: NodeRecord, who: JID) -> str:
        if self.ctx.is_admin(who):
            return "owner"
        return await self.repo.affiliation(rec.id, str(who.bare))

    async def _require(self, rec: NodeRecord, who: JID, allowed: tuple[str, ...], what: str) -> str:
        aff = await self._affiliation(rec, who)
        if aff not in allowed:
            raise StanzaError(Condition.FORBIDDEN, f"your affiliation ({aff}) does not allow you to {what}")
        return aff

    async def _may_read(self, rec: NodeRecord, who: JID) -> None:
        aff = await self._affiliation(rec, who)
        if aff == "outcast":
            raise StanzaError(Condition.FORBIDDEN, "you are banned from this node")
        if rec.config.get("access_model") == "whitelist" and aff not in ("owner", "publisher", "member"):
            raise StanzaError(Condition.NOT_ALLOWED, "this node is open to its members only", app=pubsub_error("closed-node"))

    def _keep(self, config: dict[str, Any]) -> int:
        return max(1, min(int(config.get("max_items", 1)), self.options.max_items))

    def _config(self, x: etree._Element | None, current: dict[str, Any]) -> dict[str, Any]:
        config = configure(x, current, self.options.max_items) if x is not None else current
        if config.get("access_model") not in SERVICE_ACCESS:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"the service offers the access models {', '.join(SERVICE_ACCESS)}")
        return config

    def _event(self) -> etree._Element:
        msg = stanza("message", frm=self.domain, type="headline", id=f"ps-{secrets.token_hex(8)}")
        msg.append(element(E + "event", default_ns=EVENT))
        return msg

    async def _notify(self, rec: NodeRecord, msg: etree._Element) -> None:
        targets = []
        for s in await self.repo.subscriptions(rec.id):
            try:
                targets.append(JID.parse(s.jid))
            except JIDError:
                continue
        if targets:
            await self.ctx.router.fan_out(msg, targets, "message")

    # ------------------------------------------------------------------ disco

    async def _disco_info(self, who: JID, node: str | None) -> etree._Element:
        q = element(_DI + "query", default_ns=ns.DISCO_INFO)
        if not node:
            sub(q, _DI + "identity", {"category": "pubsub", "type": "service", "name": self.options.name})
            for f in SERVICE_FEATURES:
                sub(q, _DI + "feature", {"var": f})
            return q
        rec = await self._node(node)
        q.set("node", node)
        sub(q, _DI + "identity", {"category": "pubsub", "type": "leaf"})
        sub(q, _DI + "feature", {"var": PUBSUB})
        form = config_form(rec.config, self.options.max_items, type="result").to_element()
        for field in form.iter(f"{{{ns.DATA_FORMS}}}field"):
            value = field.find(f"{{{ns.DATA_FORMS}}}value")
            if field.get("var") == "FORM_TYPE" and value is not None:
                value.text = PUBSUB + "#meta-data"
        q.append(form)
        return q

    async def _disco_items(self, node: str | None) -> etree._Element:
        q = element(_DIT + "query", default_ns=ns.DISCO_ITEMS)
        if node:
            rec = await self._node(node)
            q.set("node", node)
            if rec.config.get("access_model") == "open":
                for it in await self.repo.items(rec.id):
                    sub(q, _DIT + "item", {"jid": self.domain, "name": it.id})
            return q
        for rec in await self.repo.nodes():
            if rec.config.get("access_model") == "open":
                attrs = {"jid": self.domain, "node": rec.node}
                if rec.config.get("title"):
                    attrs["name"] = rec.config["title"]
                sub(q, _DIT + "item", attrs)
        return q

    # ------------------------------------------------------------------ pubsub

    async def _pubsub_set(self, who: JID, payload: etree._Element) -> etree._Element | None:
        verbs = [c for c in payload if isinstance(c.tag, str) and c.tag not in (P + "publish-options", P + "configure", P + "options")]
        if len(verbs) != 1:
            raise StanzaError(Condition.BAD_REQUEST, "one pubsub action per request")
        verb = verbs[0]
        if verb.tag == P + "create":
            return await self._create(who, verb, payload.find(P + "configure"))
        node = node_name(verb)
        rec = await self._node(node)
        if verb.tag == P + "publish":
            return await self._publish(who, rec, verb, payload.find(P + "publish-options"))
        if verb.tag == P + "retract":
            await self._require(rec, who, ("owner", "publisher"), "retract items")
            ids = [i.get("id") or "" for i in verb.findall(P + "item")]
            if not ids or not all(ids):
                raise StanzaError(Condition.BAD_REQUEST, "name the item to retract", app=pubsub_error("item-required"))
            removed = await self.repo.retract(rec.id, ids)
            if not removed:
                raise StanzaError(Condition.ITEM_NOT_FOUND, "no such item")
            if (verb.get("notify") or "").lower() in ("1", "true") and rec.config.get("notify_retract", True):
                msg = self._event()
                items = sub(msg[0], E + "items", {"node": node})
                for i in removed:
                    sub(items, E + "retract", {"id": i})
                await self._notify(rec, msg)
            return None
        if verb.tag == P + "subscribe":
            return await self._subscribe(who, rec, verb)
        if verb.tag == P + "unsubscribe":
            jid = self._subscriber(who, verb)
            if not await self.repo.unsubscribe(rec.id, jid):
                raise StanzaError(Condition.UNEXPECTED_REQUEST, "not subscribed", app=pubsub_error("not-subscribed"))
            return None
        name = etree.QName(verb).localname
        raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"<{name}/> is not supported", app=pubsub_error("unsupported", name))

    async def _create(self, who: JID, create: etree._Element, configure_el: etree._Element | None) -> etree._Element:
        self._local_user(who)
        node = create.get("node") or f"node-{secrets.token_hex(8)}"  # instant node
        if len(node) > MAX_ID_LENGTH:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"node names have at most {MAX_ID_LENGTH} characters")
        config = {**default_config(), "access_model": "open"}
        config = self._config(configure_el.find(_X) if configure_el is not None else None, config)
        limit = 1 << 30 if self.ctx.is_admin(who) else self.options.max_nodes_per_user
        try:
            await self.repo.create(node, config, str(who.bare), limit)
        except NodeExists:
            raise StanzaError(Condition.CONFLICT, f"the node {node!r} exists") from None
        except TooManyNodes as exc:
            raise StanzaError(Condition.NOT_ALLOWED, str(exc), app=pubsub_error("max-nodes-exceeded")) from None
        out = element(Q_PUBSUB, default_ns=PUBSUB)
        sub(out, P + "create", {"node": node})
        return out

    async def _publish(self, who: JID, rec: NodeRecord, publish: etree._Element, po: etree._Element | None) -> etree._Element:
        await self._require(rec, who, ("owner", "publisher"), "publish")
        items = publish.findall(P + "item")
        if len(items) != 1:
            raise StanzaError(Condition.BAD_REQUEST, "publish one item", app=pubsub_error("item-required" if not items else "invalid-payload"))
        payloads = [c for c in items[0] if isinstance(c.tag, str)]
        if len(payloads) != 1:
            raise StanzaError(Condition.BAD_REQUEST, "an item carries one payload element",
                              app=pubsub_error("payload-required" if not payloads else "invalid-payload"))
        check_preconditions(rec.config, publish_options(po.find(_X) if po is not None else None, self.options.max_items))
        xml = etree.tostring(payloads[0], encoding="unicode")
        if len(xml.encode()) > self.options.max_item_size:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"at most {self.options.max_item_size} bytes per item", app=pubsub_error("payload-too-big"))
        item_id = items[0].get("id") or secrets.token_hex(8)
        if len(item_id) > MAX_ID_LENGTH:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"item ids have at most {MAX_ID_LENGTH} characters")
        if rec.config.get("persist_items", True):
            await self.repo.publish(rec.id, Item(item_id, xml, str(who.bare), datetime.fromtimestamp(self.ctx.clock.now(), UTC)), self._keep(rec.config))
        msg = self._event()
        it = sub(sub(msg[0], E + "items", {"node": rec.node}), E + "item", {"id": item_id, "publisher": str(who.bare)})
        if rec.config.get("deliver_payloads", True):
            it.append(copy.deepcopy(payloads[0]))
        await self._notify(rec, msg)
        out = element(Q_PUBSUB, default_ns=PUBSUB)
        sub(sub(out, P + "publish", {"node": rec.node}), P + "item", {"id": item_id})
        return out

    @staticmethod
    def _subscriber(who: JID, verb: etree._Element) -> str:
        try:
            jid = JID.parse(verb.get("jid") or "")
        except JIDError:
            raise StanzaError(Condition.BAD_REQUEST, "the jid attribute is not a JID", app=pubsub_error("invalid-jid")) from None
        if jid.bare != who.bare:
            raise StanzaError(Condition.BAD_REQUEST, "subscribe your own JID", app=pubsub_error("invalid-jid"))
        return str(jid)

    async def _subscribe(self, who: JID, rec: NodeRecord, verb: etree._Element) -> etree._Element:
        jid = self._subscriber(who, verb)
        await self._may_read(rec, who)
        try:
            s = await self.repo.subscribe(rec.id, jid, str(who.bare), secrets.token_hex(8), self.options.max_subscriptions)
        except TooManySubscriptions as exc:
            raise StanzaError(Condition.NOT_ALLOWED, str(exc), app=pubsub_error("too-many-subscriptions")) from None
        if rec.config.get("send_last_published_item") in ("on_sub", "on_sub_and_presence"):
            last = await self.repo.items(rec.id, newest=1)
            if last:
                msg = self._event()
                it = sub(sub(msg[0], E + "items", {"node": rec.node}), E + "item", {"id": last[0].id, "publisher": last[0].publisher})
                it.append(etree.fromstring(last[0].payload, _PARSER))
                msg.set("to", jid)
                self.ctx.spawn(self.ctx.send(msg), name="pubsub-last-item")  # after the result
        out = element(Q_PUBSUB, default_ns=PUBSUB)
        sub(out, P + "subscription", {"node": rec.node, "jid": s.jid, "subid": s.subid, "subscription": "subscribed"})
        return out

    async def _pubsub_get(self, who: JID, payload: etree._Element) -> etree._Element:
        verb = next((c for c in payload if isinstance(c.tag, str)), None)
        out = element(Q_PUBSUB, default_ns=PUBSUB)
        if verb is not None and verb.tag == P + "items":
            rec = await self._node(node_name(verb))
            await self._may_read(rec, who)
            ids = [i.get("id") or "" for i in verb.findall(P + "item")]
            raw = verb.get("max_items")
            if raw is not None and (not raw.isdigit() or int(raw) < 1):
                raise StanzaError(Condition.BAD_REQUEST, "max_items is a positive integer")
            found = await self.repo.items(rec.id, ids or None, int(raw) if raw else None)
            el = sub(out, P + "items", {"node": rec.node})
            for it in found:
                sub(el, P + "item", {"id": it.id, "publisher": it.publisher}).append(etree.fromstring(it.payload, _PARSER))
            return out
        if verb is not None and verb.tag == P + "subscriptions":
            el = sub(out, P + "subscriptions")
            for s in await self.repo.subscriptions(bare=str(who.bare)):
                if not verb.get("node") or verb.get("node") == s.node:
                    sub(el, P + "subscription", {"node": s.node, "jid": s.jid, "subid": s.subid, "subscription": "subscribed"})
            return out
        if verb is not None and verb.tag == P + "affiliations":
            el = sub(out, P + "affiliations")
            for a in await self.repo.affiliations(jid=str(who.bare)):
                if not verb.get("node") or verb.get("node") == a.node:
                    sub(el, P + "affiliation", {"node": a.node, "affiliation": a.affiliation})
            return out
        name = etree.QName(verb).localname if verb is not None else "pubsub"
        raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"<{name}/> is not supported", app=pubsub_error("unsupported", name))

    # ------------------------------------------------------------------ pubsub#owner

    async def _owner_get(self, who: JID, payload: etree._Element) -> etree._Element:
        verb = next((c for c in payload if isinstance(c.tag, str)), None)
        out = element(Q_OWNER, default_ns=OWNER)
        if verb is not None and verb.tag == O + "default":
            sub(out, O + "default").append(config_form({**default_config(), "access_model": "open"}, self.options.max_items).to_element())
            return out
        if verb is None:
            raise StanzaError(Condition.BAD_REQUEST, "an empty pubsub#owner request")
        rec = await self._node(node_name(verb))
        await self._require(rec, who, ("owner",), "manage this node")
        if verb.tag == O + "configure":
            sub(out, O + "configure", {"node": rec.node}).append(config_form(rec.config, self.options.max_items).to_element())
        elif verb.tag == O + "affiliations":
            el = sub(out, O + "affiliations", {"node": rec.node})
            for a in await self.repo.affiliations(node_id=rec.id):
                sub(el, O + "affiliation", {"jid": a.jid, "affiliation": a.affiliation})
        elif verb.tag == O + "subscriptions":
            el = sub(out, O + "subscriptions", {"node": rec.node})
            for s in await self.repo.subscriptions(node_id=rec.id):
                sub(el, O + "subscription", {"jid": s.jid, "subscription": "subscribed", "subid": s.subid})
        else:
            name = etree.QName(verb).localname
            raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"<{name}/> is not supported", app=pubsub_error("unsupported", name))
        return out

    async def _owner_set(self, who: JID, payload: etree._Element) -> None:
        verb = next((c for c in payload if isinstance(c.tag, str)), None)
        if verb is None:
            raise StanzaError(Condition.BAD_REQUEST, "an empty pubsub#owner request")
        rec = await self._node(node_name(verb))
        await self._require(rec, who, ("owner",), "manage this node")
        if verb.tag == O + "configure":
            x = verb.find(_X)
            if x is None:
                raise StanzaError(Condition.BAD_REQUEST, "the configuration form is missing")
            config = self._config(x, rec.config)
            await self.repo.configure(rec.id, config, self._keep(config))
        elif verb.tag == O + "purge":
            await self.repo.purge(rec.id)
            msg = self._event()
            sub(msg[0], E + "purge", {"node": rec.node})
            await self._notify(rec, msg)
        elif verb.tag == O + "delete":
            msg = self._event()
            sub(msg[0], E + "delete", {"node": rec.node})
            if rec.config.get("notify_delete", True):
                await self._notify(rec, msg)
            await self.repo.delete(rec.id)
        elif verb.tag == O + "affiliations":
            changes = []
            for a in verb.findall(O + "affiliation"):
                aff = a.get("affiliation") or ""
                if aff not in AFFILIATIONS:
                    raise StanzaError(Condition.BAD_REQUEST, f"{aff!r} is not an affiliation")
                try:
                    changes.append((str(JID.parse(a.get("jid") or "").bare), aff))
                except JIDError:
                    raise StanzaError(Condition.JID_MALFORMED, f"{a.get('jid')!r} is not a JID") from None
            try:
                await self.repo.set_affiliations(rec.id, changes)
            except ValueError as exc:
                raise StanzaError(Condition.NOT_ACCEPTABLE, str(exc)) from None
        elif verb.tag == O + "subscriptions":
            for s in verb.findall(O + "subscription"):
                if s.get("subscription") != "none":
                    raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, "owners may only end subscriptions (subscription='none')",
                                      app=pubsub_error("unsupported", "manage-subscriptions"))
                await self.repo.unsubscribe(rec.id, s.get("jid") or "")
        else:
            name = etree.QName(verb).localname
            raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"<{name}/> is not supported", app=pubsub_error("unsupported", name))
        return None

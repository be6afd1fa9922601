"""REST API: customer service (``/cs``), registered by the feature (docs/customer-service.md).

Queues and their members are written through the feature's own ``put_queue``,
``delete_queue`` and ``set_member`` (the ``<queue/>`` and ``<member/>`` of the iq protocol,
built here as its admin commands build them), so the same checks, storage and dispatching
apply; a chat is closed with ``close`` under the feature's lock, as a supervisor would. Reads
come from the feature's live state (agents' status and load, chats in line and active) and
its repository (history with ratings, transcripts, tickets).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lxml import etree

from xmppd.api.framework import (
    JID_SCHEMA,
    ApiRequest,
    Operation,
    from_stanza_error,
    not_found,
    obj,
    page_query,
    page_schema,
    paged,
    xml_text,
)
from xmppd.errors import StanzaError
from xmppd.timestamps import optional

from .protocol import q
from .repository import ROLES, STRATEGIES, QueueRecord, SessionRecord

if TYPE_CHECKING:
    from .feature import CustomerService

QUEUE_NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}
CHAT_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"}



def chat_json(s: SessionRecord) -> dict[str, Any]:
    return {
        "id": s.id, "queue": s.queue, "entry": s.entry, "visitor": s.visitor, "state": s.state, "agent": s.agent,
        "created_at": optional(s.created_at), "assigned_at": optional(s.assigned_at), "closed_at": optional(s.closed_at),
        "close_reason": s.close_reason, "rating": s.rating, "comment": s.comment,
    }


def operations(cs: "CustomerService") -> list[Operation]:
    max_page = cs.ctx.config.api.max_page

    def queue_of(req: ApiRequest) -> QueueRecord:
        qr = cs.queues.get(req.params["queue"])
        if qr is None:
            raise not_found("queue_not_found", f"no queue {req.params['queue']}")
        return qr

    def queue_json(qr: QueueRecord) -> dict[str, Any]:
        line = cs.line(qr.name)
        return {
            "name": qr.name, "jid": cs.queue_jid(qr.name), "display_name": qr.display_name, "welcome": qr.welcome,
            "offline": qr.offline_text, "strategy": qr.strategy, "capacity": qr.capacity, "idle_timeout": qr.idle_timeout,
            "offer_timeout": qr.offer_timeout, "max_misses": qr.max_misses, "hours": qr.hours,
            "waiting": len(line), "active": sum(1 for s in cs.open.values() if s.queue == qr.name and s.state == "active"),
        }

    async def list_queues(req: ApiRequest) -> Any:
        return paged([queue_json(cs.queues[n]) for n in sorted(cs.queues)], req)

    async def put_queue(req: ApiRequest) -> Any:
        b = req.body
        el = etree.Element(q("queue"), {"name": req.params["queue"]})
        for key in ("display_name", "strategy", "capacity", "idle_timeout", "offer_timeout", "max_misses", "hours"):
            if key in b:
                el.set(key.replace("_", "-"), str(b[key]))
        for key in ("welcome", "offline"):
            if key in b:
                etree.SubElement(el, q(key)).text = b[key]
        try:
            await cs.put_queue(el)
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return queue_json(cs.queues[req.params["queue"]])

    async def delete_queue(req: ApiRequest) -> Any:
        queue_of(req)
        try:
            await cs.delete_queue(req.params["queue"])
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return None

    async def members(req: ApiRequest) -> Any:
        qr = queue_of(req)
        out = []
        for jid, m in sorted(cs.members.get(qr.name, {}).items()):
            agent = cs.agents.get(jid)
            out.append({"jid": jid, "role": m.role, "nick": m.nick,
                        "status": agent.status(qr.name) if agent is not None else "offline", "load": cs.load(jid)})
        return {"items": out}

    async def set_member(req: ApiRequest) -> Any:
        qr = queue_of(req)
        b = req.body
        el = etree.Element(q("member"), {"jid": req.params["jid"], "role": b["role"], "nick": b.get("nick", "")})
        try:
            await cs.set_member(qr, el)
        except StanzaError as err:
            raise from_stanza_error(err) from None
        m = cs.members.get(qr.name, {}).get(req.params["jid"])
        return {"jid": req.params["jid"], "role": m.role if m is not None else "none", "nick": m.nick if m is not None else ""}

    async def chats(req: ApiRequest) -> Any:
        queue = req.query.get("queue")
        if queue is not None and queue not in cs.queues:
            raise not_found("queue_not_found", f"no queue {queue}")
        found = sorted((s for s in cs.open.values() if queue is None or s.queue == queue), key=lambda s: (s.created_at, s.id))
        return paged([chat_json(s) for s in found], req)

    async def close_chat(req: ApiRequest) -> Any:
        async with cs.locked():
            s = cs.open.get(req.params["id"])
            if s is None or s.state == "closed":
                raise not_found("chat_not_found", f"no open chat {req.params['id']}")
            await cs.close(s, "supervisor")
        return None

    async def history(req: ApiRequest) -> Any:
        qr = queue_of(req)
        rows = await cs.repo.sessions(qr.name, req.query.get("visitor"), limit=req.query["limit"])
        return {"items": [chat_json(s) for s in rows]}

    async def transcript(req: ApiRequest) -> Any:
        s = cs.open.get(req.params["id"]) or await cs.repo.get_session(req.params["id"])
        if s is None:
            raise not_found("chat_not_found", f"no chat {req.params['id']}")
        lines = await cs.repo.transcript(s.id)
        return {"chat": chat_json(s), "lines": [
            {"at": optional(line.at), "role": line.role, "nick": line.nick, "body": line.body} for line in lines
        ]}

    async def tickets(req: ApiRequest) -> Any:
        qr = queue_of(req)
        rows = await cs.repo.tickets(qr.name, limit=req.query["limit"])
        return {"items": [{"id": t.id, "queue": t.queue, "visitor": t.visitor, "body": t.body, "created_at": optional(t.created_at)}
                          for t in rows]}

    qp = {"queue": QUEUE_NAME}
    limit = {"limit": page_query(max_page)["limit"]}
    items = obj({"items": {"type": "array", "items": {"type": "object"}}}, ["items"])
    queue_body = obj({
        "display_name": xml_text(191, min_length=1), "welcome": xml_text(4096), "offline": xml_text(4096),
        "strategy": {"type": "string", "enum": list(STRATEGIES)}, "capacity": {"type": "integer", "minimum": 1, "maximum": 1000},
        "idle_timeout": {"type": "integer", "minimum": 0, "maximum": 7 * 86400},
        "offer_timeout": {"type": "integer", "minimum": 0, "maximum": 3600},
        "max_misses": {"type": "integer", "minimum": 0, "maximum": 1000},
        "hours": {"type": "string", "maxLength": 200, "pattern": "^([0-9]{2}:[0-9]{2}-[0-9]{2}:[0-9]{2}(,[0-9]{2}:[0-9]{2}-[0-9]{2}:[0-9]{2})*)?$"},
    })
    return [
        Operation("GET", "/cs/queues", list_queues, "Queues with their settings and lines", "customer-service", "listCsQueues",
                  response=page_schema({"type": "object"}), query=page_query(max_page)),
        Operation("PUT", "/cs/queues/{queue}", put_queue, "Create or update a queue (absent settings kept)",
                  "customer-service", "putCsQueue", body=queue_body, response={"type": "object"}, params=qp),
        Operation("DELETE", "/cs/queues/{queue}", delete_queue, "Delete a queue without open chats", "customer-service",
                  "deleteCsQueue", status=204, params=qp, errors=(404, 409)),
        Operation("GET", "/cs/queues/{queue}/members", members, "Agents and supervisors with status and load",
                  "customer-service", "listCsMembers", response=items, params=qp, errors=(404,)),
        Operation("PUT", "/cs/queues/{queue}/members/{jid}", set_member, "Make an account an agent or supervisor (role none: remove)",
                  "customer-service", "setCsMember",
                  body=obj({"role": {"type": "string", "enum": [*ROLES, "none"]}, "nick": xml_text(191)}, ["role"]),
                  response=obj({"jid": {"type": "string"}, "role": {"type": "string"}, "nick": {"type": "string"}}, ["jid", "role", "nick"]),
                  params={**qp, "jid": JID_SCHEMA}, errors=(404,)),
        Operation("GET", "/cs/chats", chats, "Open chats (waiting, offered, active)", "customer-service", "listCsChats",
                  response=page_schema({"type": "object"}), query={**page_query(max_page), "queue": QUEUE_NAME}, errors=(404,)),
        Operation("POST", "/cs/chats/{id}/close", close_chat, "Close an open chat (as a supervisor)", "customer-service",
                  "closeCsChat", status=204, params={"id": CHAT_ID}, errors=(404,)),
        Operation("GET", "/cs/chats/{id}/transcript", transcript, "A chat and its transcript", "customer-service",
                  "getCsTranscript", response=obj({"chat": {"type": "object"}, "lines": {"type": "array"}}, ["chat", "lines"]),
                  params={"id": CHAT_ID}, errors=(404,)),
        Operation("GET", "/cs/queues/{queue}/history", history, "Chats of a queue, newest first, with ratings",
                  "customer-service", "listCsHistory", response=items, params=qp, query={**limit, "visitor": JID_SCHEMA},
                  errors=(404,)),
        Operation("GET", "/cs/queues/{queue}/tickets", tickets, "Tickets left while no agent was there", "customer-service",
                  "listCsTickets", response=items, params=qp, query=limit, errors=(404,)),
    ]

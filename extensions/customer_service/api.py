"""REST API: customer service (``/cs``), registered by the feature (docs/customer-service.md).

Queues and their members are written through the feature's own ``put_queue``,
``delete_queue`` and ``set_member`` (the ``<queue/>`` and ``<member/>`` of the iq protocol,
built here as its admin commands build them), so the same checks, storage and dispatching
apply; a chat is closed with ``close`` under the feature's lock, as a supervisor would. Reads
come from the feature's live state (agents' status and load, chats in line and active) and
its repository (history with ratings, transcripts, tickets).

In a cluster (docs/cluster.md §5) every node answers the same: queues, members and open chats
are read from storage (the queue's owner writes every change through), an agent's load is
their offered and active chats in every queue; a queue or member change is written to storage
by the node that gets it and its owner reads the queue again (``QueueCluster.reload``); closing
a chat is applied by its queue's owner (the request is forwarded there as a supervisor's
``close`` would be). An agent's status is what the answering node knows (the owner's memory).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lxml import etree

from xmppd.api.framework import (
    JID_SCHEMA,
    ApiRequest,
    Operation,
    bad_request,
    from_stanza_error,
    not_found,
    obj,
    page,
    page_query,
    page_schema,
    paged,
    xml_text,
)
from xmppd.errors import StanzaError
from xmppd.jid import JID
from xmppd.timestamps import optional

from . import prechat
from .canned import MAX_TEXT
from .iqs import daily_report
from .protocol import q
from .repository import ROLES, STRATEGIES, QueueRecord, SessionRecord, Ticket

if TYPE_CHECKING:
    from .service import CsService

QUEUE_NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}
CHAT_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"}
TICKET_ID = {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}
CANNED_NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}
SKILLS = {"type": "string", "maxLength": 600, "pattern": "^[a-z0-9_. -]*$"}  # up to 16 names (checked by the feature)
DATE = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
ACCOUNT = {**JID_SCHEMA, "maxLength": 191}



def chat_json(s: SessionRecord) -> dict[str, Any]:
    return {
        "id": s.id, "queue": s.queue, "entry": s.entry, "visitor": s.visitor, "state": s.state, "agent": s.agent,
        "created_at": optional(s.created_at), "assigned_at": optional(s.assigned_at), "closed_at": optional(s.closed_at),
        "close_reason": s.close_reason, "rating": s.rating, "comment": s.comment, "skills": s.skills,
        "answers": [{"var": a.var, "label": a.label, "value": a.value} for a in prechat.answers_loads(s.answers)],
    }


def operations(cs: "CsService") -> list[Operation]:
    max_page = cs.ctx.config.api.max_page

    def clustered() -> bool:  # joined after the operations were registered
        return cs.cluster is not None

    async def queue_of(req: ApiRequest) -> QueueRecord:
        name = req.params["queue"]
        qr = await cs.repo.get_queue(name) if clustered() and not cs.owns(name) else cs.queues.get(name)
        if qr is None:
            raise not_found("queue_not_found", f"no queue {req.params['queue']}")
        return qr

    async def members_from_storage(qr: QueueRecord) -> None:
        """In a cluster, on a node not holding ``qr``: its members as storage has them, for the
        role checks of the tickets and canned replies done here."""
        cluster = cs.cluster
        if cluster is not None and not cs.owns(qr.name):
            await cluster.learn_queue(qr.name)

    async def open_chats(queue: str | None = None) -> list[SessionRecord]:
        """The open chats (of ``queue``): in a cluster as storage has them, every queue's."""
        if clustered():
            return await cs.repo.open_sessions(queue)
        return [s for s in cs.open.values() if queue is None or s.queue == queue]

    def queue_json(qr: QueueRecord, chats: list[SessionRecord]) -> dict[str, Any]:
        mine = [s for s in chats if s.queue == qr.name]
        return {
            "name": qr.name, "jid": cs.queue_jid(qr.name), "display_name": qr.display_name, "welcome": qr.welcome,
            "offline": qr.offline_text, "strategy": qr.strategy, "capacity": qr.capacity, "idle_timeout": qr.idle_timeout,
            "offer_timeout": qr.offer_timeout, "max_misses": qr.max_misses, "hours": qr.hours,
            "timezone": qr.timezone, "holidays": qr.holidays, "skills": qr.skills, "prechat": prechat.as_json(prechat.loads(qr.prechat)),
            "waiting": sum(1 for s in mine if s.state in ("waiting", "offered")), "active": sum(1 for s in mine if s.state == "active"),
        }

    async def list_queues(req: ApiRequest) -> Any:
        queues = await cs.repo.list_queues() if clustered() else [cs.queues[n] for n in sorted(cs.queues)]
        chats = await open_chats()
        return paged([queue_json(qr, chats) for qr in queues], req)

    async def put_queue(req: ApiRequest) -> Any:
        b = req.body
        el = etree.Element(q("queue"), {"name": req.params["queue"]})
        for key in ("display_name", "strategy", "capacity", "idle_timeout", "offer_timeout", "max_misses", "hours",
                    "timezone", "holidays", "skills"):
            if key in b:
                el.set(key.replace("_", "-"), str(b[key]))
        for key in ("welcome", "offline"):
            if key in b:
                etree.SubElement(el, q(key)).text = b[key]
        try:
            if "prechat" in b:  # null or no fields: no form
                form = prechat.definition(b["prechat"])
                el.append(prechat.definition_element(form) if form else etree.Element(q("prechat")))
            await cs.admin.put_queue(el)
        except StanzaError as err:
            raise from_stanza_error(err) from None
        qr = await queue_of(req)
        return queue_json(qr, await open_chats(qr.name))

    async def delete_queue(req: ApiRequest) -> Any:
        await queue_of(req)
        try:
            await cs.admin.delete_queue(req.params["queue"])
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return None

    async def members(req: ApiRequest) -> Any:
        qr = await queue_of(req)
        if clustered():
            listed = {m.jid: m for m in await cs.repo.members(qr.name)}
            loads: dict[str, int] = {}
            for s in await cs.repo.open_sessions():
                if s.agent and s.state in ("offered", "active"):
                    loads[s.agent] = loads.get(s.agent, 0) + 1
        else:
            listed, loads = cs.members.get(qr.name, {}), {}
        out = []
        for jid, m in sorted(listed.items()):
            agent = cs.agents.get(jid)
            out.append({"jid": jid, "role": m.role, "nick": m.nick, "skills": m.skills,
                        "status": agent.status(qr.name) if agent is not None else "offline",
                        "load": loads.get(jid, 0) if clustered() else cs.load(jid)})
        return {"items": out}

    async def set_member(req: ApiRequest) -> Any:
        qr = await queue_of(req)
        b = req.body
        el = etree.Element(q("member"), {"jid": req.params["jid"], "role": b["role"], "nick": b.get("nick", ""), "skills": b.get("skills", "")})
        try:
            await cs.admin.set_member(qr, el)
        except StanzaError as err:
            raise from_stanza_error(err) from None
        m = next((m for m in await cs.repo.members(qr.name) if m.jid == req.params["jid"]), None) if clustered() \
            else cs.members.get(qr.name, {}).get(req.params["jid"])
        return {"jid": req.params["jid"], "role": m.role if m is not None else "none", "nick": m.nick if m is not None else "",
                "skills": m.skills if m is not None else ""}

    async def chats(req: ApiRequest) -> Any:
        queue = req.query.get("queue")
        if queue is not None and (await cs.repo.get_queue(queue) is None if clustered() else queue not in cs.queues):
            raise not_found("queue_not_found", f"no queue {queue}")
        found = sorted(await open_chats(queue), key=lambda s: (s.created_at, s.id))
        return paged([chat_json(s) for s in found], req)

    async def close_chat(req: ApiRequest) -> Any:
        cluster = cs.cluster
        if cluster is not None and req.params["id"] not in cs.open:  # its queue's owner closes it
            stored = await cs.repo.get_session(req.params["id"])
            if stored is None or stored.state == "closed":
                raise not_found("chat_not_found", f"no open chat {req.params['id']}")
            await cluster.close_chat(stored.id)
            return None
        async with cs.locked():
            s = cs.open.get(req.params["id"])
            if s is None or s.state == "closed":
                raise not_found("chat_not_found", f"no open chat {req.params['id']}")
            await cs.close(s, "supervisor")
        return None

    async def history(req: ApiRequest) -> Any:
        qr = await queue_of(req)
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

    async def ticket_json(t: Ticket) -> dict[str, Any]:
        return {"id": t.id, "queue": t.queue, "visitor": t.visitor, "body": t.body, "created_at": optional(t.created_at),
                "state": t.state, "assignee": t.assignee, "closed_at": optional(t.closed_at),
                "replies": [{"agent": r.agent, "at": optional(r.at), "body": r.body} for r in await cs.repo.ticket_replies(t.id)]}

    async def tickets(req: ApiRequest) -> Any:
        qr = await queue_of(req)
        rows = await cs.repo.tickets(qr.name, limit=req.query["limit"], state=req.query.get("state"), offset=req.query["offset"])
        return page([await ticket_json(t) for t in rows], req)

    def member_jid(value: str) -> JID:
        try:
            return JID.parse(value).bare
        except ValueError:
            raise bad_request("invalid_request", f"{value!r} is not a JID") from None

    def ticket_step(step: str) -> Any:
        async def handler(req: ApiRequest) -> Any:
            return await ticket_do(req, step)

        return handler

    async def ticket_do(req: ApiRequest, step: str) -> Any:
        """reply / assign / close, in the name of ``by`` (an agent or supervisor of the queue):
        the same checks and the same notice to the visitor as over XMPP (§5.1)."""
        qr = await queue_of(req)
        await members_from_storage(qr)
        b, tid = req.body, req.params["id"]
        try:
            if step == "reply":
                await cs.tickets.reply(qr.name, tid, member_jid(b["by"]), b["text"])
            elif step == "assign":
                await cs.tickets.assign(qr.name, tid, member_jid(b.get("by") or b["agent"]), b["agent"])
            else:
                await cs.tickets.close(qr.name, tid, member_jid(b["by"]))
        except StanzaError as err:
            raise from_stanza_error(err) from None
        t = await cs.repo.get_ticket(int(tid))
        assert t is not None
        return await ticket_json(t)

    async def canned_list(req: ApiRequest) -> Any:
        qr = await queue_of(req)
        owner = req.query.get("owner")
        listed = [m.jid for m in await cs.repo.members(qr.name)] if clustered() else list(cs.members.get(qr.name, {}))
        owners = ("",) + tuple(sorted(listed)) if owner is None else (owner if owner != "shared" else "",)
        rows = await cs.repo.canned(qr.name, owners)
        return paged([{"name": c.name, "owner": c.owner or None, "text": c.text} for c in rows], req)

    def canned_owner(qr: QueueRecord, owner: str | None) -> str:
        if owner is None:
            return ""
        if cs.role(qr.name, owner) != "agent":
            raise not_found("not_an_agent", f"{owner} is not an agent of {qr.name}")
        return owner

    async def put_canned(req: ApiRequest) -> Any:
        qr = await queue_of(req)
        await members_from_storage(qr)
        owner = canned_owner(qr, req.body.get("owner"))
        try:
            await cs.canned.store(qr.name, owner, req.params["name"], req.body["text"])
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return {"name": req.params["name"], "owner": owner or None, "text": req.body["text"].strip()}

    async def delete_canned(req: ApiRequest) -> Any:
        qr = await queue_of(req)
        await members_from_storage(qr)
        owner = canned_owner(qr, req.query.get("owner"))
        if not await cs.repo.delete_canned(qr.name, owner, req.params["name"]):
            raise not_found("canned_not_found", f"no canned reply {req.params['name']}")
        return None

    async def report(req: ApiRequest) -> Any:
        qr = await queue_of(req)
        try:
            first, last, rows = await daily_report(cs, qr, req.query.get("from"), req.query.get("to"))
        except StanzaError as err:
            raise from_stanza_error(err) from None
        return {"queue": qr.name, "from": first.isoformat(), "to": last.isoformat(), "timezone": qr.timezone, "days": [
            {"date": day, "agent": agent or None, "chats": chats, "rated": rated,
             "satisfaction": None if rating is None else round(rating, 2), "average_wait": None if wait is None else round(wait, 1)}
            for day, agent, chats, rated, rating, wait in rows
        ]}

    qp = {"queue": QUEUE_NAME}
    limit = {"limit": page_query(max_page)["limit"]}
    items = obj({"items": {"type": "array", "items": {"type": "object"}}}, ["items"])
    queue_body = obj({
        "display_name": xml_text(191, min_length=1), "welcome": xml_text(4096), "offline": xml_text(4096),
        "strategy": {"type": "string", "enum": list(STRATEGIES)}, "capacity": {"type": "integer", "minimum": 1, "maximum": 1000},
        "idle_timeout": {"type": "integer", "minimum": 0, "maximum": 7 * 86400},
        "offer_timeout": {"type": "integer", "minimum": 0, "maximum": 3600},
        "max_misses": {"type": "integer", "minimum": 0, "maximum": 1000},
        "hours": xml_text(191), "timezone": xml_text(64), "holidays": xml_text(1000), "skills": SKILLS,
        "prechat": {"oneOf": [prechat.SCHEMA, {"type": "null"}]},
    })
    ticket_body = {
        "reply": obj({"by": ACCOUNT, "text": xml_text(10000, min_length=1)}, ["by", "text"]),
        "assign": obj({"agent": ACCOUNT, "by": ACCOUNT}, ["agent"]),
        "close": obj({"by": ACCOUNT}, ["by"]),
    }
    ticket_schema = obj({
        "id": {"type": "integer"}, "queue": {"type": "string"}, "visitor": {"type": "string"}, "body": {"type": "string"},
        "created_at": {"type": ["string", "null"]}, "state": {"type": "string", "enum": ["open", "assigned", "closed"]},
        "assignee": {"type": ["string", "null"]}, "closed_at": {"type": ["string", "null"]}, "replies": {"type": "array"},
    }, ["id", "queue", "visitor", "body", "state", "replies"])
    canned_schema = obj({"name": {"type": "string"}, "owner": {"type": ["string", "null"]}, "text": {"type": "string"}}, ["name", "owner", "text"])
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
                  body=obj({"role": {"type": "string", "enum": [*ROLES, "none"]}, "nick": xml_text(191), "skills": SKILLS}, ["role"]),
                  response=obj({"jid": {"type": "string"}, "role": {"type": "string"}, "nick": {"type": "string"}, "skills": {"type": "string"}},
                               ["jid", "role", "nick", "skills"]),
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
        Operation("GET", "/cs/queues/{queue}/tickets", tickets, "Tickets left while no agent was there, oldest first, with replies",
                  "customer-service", "listCsTickets", response=page_schema(ticket_schema), params=qp,
                  query={**page_query(max_page), "state": {"type": "string", "enum": ["open", "assigned", "closed"]}}, errors=(404,)),
        *(Operation("POST", f"/cs/queues/{{queue}}/tickets/{{id}}/{step}", ticket_step(step), summary, "customer-service", op_id,
                    body=ticket_body[step], response=ticket_schema, params={**qp, "id": TICKET_ID}, errors=(404, 409, 422))
          for step, summary, op_id in (
              ("reply", "Answer a ticket as an agent (the visitor is told; an open ticket becomes theirs)", "replyCsTicket"),
              ("assign", "Assign a ticket to an agent of the queue (the visitor is told)", "assignCsTicket"),
              ("close", "Close a ticket (the visitor is told)", "closeCsTicket"))),
        Operation("GET", "/cs/queues/{queue}/canned", canned_list, "Canned replies: shared and personal (owner=shared or an agent)",
                  "customer-service", "listCsCanned", response=page_schema(canned_schema), params=qp,
                  query={**page_query(max_page), "owner": JID_SCHEMA}, errors=(404,)),
        Operation("PUT", "/cs/queues/{queue}/canned/{name}", put_canned, "Set a shared canned reply, or an agent's personal one (owner)",
                  "customer-service", "putCsCanned", body=obj({"text": xml_text(MAX_TEXT, min_length=1), "owner": ACCOUNT}, ["text"]),
                  response=canned_schema, params={**qp, "name": CANNED_NAME}, errors=(404, 503)),
        Operation("DELETE", "/cs/queues/{queue}/canned/{name}", delete_canned, "Remove a canned reply (owner: an agent's personal one)",
                  "customer-service", "deleteCsCanned", status=204, params={**qp, "name": CANNED_NAME}, query={"owner": ACCOUNT},
                  errors=(404,)),
        Operation("GET", "/cs/queues/{queue}/report", report, "Chats, ratings, satisfaction and wait per day, for the queue and each agent",
                  "customer-service", "getCsReport",
                  response=obj({"queue": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"},
                                "timezone": {"type": "string"}, "days": {"type": "array", "items": {"type": "object"}}},
                               ["queue", "from", "to", "timezone", "days"]),
                  params=qp, query={"from": DATE, "to": DATE}, errors=(404,)),
    ]

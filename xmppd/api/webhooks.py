"""REST API: the webhook outbox's state and dead letters (``/webhooks``; docs/webhooks.md).

``GET /webhooks`` (events waiting, dead letters, whether this server sends events),
``GET /webhooks/dead-letters`` (a page, oldest first), ``POST /webhooks/dead-letters/{id}/retry``
and ``POST /webhooks/dead-letters/retry`` (every one) queue dead letters again,
``DELETE /webhooks/dead-letters/{id}`` deletes one -- what ``xmppctl webhooks`` does, on the
same store.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..timestamps import millis
from ..webhooks.delivery import OutboxStore
from ..webhooks.outbox import OutboxRow
from .framework import ApiRequest, Operation, Reply, not_found, obj, page, page_query, page_schema

if TYPE_CHECKING:
    from ..app import Server

EVENT_ID = {"type": "string", "minLength": 1, "maxLength": 32, "pattern": "^[0-9a-f]+$"}
LETTER = obj(
    {
        "id": {"type": "string"}, "event": {"type": "string"}, "subject": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"}, "attempts": {"type": "integer"},
        "dead_at": {"type": ["string", "null"], "format": "date-time"}, "last_error": {"type": ["string", "null"]},
        "body": {"type": "object"},
    },
    ["id", "event", "subject", "created_at", "attempts", "dead_at", "last_error", "body"],
)


def letter_json(r: OutboxRow) -> dict[str, Any]:
    return {
        "id": r.event_id, "event": r.event, "subject": r.subject, "created_at": millis(r.created_at), "attempts": r.attempts,
        "dead_at": millis(r.dead_at) if r.dead_at else None, "last_error": r.last_error, "body": json.loads(r.body),
    }


def operations(server: "Server") -> list[Operation]:
    def store() -> OutboxStore:
        return OutboxStore(server.db)

    async def status(req: ApiRequest) -> Any:
        waiting, dead = await store().counts()
        return {"enabled": server.outbox.enabled, "waiting": waiting, "dead": dead}

    async def letters(req: ApiRequest) -> Any:
        rows = await store().list(dead=True, limit=req.query["limit"], offset=req.query["offset"])
        return page([letter_json(r) for r in rows], req)

    async def retry_one(req: ApiRequest) -> Any:
        if not await store().retry([req.params["id"]], datetime.now(UTC)):
            raise not_found("dead_letter_not_found", f"no dead letter {req.params['id']}")
        if server.webhooks is not None:
            server.webhooks.wake()
        return {"retried": 1}

    async def retry_all(req: ApiRequest) -> Any:
        n = await store().retry(None, datetime.now(UTC))
        if server.webhooks is not None:
            server.webhooks.wake()
        return {"retried": n}

    async def purge_one(req: ApiRequest) -> Any:
        if not await store().purge([req.params["id"]]):
            raise not_found("dead_letter_not_found", f"no dead letter {req.params['id']}")
        return Reply(None, 204)

    max_page = server.config.api.max_page
    retried = obj({"retried": {"type": "integer"}}, ["retried"])
    return [
        Operation("GET", "/webhooks", status, "Webhook outbox: events waiting and dead letters", "webhooks", "getWebhooks",
                  response=obj({"enabled": {"type": "boolean"}, "waiting": {"type": "integer"}, "dead": {"type": "integer"}},
                               ["enabled", "waiting", "dead"])),
        Operation("GET", "/webhooks/dead-letters", letters, "Dead letters, oldest first", "webhooks", "listDeadLetters",
                  response=page_schema(LETTER), query=page_query(max_page)),
        Operation("POST", "/webhooks/dead-letters/retry", retry_all, "Queue every dead letter again", "webhooks",
                  "retryAllDeadLetters", response=retried),
        Operation("POST", "/webhooks/dead-letters/{id}/retry", retry_one, "Queue one dead letter again", "webhooks",
                  "retryDeadLetter", response=retried, params={"id": EVENT_ID}, errors=(404,)),
        Operation("DELETE", "/webhooks/dead-letters/{id}", purge_one, "Delete one dead letter", "webhooks", "purgeDeadLetter",
                  status=204, params={"id": EVENT_ID}, errors=(404,)),
    ]

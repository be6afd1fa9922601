"""REST API: wallets (``/wallets``) and red packets (``/redpackets``), registered by the feature.

Through the same repository and feature methods as the admin ad-hoc commands and ``xmppctl
wallet``: amounts are integers of the minor unit (``[redpacket] precision``); a top-up or a
withdrawal needs an ``Idempotency-Key`` header, remembered in the transaction of the ledger
entry it made, so a retried request answers the first result (``200``, ``"replayed": true``)
and moves nothing; the same key with other values is ``409 idempotency_conflict``. A withdrawal
is a negative adjustment (kind ``adjust``) whose reason starts with ``withdraw``: the audit's
invariant counts it like any adjustment.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from xmppd.api.framework import (
    ApiError,
    ApiRequest,
    Operation,
    Reply,
    local_account,
    not_found,
    obj,
    page,
    page_query,
    page_schema,
    xml_text,
)
from xmppd.timestamps import optional

from .models import IdempotencyConflict, InsufficientFunds, LedgerEntry, Packet

if TYPE_CHECKING:
    from .service import RedPacketService

OWNER = {"type": "string", "minLength": 1, "maxLength": 3071}
AMOUNT = {"type": "integer", "minimum": 1, "maximum": 10**15}
KEY_HEADER = {"type": "string", "minLength": 1, "maxLength": 191, "pattern": "^[\\x21-\\x7e]+$"}
ENTRY = obj(
    {
        "id": {"type": "integer"},
        "owner": {"type": "string"},
        "kind": {"type": "string"},
        "amount": {"type": "integer"},
        "balance_after": {"type": "integer"},
        "packet_id": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
    },
    ["id", "owner", "kind", "amount", "balance_after", "packet_id", "reason", "created_at"],
)
MOVE = obj({**ENTRY["properties"], "replayed": {"type": "boolean"}}, [*ENTRY["required"], "replayed"])
PACKET = {"type": "object", "required": ["id", "sender", "kind", "total", "count", "status"]}
PACKET_ID = {"type": "string", "minLength": 1, "maxLength": 32, "pattern": "^[A-Za-z0-9_-]+$"}



def entry_json(e: LedgerEntry) -> dict[str, Any]:
    return {
        "id": e.id, "owner": e.owner, "kind": e.kind, "amount": e.amount, "balance_after": e.balance_after,
        "packet_id": e.packet_id, "reason": e.reason, "created_at": optional(e.created_at),
    }


def packet_json(p: Packet) -> dict[str, Any]:
    out = dataclasses.asdict(p)
    for k in ("created_at", "expires_at", "finished_at"):
        out[k] = optional(getattr(p, k))
    return out


def operations(f: "RedPacketService") -> list[Operation]:
    ctx = f.ctx
    max_page = ctx.config.api.max_page

    async def owner_of(req: ApiRequest) -> str:
        return str(await local_account(req.params["owner"], "owner", ctx.domain, ctx.accounts))

    async def balance(req: ApiRequest) -> Any:
        owner = await owner_of(req)
        amount = await f.repo.balance(owner)
        return {"owner": owner, "balance": amount, "display": f.amount_text(amount)}

    async def ledger(req: ApiRequest) -> Any:
        owner = await owner_of(req)
        entries, more = await f.repo.history(owner, limit=req.query["limit"], before=req.query.get("before"))
        return {"items": [entry_json(e) for e in entries], "more": more,
                "next_before": entries[-1].id if entries and more else None}

    async def move(req: ApiRequest, kind: str) -> Any:
        owner = await owner_of(req)
        amount = req.body["amount"]
        reason = req.body.get("reason") or None
        if kind == "withdraw":
            signed, kind_stored, reason = -amount, "adjust", f"withdraw: {reason}" if reason else "withdraw"
        else:
            signed, kind_stored = amount, "topup"
        key = f"api:{req.headers['Idempotency-Key']}"
        try:
            entry, replayed = await f.repo.move_once(key, owner, kind_stored, signed, reason, f.now())
        except IdempotencyConflict:
            raise ApiError(409, "idempotency_conflict", "this Idempotency-Key was used for a different request") from None
        except InsufficientFunds as exc:
            raise ApiError(422, "insufficient_funds", f"{owner} has {exc.balance}, the withdrawal needs {exc.needed}") from None
        if not replayed:
            f.log.info("API (%s) %s %s by %d (ledger entry %d)", req.caller, kind, owner, amount, entry.id)
        return Reply({**entry_json(entry), "replayed": replayed}, 200 if replayed else 201)

    async def topup(req: ApiRequest) -> Any:
        return await move(req, "topup")

    async def withdraw(req: ApiRequest) -> Any:
        return await move(req, "withdraw")

    async def audit(req: ApiRequest) -> Any:
        report = await f.repo.audit()
        return {**dataclasses.asdict(report), "problems": list(report.problems), "ok": report.ok}

    async def list_packets(req: ApiRequest) -> Any:
        sender = req.query.get("sender")
        if sender is not None:
            sender = await owner_of(ApiRequest({"owner": sender}, {}, None, {}, req.scope, req.caller))
        found = await f.repo.packets(sender, limit=req.query["limit"], offset=req.query["offset"])
        return page([packet_json(p) for p in found], req)

    async def packet(req: ApiRequest) -> Any:
        p = await f.repo.get_packet(req.params["id"])
        if p is None:
            raise not_found("packet_not_found", f"no red packet {req.params['id']}")
        shares = await f.repo.shares(p.id)
        return {**packet_json(p), "shares": [
            {"seq": s.seq, "amount": s.amount, "grabbed_by": s.grabbed_by, "grabbed_at": optional(s.grabbed_at)} for s in shares
        ]}

    async def refund(req: ApiRequest) -> Any:
        if await f.repo.get_packet(req.params["id"]) is None:
            raise not_found("packet_not_found", f"no red packet {req.params['id']}")
        amount = await f.refund(req.params["id"], force=True)
        return {"id": req.params["id"], "refunded": amount or 0}

    op = {"owner": OWNER}
    move_body = obj({"amount": AMOUNT, "reason": xml_text(500)}, ["amount"])
    key = {"Idempotency-Key": KEY_HEADER}
    return [
        Operation("GET", "/wallets/{owner}", balance, "A wallet's balance (minor units)", "wallets", "getWallet",
                  response=obj({"owner": {"type": "string"}, "balance": {"type": "integer"}, "display": {"type": "string"}},
                               ["owner", "balance", "display"]), params=op, errors=(404,)),
        Operation("GET", "/wallets/{owner}/ledger", ledger, "A wallet's ledger, newest first", "wallets", "getWalletLedger",
                  response=obj({"items": {"type": "array", "items": ENTRY}, "more": {"type": "boolean"},
                                "next_before": {"type": ["integer", "null"]}}, ["items", "more", "next_before"]),
                  params=op, errors=(404,),
                  query={"limit": page_query(max_page)["limit"], "before": {"type": "integer", "minimum": 1, "maximum": 2**62}},
                  description="Keyset pages: pass `next_before` as `before` for the next page."),
        Operation("POST", "/wallets/{owner}/topup", topup, "Credit a wallet (once per Idempotency-Key)", "wallets", "topupWallet",
                  body=move_body, response=MOVE, status=201, params=op, headers=key, required_headers=("Idempotency-Key",),
                  errors=(404, 409), other_responses={200: MOVE},
                  description="201: credited now; 200: a retry of a request already done (`replayed: true`), nothing moved."),
        Operation("POST", "/wallets/{owner}/withdraw", withdraw, "Debit a wallet (once per Idempotency-Key)", "wallets",
                  "withdrawWallet", body=move_body, response=MOVE, status=201, params=op, headers=key,
                  required_headers=("Idempotency-Key",), errors=(404, 409, 422), other_responses={200: MOVE},
                  description="201: debited now; 200: a retry of a request already done (`replayed: true`), nothing moved."),
        Operation("GET", "/audit/wallets", audit, "Check the money invariant across all wallets", "wallets", "auditWallets",
                  response={"type": "object", "required": ["ok", "problems"]}),
        Operation("GET", "/redpackets", list_packets, "List red packets, newest first", "redpackets", "listRedPackets",
                  response=page_schema(PACKET), query={**page_query(max_page), "sender": OWNER}, errors=(404,)),
        Operation("GET", "/redpackets/{id}", packet, "Inspect a red packet and its shares", "redpackets", "getRedPacket",
                  response=PACKET, params={"id": PACKET_ID}, errors=(404,)),
        Operation("POST", "/redpackets/{id}/refund", refund, "Refund what is left of a packet now", "redpackets",
                  "refundRedPacket", response=obj({"id": {"type": "string"}, "refunded": {"type": "integer"}}, ["id", "refunded"]),
                  params={"id": PACKET_ID}, errors=(404,)),
    ]

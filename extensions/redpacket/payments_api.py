"""REST API: payment requests the app confirms (``/payments``; docs/webhooks.md §4, docs/api.md).

* ``POST /payments`` (admin token): ask for a top-up or a withdrawal for an account, as the
  user's ``#payment`` ad-hoc command does (``client_id`` makes a retry return the first request).
* ``GET /payments/{id}`` (read token): one request and its state.
* ``POST /payments/{id}/confirm`` and ``POST /payments/{id}/reject``: the app's answer, signed
  instead of a bearer token -- ``X-Xmppd-Signature: sha256=<hex HMAC-SHA256 of the raw body
  keyed with webhooks.secret>``, body ``{"id", "amount", "reference"}`` (the id and amount must
  be those of the request, so a signed answer cannot be replayed on another one). The wallet
  moves in the transaction that settles the request; answering again the same way is 200 with
  ``"changed": false``; the other way, 409 ``already_settled``.

Served whenever the feature runs, so the document is the same everywhere; without webhooks
(``webhooks.url`` and ``webhooks.secret``) every call answers 422 ``payments_unavailable``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xmppd.api.framework import ApiError, ApiRequest, Operation, Reply, bad_request, conflict, local_account, not_found, obj, xml_text

from .models import InsufficientFunds
from .payments import CONFIRMED, KINDS, REJECTED, PaymentConflict, PaymentNotFound, PaymentRepository

if TYPE_CHECKING:
    from .service import RedPacketService

PAYMENT_ID = {"type": "string", "minLength": 1, "maxLength": 32, "pattern": "^[0-9a-f]+$"}
AMOUNT = {"type": "integer", "minimum": 1, "maximum": 10**15}
PAYMENT = obj(
    {
        "id": {"type": "string"}, "owner": {"type": "string"}, "kind": {"type": "string", "enum": list(KINDS)},
        "amount": {"type": "integer"}, "status": {"type": "string", "enum": ["pending", "confirmed", "rejected"]},
        "reference": {"type": ["string", "null"]}, "created_at": {"type": "string", "format": "date-time"},
        "settled_at": {"type": ["string", "null"], "format": "date-time"}, "balance": {"type": ["integer", "null"]},
        "changed": {"type": "boolean"},
    },
    ["id", "owner", "kind", "amount", "status", "created_at"],
)


def operations(f: "RedPacketService") -> list[Operation]:
    ctx = f.ctx

    def repo() -> PaymentRepository:
        if f.payments is None:
            raise ApiError(422, "payments_unavailable", "payments need webhooks.url and webhooks.secret on this server")
        return f.payments

    async def ask(req: ApiRequest) -> Any:
        payments = repo()
        jid = await local_account(req.body["owner"], "owner", ctx.domain, ctx.accounts)
        try:
            payment, created = await payments.request(str(jid), req.body["kind"], req.body["amount"], f"api:{req.body['client_id']}"[:64], f.now())
        except PaymentConflict as exc:
            raise conflict("client_id_conflict", str(exc)) from None
        except InsufficientFunds as exc:
            raise ApiError(422, "insufficient_funds", f"{jid} has {exc.balance}, the withdrawal needs {exc.needed}") from None
        return Reply(payment.as_json(), 201 if created else 200)

    async def get(req: ApiRequest) -> Any:
        payment = await repo().get(req.params["id"])
        if payment is None:
            raise not_found("payment_not_found", f"no payment request {req.params['id']}")
        return payment.as_json()

    async def settle(req: ApiRequest, outcome: str) -> Any:
        payments = repo()
        payment_id = req.params["id"]
        if req.body["id"] != payment_id:
            raise bad_request("invalid_request", "the body's id must be the payment id of the path")
        current = await payments.get(payment_id)
        if current is None:
            raise not_found("payment_not_found", f"no payment request {payment_id}")
        if current.amount != req.body["amount"]:
            raise conflict("amount_mismatch", f"payment {payment_id} is for {current.amount}, not {req.body['amount']}")
        try:
            payment, changed = await payments.settle(payment_id, outcome, f.now(), req.body.get("reference"))
        except PaymentNotFound:
            raise not_found("payment_not_found", f"no payment request {payment_id}") from None
        except PaymentConflict as exc:
            raise conflict("already_settled", str(exc)) from None
        if changed:
            f.log.info("payment %s (%s of %d for %s) %s by the app", payment.id, payment.kind, payment.amount, payment.owner, outcome)
        return {**payment.as_json(), "changed": changed}

    async def confirm(req: ApiRequest) -> Any:
        return await settle(req, CONFIRMED)

    async def reject(req: ApiRequest) -> Any:
        return await settle(req, REJECTED)

    answer = obj({"id": PAYMENT_ID, "amount": AMOUNT, "reference": {"type": ["string", "null"], "maxLength": 191}}, ["id", "amount"])
    pid = {"id": PAYMENT_ID}
    return [
        Operation("POST", "/payments", ask, "Ask for a top-up or a withdrawal the app confirms", "payments", "requestPayment",
                  body=obj({"owner": {"type": "string", "minLength": 1, "maxLength": 3071}, "kind": {"type": "string", "enum": list(KINDS)},
                            "amount": AMOUNT, "client_id": xml_text(48, min_length=1)}, ["owner", "kind", "amount", "client_id"]),
                  response=PAYMENT, status=201, errors=(404, 409, 422),
                  description="Records a pending request and sends payment.requested; a withdrawal holds its amount at once. "
                  "The same client_id returns the first request (200)."),
        Operation("GET", "/payments/{id}", get, "A payment request and its state", "payments", "getPayment",
                  response=PAYMENT, params=pid, errors=(404, 422)),
        Operation("POST", "/payments/{id}/confirm", confirm, "The app confirms a payment (signed)", "payments", "confirmPayment",
                  body=answer, response=PAYMENT, params=pid, errors=(404, 409, 422), signed=True,
                  description="Authenticated by X-Xmppd-Signature (HMAC-SHA256 of the raw body keyed with webhooks.secret), "
                  "not a bearer token. A top-up credits the wallet; a withdrawal's hold leaves. Idempotent."),
        Operation("POST", "/payments/{id}/reject", reject, "The app rejects a payment (signed)", "payments", "rejectPayment",
                  body=answer, response=PAYMENT, params=pid, errors=(404, 409, 422), signed=True,
                  description="Authenticated like confirm. A withdrawal's hold goes back to the wallet. Idempotent."),
    ]

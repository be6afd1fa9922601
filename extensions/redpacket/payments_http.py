"""Red packets: the app's signed payment confirmations on ``listen.http`` (docs/webhooks.md §4).

``POST /api/v1/payments/<id>/confirm`` and ``POST /api/v1/payments/<id>/reject``, body JSON
``{"id": "<id>", "amount": <minor units>, "reference": "<the provider's id, optional>"}``,
header ``X-Xmppd-Signature: sha256=<hex HMAC-SHA256 of the body keyed with webhooks.secret>`` --
the same signature the app checks on our webhooks. Answers JSON: 200 with the request
(``status``, ``balance``, ``changed``: false when it was already settled that way), or an error
``{"code", "message"}``: 401 ``bad_signature``, 400 ``bad_request``, 404 ``not_found``, 409
``amount_mismatch`` / ``already_settled``. Served only when ``webhooks.secret`` is set.

Kept to its own module, on plain aiohttp, so that it moves into the REST API framework as one
resource when that lands.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from xmppd.webhooks.delivery import SIGNATURE_HEADER, verify

from .payments import CONFIRMED, REJECTED, PaymentConflict, PaymentNotFound, PaymentRepository

log = logging.getLogger(__name__)

CONFIRM_PATH = "/api/v1/payments/{id}/confirm"
REJECT_PATH = "/api/v1/payments/{id}/reject"
_MAX_REFERENCE = 191


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


class PaymentEndpoint:
    def __init__(self, repo: PaymentRepository, secret: str, now: Callable[[], datetime]) -> None:
        self.repo, self.secret, self.now = repo, secret, now

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", CONFIRM_PATH, self.confirm), ("POST", REJECT_PATH, self.reject)]

    async def confirm(self, request: web.Request) -> web.Response:
        return await self._settle(request, CONFIRMED)

    async def reject(self, request: web.Request) -> web.Response:
        return await self._settle(request, REJECTED)

    async def _settle(self, request: web.Request, outcome: str) -> web.Response:
        payment_id = request.match_info["id"]
        body = await request.read()
        if not verify(self.secret, body, request.headers.get(SIGNATURE_HEADER)):
            log.info("payment %s: refused a %s with a bad or missing signature", payment_id[:64], outcome)
            return _error(401, "bad_signature", f"{SIGNATURE_HEADER} must be sha256=<hex HMAC-SHA256 of the body keyed with webhooks.secret>")
        try:
            doc = json.loads(body)
        except ValueError:
            return _error(400, "bad_request", "the body is not JSON")
        if not isinstance(doc, dict):
            return _error(400, "bad_request", "the body is a JSON object")
        if doc.get("id") != payment_id:
            return _error(400, "bad_request", "the body's id must be the payment id of the path")
        amount = doc.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int):
            return _error(400, "bad_request", "amount (integer minor units) is required")
        reference = doc.get("reference")
        if reference is not None and (not isinstance(reference, str) or len(reference) > _MAX_REFERENCE):
            return _error(400, "bad_request", f"reference is a string of at most {_MAX_REFERENCE} characters")
        current = await self.repo.get(payment_id)
        if current is None:
            return _error(404, "not_found", f"no payment request {payment_id}")
        if current.amount != amount:
            return _error(409, "amount_mismatch", f"payment {payment_id} is for {current.amount}, not {amount}")
        try:
            payment, changed = await self.repo.settle(payment_id, outcome, self.now(), reference)
        except PaymentNotFound:
            return _error(404, "not_found", f"no payment request {payment_id}")
        except PaymentConflict as exc:
            return _error(409, "already_settled", str(exc))
        if changed:
            log.info("payment %s (%s of %d for %s) %s by the app", payment.id, payment.kind, payment.amount, payment.owner, outcome)
        return web.json_response({**payment.as_json(), "changed": changed})

"""The webhook doors of the REST API: /api/v1/webhooks (dead letters: list, retry, delete) and
/api/v1/payments (asked with a bearer token, answered by the app's signed confirmation)."""

from __future__ import annotations

import asyncio
import json

import pytest

from xmppd.webhooks import events as E
from xmppd.webhooks.delivery import sign

from ..api.support import READ, api_server
from ..helpers import add_user
from .receiver import SECRET, Receiver

pytestmark = pytest.mark.asyncio


async def test_dead_letters_listed_retried_deleted_and_payments_through_the_api(tmp_path):
    broken = {"on": True}
    receiver = Receiver(status=lambda e: 503 if broken["on"] else 200)
    await receiver.start()
    try:
        async with api_server(
            tmp_path, f"webhooks.url={receiver.url}", f"webhooks.secret={SECRET}", "webhooks.dead_after=1",
            "webhooks.retry_min=0.1", "webhooks.retry_max=1", "webhooks.poll_interval=0.2",
        ) as api:
            server = api.server
            await add_user(server, "alice")
            feat = server.features["redpacket"]
            await feat.repo.topup("alice@localhost", 500, feat.now())
            # asked through the API (admin token); a read token may not, nobody without one
            ask = {"owner": "alice", "kind": "withdraw", "amount": 200, "client_id": "w-1"}
            assert (await api.call("POST", "/api/v1/payments", json=ask, token=None))[0] == 401
            assert (await api.call("POST", "/api/v1/payments", json=ask, token=READ))[0] == 403
            status, payment = await api.call("POST", "/api/v1/payments", json=ask)
            assert (status, payment["status"], payment["balance"]) == (201, "pending", 300)
            assert (await api.call("POST", "/api/v1/payments", json=ask))[0] == 200  # the same client_id: the same request
            status, doc = await api.call("POST", "/api/v1/payments", json={**ask, "client_id": "w-2", "amount": 10_000})
            assert (status, doc["error"]["code"]) == (422, "insufficient_funds")

            # the receiver refuses everything: the events die after webhooks.dead_after
            async def dead(n: int) -> list[dict]:
                while True:
                    status, doc = await api.call("GET", "/api/v1/webhooks/dead-letters", token=READ)
                    assert status == 200
                    if len(doc["items"]) >= n:
                        return doc["items"]
                    await asyncio.sleep(0.2)
            letters = await asyncio.wait_for(dead(3), 60)  # account.created, wallet.topup, payment.requested
            assert [x["event"] for x in letters] == [E.ACCOUNT_CREATED, E.WALLET_TOPUP, E.PAYMENT_REQUESTED]
            assert letters[0]["last_error"] == "HTTP 503" and letters[0]["body"]["id"] == letters[0]["id"]
            status, doc = await api.call("GET", "/api/v1/webhooks", token=READ)
            assert (status, doc["enabled"], doc["dead"]) == (200, True, 3)
            assert (await api.call("POST", f"/api/v1/webhooks/dead-letters/{letters[0]['id']}/retry", token=READ))[0] == 403
            assert (await api.call("DELETE", "/api/v1/webhooks/dead-letters/abc123"))[0] == 404
            # mended: one is retried, one deleted, the rest retried at once
            broken["on"] = False
            status, doc = await api.call("POST", f"/api/v1/webhooks/dead-letters/{letters[2]['id']}/retry")
            assert (status, doc) == (200, {"retried": 1})
            await receiver.wait_for(lambda: letters[2]["id"] in receiver.ids())
            assert (await api.call("DELETE", f"/api/v1/webhooks/dead-letters/{letters[0]['id']}"))[0] == 204
            status, doc = await api.call("POST", "/api/v1/webhooks/dead-letters/retry")
            assert (status, doc) == (200, {"retried": 1})
            await receiver.wait_for(lambda: letters[1]["id"] in receiver.ids())
            assert letters[0]["id"] not in receiver.ids()

            # the app's signed answer: no bearer token, the signature instead
            body = json.dumps({"id": payment["id"], "amount": 200, "reference": "payout-7"}).encode()
            path = f"/api/v1/payments/{payment['id']}/confirm"
            status, doc = await api.call("POST", path, data=body, token=None, headers={"Content-Type": "application/json"})
            assert (status, doc["error"]["code"]) == (401, "bad_signature")
            signed = {"Content-Type": "application/json", "X-Xmppd-Signature": sign(SECRET, body)}
            status, doc = await api.call("POST", path, data=body, token=None, headers=signed)
            assert (status, doc["status"], doc["changed"], doc["reference"]) == (200, "confirmed", True, "payout-7")
            status, doc = await api.call("GET", f"/api/v1/payments/{payment['id']}", token=READ)
            assert (status, doc["status"]) == (200, "confirmed")
            assert await feat.repo.balance("alice@localhost") == 300
            await receiver.wait_for(lambda: any(e["event"] == E.PAYMENT_CONFIRMED for e in receiver.events))
            assert receiver.bad_signatures == 0
            status, text = await api.call("GET", "/metrics", token=None)
            assert status == 200
            assert 'xmppd_webhook_deliveries_total{outcome="dead_lettered"} 3.0' in text
            assert 'xmppd_webhook_backlog{state="waiting"}' in text
    finally:
        await receiver.stop()


async def test_payments_refused_without_webhooks(tmp_path):
    async with api_server(tmp_path) as api:
        await add_user(api.server, "bob")
        status, doc = await api.call("POST", "/api/v1/payments", json={"owner": "bob", "kind": "topup", "amount": 1, "client_id": "x"})
        assert (status, doc["error"]["code"]) == (422, "payments_unavailable")
        body = b'{"id": "ab", "amount": 1}'
        status, doc = await api.call("POST", "/api/v1/payments/ab/confirm", data=body, token=None,
                                     headers={"Content-Type": "application/json", "X-Xmppd-Signature": sign("", body)})
        assert (status, doc["error"]["code"]) == (401, "signature_unavailable")
        status, doc = await api.call("GET", "/api/v1/webhooks")
        assert (status, doc) == (200, {"enabled": False, "waiting": 0, "dead": 0})

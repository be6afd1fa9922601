"""REST API wallets and red packets over HTTP, checked by what a real slixmpp client sees (its
balance, its packets), and the Idempotency-Key's promise: a retried top-up moves money once."""
from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers import add_user, slix, slix_close
from xmppd_extensions.redpacket import slixmpp_plugin

from .support import READ, api_server


async def rp_client(server, name: str):
    c = await slix(server, await add_user(server, name))
    c.register_plugin("redpacket", module=slixmpp_plugin)
    c.send_presence()
    return c


async def test_topup_and_withdraw_once_per_idempotency_key_seen_by_the_client(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        alice = await rp_client(api.server, "alice")
        try:
            url = "/api/v1/wallets/alice/topup"
            status, body = await api.call("POST", url, json={"amount": 1000})
            assert status == 400 and body["error"]["code"] == "invalid_request"  # no Idempotency-Key
            status, first = await api.call("POST", url, json={"amount": 1000, "reason": "order 17"}, headers={"Idempotency-Key": "order-17"})
            assert status == 201 and first["balance_after"] == 1000 and first["kind"] == "topup" and first["replayed"] is False
            assert await alice.plugin["redpacket"].balance() == 1000
            # the retry of a request whose answer was lost: the same entry, no second credit
            status, again = await api.call("POST", url, json={"amount": 1000, "reason": "order 17"}, headers={"Idempotency-Key": "order-17"})
            assert status == 200 and again == {**first, "replayed": True}
            assert await alice.plugin["redpacket"].balance() == 1000
            status, body = await api.call("POST", url, json={"amount": 5}, headers={"Idempotency-Key": "order-17"})
            assert status == 409 and body["error"]["code"] == "idempotency_conflict"
            # concurrent retries of one request: one credit
            results = await asyncio.gather(*(
                api.call("POST", url, json={"amount": 7}, headers={"Idempotency-Key": "order-18"}) for _ in range(5)
            ))
            assert sorted(s for s, _ in results) == [200, 200, 200, 200, 201]
            assert len({b["id"] for _, b in results}) == 1
            assert await alice.plugin["redpacket"].balance() == 1007

            w = "/api/v1/wallets/alice/withdraw"
            status, body = await api.call("POST", w, json={"amount": 5000}, headers={"Idempotency-Key": "payout-1"})
            assert status == 422 and body["error"]["code"] == "insufficient_funds"
            status, body = await api.call("POST", w, json={"amount": 7, "reason": "bank"}, headers={"Idempotency-Key": "payout-1"})
            assert status == 201 and body["amount"] == -7 and body["balance_after"] == 1000 and body["reason"] == "withdraw: bank"
            assert await alice.plugin["redpacket"].balance() == 1000

            # 5.0 is an integer to JSON Schema: handled as 5
            status, body = await api.call("POST", url, json={"amount": 5.0}, headers={"Idempotency-Key": "float-5"})
            assert status == 201 and body["amount"] == 5 and body["balance_after"] == 1005
            status, body = await api.call("POST", url, json={"amount": 5.5}, headers={"Idempotency-Key": "float-5.5"})
            assert status == 400 and body["error"]["code"] == "invalid_request"
            status, body = await api.call("POST", w, json={"amount": 5}, headers={"Idempotency-Key": "payout-2"})
            assert status == 201

            status, body = await api.call("GET", "/api/v1/wallets/alice", token=READ)
            assert status == 200 and body["balance"] == 1000 and body["owner"] == "alice@localhost"
            status, body = await api.call("GET", "/api/v1/wallets/alice/ledger?limit=2", token=READ)
            assert [e["amount"] for e in body["items"]] == [-5, 5] and body["more"] is True
            status, body = await api.call("GET", f"/api/v1/wallets/alice/ledger?limit=2&before={body['next_before']}", token=READ)
            assert [e["amount"] for e in body["items"]] == [-7, 7] and body["more"] is True
            status, body = await api.call("GET", f"/api/v1/wallets/alice/ledger?limit=2&before={body['next_before']}", token=READ)
            assert [e["amount"] for e in body["items"]] == [1000] and body["more"] is False
            status, body = await api.call("GET", "/api/v1/audit/wallets", token=READ)
            assert status == 200 and body["ok"] is True and body["total_balances"] == 1000
            status, body = await api.call("GET", "/api/v1/wallets/nobody", token=READ)
            assert status == 404 and body["error"]["code"] == "user_not_found"
        finally:
            await slix_close(alice)


async def test_red_packets_listed_inspected_and_refunded(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        alice = await rp_client(api.server, "alice")
        bob = await rp_client(api.server, "bob")
        try:
            status, _ = await api.call("POST", "/api/v1/wallets/alice/topup", json={"amount": 500}, headers={"Idempotency-Key": "k1"})
            assert status == 201
            # 1:1 red packets go to contacts only (redpacket.contacts_only): friends through the API
            status, _ = await api.call("POST", "/api/v1/users/alice/roster", json={"jid": "bob@localhost", "mutual": True})
            assert status in (200, 201)
            sent = await alice.plugin["redpacket"].send_packet("bob@localhost", client_id="c1", total=300, count=1)
            status, body = await api.call("GET", "/api/v1/redpackets?sender=alice", token=READ)
            assert status == 200 and [p["id"] for p in body["items"]] == [sent["id"]]
            status, body = await api.call("GET", f"/api/v1/redpackets/{sent['id']}", token=READ)
            assert status == 200 and body["total"] == 300 and body["shares"][0]["grabbed_by"] is None
            status, body = await api.call("POST", f"/api/v1/redpackets/{sent['id']}/refund")
            assert status == 200 and body == {"id": sent["id"], "refunded": 300}
            assert await alice.plugin["redpacket"].balance() == 500
            status, body = await api.call("GET", "/api/v1/redpackets/nope", token=READ)
            assert status == 404 and body["error"]["code"] == "packet_not_found"
            status, body = await api.call("GET", "/api/v1/metrics-not-here", token=READ)
            assert status == 404
        finally:
            await slix_close(alice)
            await slix_close(bob)

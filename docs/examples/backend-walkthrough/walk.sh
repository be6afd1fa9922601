#!/usr/bin/env bash
# Issue 18's walkthrough against a fresh server: create users with the REST API, make them
# friends, top up a wallet with an idempotency key, log in with JWTs (slixmpp, SASL PLAIN), send
# and open a red packet, and receive the signed webhooks. Run from the repository's root after
# the README's install: bash docs/examples/backend-walkthrough/walk.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-.venv/bin/python}
BIN=$(dirname "$PY")
D=$(mktemp -d)
port() { "$PY" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
C2S=$(port); HTTP=$(port); RCV=$(port)
"$PY" "$HERE/receiver.py" "$RCV" "$D/received.jsonl" & RPID=$!
"$BIN/xmppd" --set server.data_dir="$D" --set listen.c2s=127.0.0.1:$C2S --set listen.c2s_tls= --set listen.http=127.0.0.1:$HTTP \
  --set 'api.tokens=[{token="walkthrough-admin-token-0123456789", scope="admin"}]' \
  --set auth.jwt_secret=walkthrough-jwt-secret-0123456789 \
  --set webhooks.url=http://127.0.0.1:$RCV/hook --set webhooks.secret=walkthrough-webhook-secret \
  2> "$D/xmppd.log" & XPID=$!
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$HTTP/health && break; sleep 0.2; done
API=http://127.0.0.1:$HTTP/api/v1
A=(-H "Authorization: Bearer walkthrough-admin-token-0123456789" -H "Content-Type: application/json")
say() { echo "\$ $*"; }
say curl /health; curl -s http://127.0.0.1:$HTTP/health; echo
say 'curl -X POST $API/users -d {"username": "alice", ...}'; curl -s -w ' [%{http_code}]' "${A[@]}" -X POST $API/users -d '{"username": "alice", "password": "a long password 1"}'; echo
say 'curl -X POST $API/users -d {"username": "bob", ...}'; curl -s -w ' [%{http_code}]' "${A[@]}" -X POST $API/users -d '{"username": "bob", "password": "a long password 2"}'; echo
say 'curl -X POST $API/users/alice/roster -d {"jid": "bob@localhost", "mutual": true}'; curl -s -w ' [%{http_code}]' "${A[@]}" -X POST $API/users/alice/roster -d '{"jid": "bob@localhost", "mutual": true}'; echo
say 'curl -X POST $API/wallets/alice/topup -H "Idempotency-Key: order-17" -d {"amount": 1000}   (twice)'
curl -s -w ' [%{http_code}]' "${A[@]}" -H "Idempotency-Key: order-17" -X POST $API/wallets/alice/topup -d '{"amount": 1000, "reason": "order 17"}'; echo
curl -s -w ' [%{http_code}]' "${A[@]}" -H "Idempotency-Key: order-17" -X POST $API/wallets/alice/topup -d '{"amount": 1000, "reason": "order 17"}'; echo
say 'curl $API/wallets/alice'; curl -s "${A[@]}" $API/wallets/alice; echo
say 'curl -H "Authorization: Bearer nope" $API/users'; curl -s -w ' [%{http_code}]' -H "Authorization: Bearer nope" $API/users; echo
echo '--- slixmpp logs in with JWTs (SASL PLAIN), alice sends bob a red packet, bob opens it'
"$PY" "$HERE/login.py" $C2S
sleep 2
say 'curl $API/wallets/bob'; curl -s "${A[@]}" $API/wallets/bob; echo
say 'curl $API/webhooks'; curl -s "${A[@]}" $API/webhooks; echo
echo '--- webhooks received by the app (signature checked by the receiver):'
cat "$D/received.jsonl"
kill $XPID; wait $XPID; echo "xmppd exit $?"; kill $RPID

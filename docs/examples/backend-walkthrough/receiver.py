import hashlib
import hmac
import json
import sys
from pathlib import Path

from aiohttp import web

SECRET = b"walkthrough-webhook-secret"
async def hook(request):
    body = await request.read()
    sig = request.headers.get("X-Xmppd-Signature", "")
    ok = hmac.compare_digest(sig, "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest())
    ev = json.loads(body)
    line = json.dumps({"signature_ok": ok, **ev}, ensure_ascii=False) + "\n"
    with Path(sys.argv[2]).open("a") as f:  # noqa: ASYNC230 -- one short line per event in an example
        f.write(line)
    return web.Response(status=204)
app = web.Application()
app.router.add_post("/hook", hook)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)

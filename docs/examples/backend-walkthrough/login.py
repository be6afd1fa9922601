# log in with a JWT as the SASL PLAIN password (slixmpp), then alice sends bob a lucky red packet and bob opens it
import asyncio
import ssl
import sys
import time

import jwt
import slixmpp
from slixmpp import ET

PORT, SECRET = int(sys.argv[1]), "walkthrough-jwt-secret-0123456789"  # auth.jwt_secret of walk.sh
def token(user): return jwt.encode({"jid": user, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
async def client(user):
    c = slixmpp.ClientXMPP(f"{user}@localhost", token(user), sasl_mech="PLAIN")  # the token as the PLAIN password
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.ssl_context = ctx
    started = asyncio.get_running_loop().create_future()
    c.add_event_handler("session_start", lambda _: started.set_result(True))
    c.add_event_handler("failed_auth", lambda _: started.done() or started.set_exception(RuntimeError("auth failed")))
    c.connect(host="127.0.0.1", port=PORT)
    await asyncio.wait_for(started, 15)
    print(f"{user}: logged in with a JWT as {c.boundjid}")
    return c
async def main():
    alice, bob = await client("alice"), await client("bob")
    NS = "urn:xmppd:redpacket:0"
    iq = alice.make_iq_set(ito="localhost")
    ET.SubElement(iq.xml, f"{{{NS}}}send", {"to": "bob@localhost", "total": "500", "count": "1", "kind": "lucky", "client-id": "walk-1"})
    res = await iq.send(timeout=10)
    pid = next(iter(res.xml)).get("id")
    print("alice sent red packet", pid)
    iq = bob.make_iq_set(ito="localhost")
    ET.SubElement(iq.xml, f"{{{NS}}}open", {"id": pid})
    res = await iq.send(timeout=10)
    print("bob opened it:", ET.tostring(next(iter(res.xml))).decode())
    await asyncio.sleep(2)
    alice.disconnect()
    bob.disconnect()
asyncio.run(main())

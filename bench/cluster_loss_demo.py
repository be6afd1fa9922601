"""What a node's loss and a Redis restart look like from a client (docs/cluster.md sections 6
and 7), with the surviving node's log: not a benchmark and not a test (the tests in
tests/cluster/ assert each step), a demonstration to read.

Two ``xmppd`` processes, alpha and beta, with the **default** heartbeat (2 s) and node timeout
(10 s), a private ``redis-server`` on a free port and one SQLite file; alice (slixmpp) on alpha,
bob on beta, mutual contacts. Then: beta is SIGKILLed; alice sends bob a chat message while he
has no node; Redis is restarted empty; bob logs in on alpha and gets the message from offline
storage. Prints what alice and bob see, with seconds since the start, then alpha's cluster lines.

    python bench/cluster_loss_demo.py
"""
from __future__ import annotations

import asyncio
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster.conftest import PrivateRedis  # noqa: E402
from tests.cluster.procs import add_users, shared_storage, start_xmppd  # noqa: E402
from tests.helpers import PASSWORD, slix  # noqa: E402

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"{time.monotonic() - T0:6.1f}s {text}", flush=True)


async def main() -> None:
    redis = PrivateRedis()
    redis.start()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        storage = shared_storage(tmp)
        common = [*storage, "--set", f"cluster.redis_url={redis.url}", "--set", "cluster.prefix=demo"]
        await add_users(storage, tmp, ["alice", "bob"], PASSWORD)
        nodes = {}
        for name in ("alpha", "beta"):
            nodes[name] = await start_xmppd(tmp / name, *common, "--set", f"cluster.node={name}")
            await nodes[name].wait_log("joined the cluster", timeout=60)
        await nodes["alpha"].wait_log("node beta is up", timeout=30)
        clients = []
        try:
            alice = await slix(nodes["alpha"].as_server(), "alice@localhost")
            bob = await slix(nodes["beta"].as_server(), "bob@localhost")
            clients += [alice, bob]
            seen = asyncio.Event()

            def alice_sees(p: object) -> None:
                if str(p["from"].bare) == "bob@localhost":  # type: ignore[index]
                    kind = p["type"] if p["type"] == "unavailable" else "available"  # type: ignore[index]
                    say(f"alice (on alpha) sees: <presence from='{p['from']}' type='{kind}'/>")  # type: ignore[index]
                    if kind == "unavailable":
                        seen.set()

            alice.add_event_handler("presence", alice_sees)
            for a, b in ((alice, bob), (bob, alice)):
                a.send_presence(pto=b.boundjid.bare, ptype="subscribed")
                a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
            alice.send_presence()
            bob.send_presence()
            await asyncio.sleep(3)
            say("kill -KILL beta (bob's node)")
            nodes["beta"].proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(seen.wait(), 30)
            await asyncio.sleep(1)
            say("alice sends bob a chat message while bob has no node")
            alice.send_message(mto="bob@localhost", mbody="are you there?", mtype="chat")
            await asyncio.sleep(1)
            say("restart Redis (empty)")
            redis.stop()
            await asyncio.sleep(2)
            redis.start()
            await nodes["alpha"].wait_log("cache invalidations are received again", timeout=60)
            got: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            bob2 = await slix(nodes["alpha"].as_server(), "bob@localhost")
            clients.append(bob2)

            def bob_gets(m: object) -> None:
                delay = m.xml.find("{urn:xmpp:delay}delay")  # type: ignore[attr-defined]
                if m["body"] and not got.done():  # type: ignore[index]
                    stamp = delay.get("stamp") if delay is not None else "none"
                    got.set_result(f"{m['body']!r} (delay stamp {stamp})")  # type: ignore[index]

            bob2.add_event_handler("message", bob_gets)
            bob2.send_presence()
            say("bob logs in on alpha and receives from offline storage: " + await asyncio.wait_for(got, 20))
        finally:
            for c in clients:
                c.disconnect()
            await asyncio.sleep(0.5)
            for proc in nodes.values():
                await proc.close()
            redis.stop()
        print("\nalpha's log (INFO and above, the cluster's lines):")
        for line in nodes["alpha"].log.splitlines():
            if re.search(r"xmppd\.cluster|signal received", line):
                print(line)


if __name__ == "__main__":
    asyncio.run(main())

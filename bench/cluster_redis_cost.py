#!/usr/bin/env python3
"""What the cluster costs Redis: commands and bytes per login, per presence broadcast and per
cross-node message, and registry bytes per session (docs/cluster.md §9). Figures only.

Two real ``xmppd`` nodes (the console script, archive on) on a Redis of this run's own choosing
-- give a private ``redis-server`` (``redis-server --port P --save ''``): the counters are
``CONFIG RESETSTAT`` / ``INFO commandstats`` / ``INFO stats`` of the whole server. The nodes'
idle traffic (heartbeats, blocked bus reads, invalidation pings) is measured over an idle
interval and subtracted in proportion to each phase's duration.

    python bench/cluster_redis_cost.py --redis redis://127.0.0.1:P/0 [--users 20] [--messages 2000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster.procs import start_xmppd, xmppctl  # noqa: E402
from tests.helpers import PASSWORD, RawClient  # noqa: E402


def snapshot(r: Any) -> dict[str, float]:
    stats = r.info("stats")
    out = {"net_in": float(stats["total_net_input_bytes"]), "net_out": float(stats["total_net_output_bytes"]),
           "t": time.monotonic()}
    for name, v in r.info("commandstats").items():
        out["cmd:" + name.removeprefix("cmdstat_")] = float(v["calls"])
    return out


def delta(a: dict[str, float], b: dict[str, float], idle: dict[str, float] | None = None) -> dict[str, float]:
    d = {k: b.get(k, 0.0) - a.get(k, 0.0) for k in set(a) | set(b)}
    if idle is not None:
        scale = d["t"] / idle["t"]
        for k, v in idle.items():
            if k != "t":
                d[k] = d.get(k, 0.0) - v * scale
    return d


def per(d: dict[str, float], n: int) -> dict[str, Any]:
    cmds = {k[4:]: round(v / n, 2) for k, v in sorted(d.items()) if k.startswith("cmd:") and abs(v / n) >= 0.05
            and not k.startswith("cmd:info") and not k.startswith("cmd:config")}
    return {"commands": cmds, "commands_total": round(sum(cmds.values()), 2),
            "bytes_to_redis": round(d["net_in"] / n), "bytes_from_redis": round(d["net_out"] / n)}


async def login(port: int, user: str, resource: str) -> RawClient:
    c = await RawClient.connect(SimpleNamespace(ports={"c2s": port}))  # type: ignore[arg-type]
    await c.plain_login(user, resource=resource)
    return c


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", required=True, help="a private Redis: its statistics are reset")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    import redis

    r = redis.Redis.from_url(args.redis, decode_responses=True)
    prefix = f"xc{uuid.uuid4().hex[:8]}"
    users = [f"u{i}" for i in range(args.users)]
    with tempfile.TemporaryDirectory(prefix="xmppd-redis-cost-") as tmp_s:
        tmp = Path(tmp_s)
        storage = ["--set", f"storage.url=sqlite+aiosqlite:///{(tmp / 'shared.db').as_posix()}", "--set", "storage.auto_upgrade=true"]
        for user in users:
            out = xmppctl(*storage, "--set", f"server.data_dir={tmp / 'ctl'}", "user", "add", f"{user}@localhost", "--password", PASSWORD, cwd=tmp)
            assert out.returncode == 0, out.stderr
        common = ["--set", f"cluster.redis_url={args.redis}", "--set", f"cluster.prefix={prefix}", *storage,
                  "--set", "c2s.require_tls=false", "--set", "log.level=warning", "--set", "c2s.rate_stanzas=0",
                  "--set", "c2s.rate_bytes=0"]
        nodes = {name: await start_xmppd(tmp / name, *common, "--set", f"cluster.node={name}") for name in ("a", "b")}
        clients: list[RawClient] = []
        try:
            for _ in range(400):
                if r.exists(f"{prefix}:node:a", f"{prefix}:node:b") == 2:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            results: dict[str, Any] = {}
            r.config_resetstat()
            s0 = snapshot(r)
            await asyncio.sleep(4.0)
            idle = delta(s0, snapshot(r))
            results["idle_per_second_two_nodes"] = {k: round(v / idle["t"], 2) for k, v in idle.items() if k != "t" and v}
            mem0 = int(r.info("memory")["used_memory"])

            # logins: SASL + bind on node a, half the users, then on b the other half
            s1 = snapshot(r)
            for i, user in enumerate(users):
                clients.append(await login(nodes["a" if i % 2 == 0 else "b"].port, user, "bench"))
            s2 = snapshot(r)
            results["per_login_bind"] = per(delta(s1, s2, idle), len(users))

            # initial presence (no contacts): the registry entry becomes available
            for c in clients:
                await c.send("<presence/>")
            await asyncio.sleep(0.5)
            s3 = snapshot(r)
            results["per_initial_presence"] = per(delta(s2, s3, idle), len(users))
            mem1 = int(r.info("memory")["used_memory"])
            sess_keys = [f"{prefix}:sess:{u}@localhost" for u in users]
            usage = [r.memory_usage(k) or 0 for k in sess_keys]
            nsess = sum(r.memory_usage(f"{prefix}:nsess:{n}") or 0 for n in ("a", "b"))
            results["registry_bytes_per_session"] = {
                "sess_hash_memory_usage": round(sum(usage) / len(usage)),
                "nsess_sets_per_session": round(nsess / len(users)),
                "used_memory_delta_per_session": round((mem1 - mem0) / len(users)),
            }

            # presence broadcasts: a change of show, each user once
            for c in clients:
                await c.send("<presence><show>away</show></presence>")
            await asyncio.sleep(0.5)
            s4 = snapshot(r)
            results["per_presence_broadcast"] = per(delta(s3, s4, idle), len(users))

            # cross-node messages: u0 (node a) to u1 (node b), full JID, pipelined
            n = args.messages
            stanzas = "".join(f"<message type='chat' to='u1@localhost/bench' id='m{i}'><body>{'x' * 40}</body></message>" for i in range(n))
            await clients[0].send(stanzas)
            got, tail = 0, b""
            while got < n:
                chunk = await asyncio.wait_for(clients[1].reader.read(1 << 20), 30)
                data = tail + chunk
                got += data.count(b"</message>")
                tail = data[-9:]
            s5 = snapshot(r)
            results["per_cross_node_message"] = per(delta(s4, s5, idle), n)
            print(json.dumps(results, indent=1))
        finally:
            for c in clients:
                c.close()
            for proc in nodes.values():
                await proc.close()
                if "Traceback" in proc.log:
                    print(proc.log[-3000:], file=sys.stderr)
            keys = list(r.scan_iter(f"{prefix}:*"))
            if keys:
                r.delete(*keys)


if __name__ == "__main__":
    asyncio.run(main())

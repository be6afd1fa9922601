#!/usr/bin/env python3
"""Server CPU per one-to-one message: sender and recipient on the same node vs on two nodes.

Two real ``xmppd`` processes (the console script), one cluster on a Redis (default the shared
127.0.0.1:6379, under a key prefix of this run's own, removed after), one SQLite file. alice
sends N chat messages to bob's full JID over a raw plaintext stream, pipelined; the run ends when
bob has read all N. CPU is the servers' user+system time (/proc/<pid>/stat) over the run, both
processes summed, and Redis's (``INFO cpu``: on a shared Redis that includes others' load).
Figures only; issue 17's goal: cross-node ≤ 1.5× same-node.

    python bench/cluster_route_bench.py [--messages 5000] [--redis redis://127.0.0.1:6379/0]
        [--profile DIR]   # each node under cProfile: DIR/a.prof, DIR/b.prof (CPU figures then inflated)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster.procs import BIN, Proc, cluster_args, free_port, start_xmppd, xmppctl  # noqa: E402
from tests.helpers import PASSWORD, RawClient  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def redis_cpu(r) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def login(port: int, user: str, resource: str) -> RawClient:
    c = await RawClient.connect(SimpleNamespace(ports={"c2s": port}))  # type: ignore[arg-type]
    await c.plain_login(user, resource=resource)
    return c


async def settled(r, quiet: int = 3) -> int:
    """Until the nodes stopped sending Redis what the messages caused (work an outbox still does
    after bob read his last message: the carbons' look-ups of the same-node run, the XDELs):
    ``quiet`` consecutive 50 ms windows with at most 2 commands (idle traffic: a heartbeat, a
    blocked XREAD). Returns how many INFO commands it sent."""
    last = r.info("stats")["total_commands_processed"]
    sent, calm = 1, 0
    while calm < quiet and sent < 200:
        await asyncio.sleep(0.05)
        now = r.info("stats")["total_commands_processed"] - 1  # (this INFO)
        sent += 1
        calm = calm + 1 if now - last <= 2 else 0
        last = now + 1
    return sent


async def run_once(ports: dict[str, int], pids: list[int], r, sender_node: str, recipient_node: str, n: int,
                   settle: bool = True) -> dict[str, float]:
    alice = await login(ports[sender_node], "alice", "bench")
    bob = await login(ports[recipient_node], "bob", "bench")
    try:
        body = "x" * 40
        stanzas = "".join(f"<message type='chat' to='bob@localhost/bench' id='m{i}'><body>{body}</body></message>" for i in range(n))
        before = [cpu(p) for p in pids]
        rb = redis_cpu(r)
        cmds = r.info("stats")["total_commands_processed"]
        t0 = time.perf_counter()
        await alice.send(stanzas)
        got = 0
        tail = b""
        while got < n:
            try:
                chunk = await asyncio.wait_for(bob.reader.read(1 << 20), 20)
            except TimeoutError:
                raise RuntimeError(f"bob got {got} of {n}") from None
            if not chunk:
                raise EOFError("bob's stream closed")
            data = tail + chunk
            got += data.count(b"</message>")
            tail = data[-9:]  # a closing tag split between two reads, never counted twice
        wall = time.perf_counter() - t0
        infos = await settled(r) if settle else 0
        after = [cpu(p) for p in pids]
        server = sum(after) - sum(before)
        redis = redis_cpu(r) - rb
        commands = r.info("stats")["total_commands_processed"] - cmds - infos
        return {
            "messages": n, "wall_s": round(wall, 3), "server_cpu_us_per_msg": round(server / n * 1e6, 1),
            "redis_cpu_us_per_msg": round(redis / n * 1e6, 1), "redis_commands_per_msg": round(commands / n, 2),
            "node_cpu_us_per_msg": [round((x - y) / n * 1e6, 1) for x, y in zip(after, before, strict=True)],
        }
    finally:
        alice.close()
        bob.close()
        await asyncio.sleep(0.3)


async def profiled(data_dir: Path, out: Path, *args: str) -> Proc:
    """An ``xmppd`` node like ``start_xmppd``'s, under cProfile."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cProfile", "-o", str(out), str(BIN / "xmppd"),
        "--set", f"server.data_dir={data_dir}", "--set", f"listen.c2s=127.0.0.1:{port}", "--set", "listen.c2s_tls=",
        "--set", "listen.http=", "--set", "c2s.auth_failures_per_ip=1000", *args,
        stderr=asyncio.subprocess.PIPE, cwd=data_dir.parent,
    )
    return Proc(proc, data_dir, port)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3, help="best of this many runs per scenario")
    ap.add_argument("--redis", default=os.environ.get("XMPPD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--no-settle", action="store_true",
                    help="stop the clock when bob has read the last message (before: work the nodes' outboxes did after it, "
                         "such as the same-node run's carbons look-ups, was not counted)")
    ap.add_argument("--profile", metavar="DIR", help="run each node under cProfile, writing DIR/<node>.prof")
    ap.add_argument("--xmppd-set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="more overrides for both nodes")
    args = ap.parse_args()
    import redis

    r = redis.Redis.from_url(args.redis, decode_responses=True)
    prefix = f"xb{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="xmppd-cluster-bench-") as tmp_s:
        tmp = Path(tmp_s)
        storage = ["--set", f"storage.url=sqlite+aiosqlite:///{(tmp / 'shared.db').as_posix()}", "--set", "storage.auto_upgrade=true"]
        for user in ("alice", "bob"):
            out = xmppctl(*storage, "--set", f"server.data_dir={tmp / 'ctl'}", "user", "add", f"{user}@localhost", "--password", PASSWORD, cwd=tmp)
            assert out.returncode == 0, out.stderr
        common = [*cluster_args(args.redis, prefix), *storage, "--set", "c2s.require_tls=false", "--set", "log.level=warning",
                  "--set", "c2s.rate_stanzas=0", "--set", "c2s.rate_bytes=0", *(x for kv in args.xmppd_set for x in ("--set", kv))]
        if args.profile:
            os.makedirs(args.profile, exist_ok=True)
            nodes = {name: await profiled(tmp / name, Path(args.profile) / f"{name}.prof", *common, "--set", f"cluster.node={name}")
                     for name in ("a", "b")}
        else:
            nodes = {name: await start_xmppd(tmp / name, *common, "--set", f"cluster.node={name}") for name in ("a", "b")}
        try:
            for _ in range(2400):  # (up to 2 min: a loaded machine starts slowly)
                if r.exists(f"{prefix}:node:a", f"{prefix}:node:b") == 2:
                    break
                await asyncio.sleep(0.05)
            ports = {k: p.port for k, p in nodes.items()}
            pids = [p.pid for p in nodes.values()]
            results = {}
            for label, (s, d) in (("same_node", ("a", "a")), ("cross_node", ("a", "b"))):
                runs = [await run_once(ports, pids, r, s, d, args.messages, not args.no_settle) for _ in range(args.rounds)]
                results[label] = min(runs, key=lambda x: x["server_cpu_us_per_msg"])
                print(label, json.dumps(results[label]), flush=True)
            ratio = results["cross_node"]["server_cpu_us_per_msg"] / results["same_node"]["server_cpu_us_per_msg"]
            print(f"cross/same server CPU per message: {ratio:.2f}x (goal ≤ 1.5x)")
        finally:
            for proc in nodes.values():
                if args.profile:  # a graceful stop: cProfile writes its file on exit
                    proc.proc.terminate()
                    await proc.wait(60)
                await proc.close()
                if "Traceback" in proc.log or "ERROR" in proc.log:
                    print(proc.log[-3000:], file=sys.stderr)
            keys = list(r.scan_iter(f"{prefix}:*"))
            if keys:
                r.delete(*keys)


if __name__ == "__main__":
    asyncio.run(main())

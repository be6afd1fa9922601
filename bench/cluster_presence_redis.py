#!/usr/bin/env python3
"""Redis commands per presence broadcast in a cluster (issue 17), counted with MONITOR.

A private ``redis-server`` on a free port (nothing else talks to it), two ``xmppd`` nodes (the
console script), one SQLite file. alice has K contacts subscribed both ways (the handshakes run
on alpha first); then alice is on alpha, the contacts spread: some on beta, some on alpha, some
offline. alice changes her status N times (each waited for by a contact on beta); the commands
Redis saw in that window, minus those of an idle window of the same length (heartbeats, the bus
readers' blocking reads), divided by N. Commands run inside Lua scripts are listed apart
("in scripts"); round trips are what clients sent. Figures only.

    python bench/cluster_presence_redis.py [--contacts 10] [--beta 5] [--alpha 3] [--changes 20]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster.procs import cluster_args, free_port, start_xmppd, wait_port, xmppctl  # noqa: E402
from tests.helpers import PASSWORD, slix, slix_close  # noqa: E402

_LINE = re.compile(r'^\d+\.\d+ \[\d+ (lua|[\d.:]+)\] "([A-Za-z]+)"')


def count(lines: list[str]) -> tuple[collections.Counter[str], collections.Counter[str]]:
    sent: collections.Counter[str] = collections.Counter()
    inner: collections.Counter[str] = collections.Counter()
    for line in lines:
        m = _LINE.match(line)
        if m:
            (inner if m.group(1) == "lua" else sent)[m.group(2).upper()] += 1
    return sent, inner


async def window(port: int, seconds: float, work=None) -> list[str]:
    """MONITOR's lines while ``work`` runs (at least ``seconds``), read by a thread with redis-py
    (redis-cli's buffered output loses its tail when stopped)."""
    import threading

    import redis

    lines: list[str] = []
    stop = threading.Event()
    ready = threading.Event()
    marker = f"bench-stop-{uuid.uuid4().hex}"

    def read() -> None:
        r = redis.Redis(port=port, decode_responses=True)
        with r.monitor() as m:
            ready.set()
            for cmd in m.listen():
                if marker in cmd["command"]:
                    break
                if not stop.is_set():
                    lines.append(f'{cmd["time"]} [0 {"lua" if cmd.get("client_type") == "lua" else cmd.get("client_address", "?")}] "{cmd["command"].split(" ", 1)[0]}"')
        r.close()

    t = threading.Thread(target=read)
    t.start()
    ready.wait(10)
    await asyncio.sleep(0.3)
    started = time.monotonic()
    if work is not None:
        await work()
    rest = seconds - (time.monotonic() - started)
    if rest > 0:
        await asyncio.sleep(rest)
    stop.set()
    redis.Redis(port=port).echo(marker)
    t.join(10)
    return lines


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=10)
    ap.add_argument("--beta", type=int, default=5)
    ap.add_argument("--alpha", type=int, default=3)
    ap.add_argument("--changes", type=int, default=20)
    a = ap.parse_args()
    port = free_port()
    redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL)
    wait_port(port)
    tmp = Path(tempfile.mkdtemp(prefix="presence-bench-"))
    storage = ["--set", f"storage.url=sqlite+aiosqlite:///{tmp / 'shared.db'}", "--set", "storage.auto_upgrade=true"]
    names = ["alice", *(f"c{i}" for i in range(a.contacts))]
    for n in names:
        r = xmppctl(*storage, "--set", f"server.data_dir={tmp / 'ctl'}", "user", "add", f"{n}@localhost", "--password", PASSWORD, cwd=tmp)
        assert r.returncode == 0, r.stderr
    args = [*cluster_args(f"redis://127.0.0.1:{port}/0", f"b{uuid.uuid4().hex[:6]}"), *storage]
    nodes = {n: await start_xmppd(tmp / n, *args, "--set", f"cluster.node={n}") for n in ("alpha", "beta")}
    clients = []
    try:
        for p in nodes.values():
            await p.wait_log("joined the cluster")
        await nodes["alpha"].wait_log("node beta is up")
        srv = {n: p.as_server() for n, p in nodes.items()}
        alice = await slix(srv["alpha"], "alice@localhost")
        await alice.get_roster()
        alice.send_presence()
        for i in range(a.contacts):  # the handshakes, on alpha
            c = await slix(srv["alpha"], f"c{i}@localhost")
            await c.get_roster()
            c.send_presence()
            alice.send_presence_subscription(pto=f"c{i}@localhost")
            while alice.client_roster[f"c{i}@localhost"]["subscription"] != "both":
                await asyncio.sleep(0.05)
            await slix_close(c)
        placed = ["beta"] * a.beta + ["alpha"] * a.alpha
        watcher = None
        for i, where in enumerate(placed):
            c = await slix(srv[where], f"c{i}@localhost")
            c.send_presence()
            clients.append(c)
            if where == "beta" and watcher is None:
                watcher = c
        await asyncio.sleep(1.5)
        assert watcher is not None
        got: asyncio.Queue[str] = asyncio.Queue()
        watcher.add_event_handler("presence", lambda p: got.put_nowait(p["status"]) if p["from"].bare == "alice@localhost" else None)

        async def changes() -> None:
            for n in range(a.changes):
                alice.send_presence(pstatus=f"s{n}")
                while await asyncio.wait_for(got.get(), 10) != f"s{n}":
                    pass

        seconds = 4.0
        busy = await window(port, seconds, changes)
        idle = await window(port, seconds)
        bs, bi = count(busy)
        is_, ii = count(idle)
        print(f"contacts {a.contacts}: {a.beta} on beta, {a.alpha} on alpha, {a.contacts - a.beta - a.alpha} offline; {a.changes} status changes by alice (on alpha)")
        for label, b, i in (("sent by clients (round trips)", bs, is_), ("in scripts", bi, ii)):
            per = {k: (b[k] - i[k]) / a.changes for k in sorted(set(b) | set(i)) if b[k] - i[k] > 0}
            print(f"  {label}: {sum(per.values()):.1f} per broadcast {dict((k, round(v, 2)) for k, v in per.items())}")
        await slix_close(alice)
    finally:
        for c in clients:
            await slix_close(c)
        for p in nodes.values():
            await p.close()
        redis.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

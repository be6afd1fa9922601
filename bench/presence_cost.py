#!/usr/bin/env python3
"""Per-feature cost of initial presence: the wall and CPU time of every hook handler that runs on
a login's initial presence (``stanza-in`` and ``presence/broadcast``), averaged over N logins.

Full logins (SCRAM-SHA-1, bind, session, initial presence, its echo) against an in-process
server (every installed feature, SQLite in a temp dir, the default configuration with the
limits a load test needs lifted), one at a time so that no two handlers interleave. CPU is the
process's (driver threads included; the load generator's own work is outside the handlers).

    PYTHONPATH=. python bench/presence_cost.py [--logins 150] [--set SECTION.KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import Target  # noqa: E402
from loadgen.core import Context  # noqa: E402

import xmppd.core.hooks as H  # noqa: E402
from tests.helpers import running_server  # noqa: E402

TIMED = ("presence/broadcast", "stanza-in")
wall: dict[str, float] = collections.defaultdict(float)
cpu: dict[str, float] = collections.defaultdict(float)


async def _timed_run(self: H.HookChains, hook: Any, payload: Any) -> H.Flow:
    """HookChains.run, timing each handler when the payload is an initial/available broadcast presence."""
    handlers = self._handlers.get(hook.name)
    if not handlers:
        return H.Flow.CONTINUE
    st = getattr(payload, "stanza", None)
    timed = hook.name in TIMED and st is not None and st.tag.endswith("presence") and st.get("type") is None and st.get("to") is None
    for handler in handlers:
        if timed:
            t0, c0 = time.perf_counter(), time.process_time()
            flow = await handler(payload)
            key = f"{hook.name}: {getattr(handler, '__module__', '').replace('xmppd.features.', '')}.{getattr(handler, '__qualname__', '?')}"
            wall[key] += time.perf_counter() - t0
            cpu[key] += time.process_time() - c0
        else:
            flow = await handler(payload)
        if flow is not H.Flow.CONTINUE:
            if flow is H.Flow.STOP:
                return H.Flow.STOP
            raise TypeError(f"hook handler {handler!r} returned {flow!r}")
    return H.Flow.CONTINUE


async def main(args: argparse.Namespace) -> None:
    H.HookChains.run = _timed_run  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        async with running_server(
            Path(tmp), "c2s.require_tls=false", "registration.open=true", "registration.per_ip_per_hour=1000000",
            "c2s.rate_bytes=0", "c2s.rate_stanzas=0", "c2s.preauth_rate_bytes=0", "c2s.preauth_rate_stanzas=0",
            "c2s.auth_failures_per_ip=1000000", "c2s.max_connections_per_ip=100000", *args.set,
        ) as server:
            ctx = Context(Target("xmppd", "127.0.0.1", server.ports["c2s"], server.domain))
            names = await ctx.accounts(args.logins)
            for c in await ctx.login_many(names[:20], 5, presence=True, wait_echo=True):  # warm-up
                c.close()
            wall.clear()
            cpu.clear()
            t0 = time.perf_counter()
            for u in names:
                c = await ctx.login(u, presence=True, wait_echo=True)
                c.close()
            n = len(names)
            print(f"{n} full logins one at a time: {1000 * (time.perf_counter() - t0) / n:.2f} ms each (wall, client included)")
            for key, w in sorted(wall.items(), key=lambda kv: -cpu[kv[0]]):
                print(f"  {1e6 * cpu[key] / n:9.1f} µs CPU  {1e6 * w / n:9.1f} µs wall per login  {key}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logins", type=int, default=150)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    asyncio.run(main(p.parse_args()))

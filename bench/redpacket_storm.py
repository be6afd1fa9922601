#!/usr/bin/env python3
"""Red packets (urn:xmppd:redpacket:0): a grab storm against xmppd on SQLite and on MariaDB.

    python bench/redpacket_storm.py                          # SQLite, then MariaDB (a fresh database)
    python bench/redpacket_storm.py --backends sqlite --param packets=10 --param grabbers=50
    python bench/redpacket_storm.py --json results.json

Per backend: start xmppd on free loopback ports (``server.admins`` names the bench admin),
register ``grabbers`` accounts in-band, let them all join one room, top up the ``senders``
through the admin's XEP-0050 top-up command, send ``packets`` lucky packets of ``shares`` shares
to the room, then every grabber opens every packet at once (one iq in flight per client; each
grabber starts at a different packet). Reports successful grabs per second and the p50/p99
latency of the open iqs, checks that every share went exactly once and that the money adds
up, and prints the admin audit command's report (the ``xmppctl wallet audit`` text). MariaDB
gets a database ``xmppd_rpstorm_<pid>`` created for the run and dropped after it.

Also registered as the load generator scenario ``redpacket_storm`` (bench/loadgen), which
needs a server whose ``server.admins`` contains the ``admin`` parameter's account.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen.client import NS_CLIENT, Client, XmppError, esc  # noqa: E402
from loadgen.core import PASSWORD, REGISTRY, Context, Meter, NotAvailable, gather_all, run_scenario, scenario  # noqa: E402
from loadgen.servers import DOMAIN, Xmppd  # noqa: E402

NS_RP = "urn:xmppd:redpacket:0"
NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
ADMIN = "rpadmin"
MARIADB = "mysql+aiomysql://root@127.0.0.1:3306"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ------------------------------------------------------------------------------ wire helpers


async def _command(admin: Client, node: str, fields: dict[str, str] | None = None) -> str:
    """Run an ad-hoc command (XEP-0050): execute, then complete with ``fields``; the notes' text."""
    cmd = f"<command xmlns='{NS_COMMANDS}' node='{esc(node)}' action='execute'/>"
    try:
        reply = await admin.iq(cmd, type="set", to=admin.domain)
    except XmppError as exc:
        if "forbidden" in str(exc) or "item-not-found" in str(exc):
            raise NotAvailable(f"{node}: the bench account is not a server admin ({exc})") from None
        raise
    c = reply.find(f"{{{NS_COMMANDS}}}command")
    if fields is not None and c.get("status") == "executing":
        x = "".join(f"<field var='{esc(k)}'><value>{esc(v)}</value></field>" for k, v in fields.items())
        cmd = (f"<command xmlns='{NS_COMMANDS}' node='{esc(node)}' sessionid='{esc(c.get('sessionid', ''))}' action='complete'>"
               f"<x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE'><value>{NS_RP}#admin</value></field>{x}</x></command>")
        c = (await admin.iq(cmd, type="set", to=admin.domain)).find(f"{{{NS_COMMANDS}}}command")
    notes = [(n.get("type", "info"), n.text or "") for n in c.iterfind(f"{{{NS_COMMANDS}}}note")]
    if c.get("status") != "completed" or any(t == "error" for t, _ in notes) and node != f"{NS_RP}#audit":
        raise XmppError(f"{node}: {c.get('status')}: {notes}")
    return "\n".join(text for _, text in notes)


async def _join(c: Client, room: str, nick: str) -> None:
    c.send(f"<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>".encode())

    def self_presence(el: etree._Element) -> bool:
        if el.tag != f"{{{NS_CLIENT}}}presence" or el.get("from") != f"{room}/{nick}":
            return False
        if el.get("type") == "error":
            raise XmppError(f"join refused: {etree.tostring(el)[:300]!r}")
        return True

    pres = await c.recv_until(self_presence)
    codes = {s.get("code") for s in pres.iterfind(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}status")}
    if "201" in codes:  # a new, locked room: accept the default configuration
        await c.iq(f"<query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' type='submit'/></query>", type="set", to=room)


# ------------------------------------------------------------------------------ the scenario


@scenario("redpacket_storm", max_seconds=600)
async def redpacket_storm(ctx: Context, packets: int = 50, shares: int = 100, grabbers: int = 200, senders: int = 10,
                          total: int = 10000, concurrency: int = 50, admin: str = ADMIN) -> dict[str, Any]:
    """Red-packet grab storm: ``grabbers`` room members open ``packets`` x ``shares`` at once (grabs/s, latency)."""
    ctx.timeout = max(ctx.timeout, 60.0)  # an open may queue behind thousands of others (p99 of seconds)
    phase = ["accounts"]
    try:
        return await _storm(ctx, phase, packets, shares, grabbers, senders, total, concurrency, admin)
    except XmppError as exc:
        raise XmppError(f"{phase[0]}: {exc}") from None


async def _storm(ctx: Context, phase: list[str], packets: int, shares: int, grabbers: int, senders: int,
                 total: int, concurrency: int, admin: str) -> dict[str, Any]:
    if not 1 <= senders <= grabbers or packets < 1 or shares < 1 or total < shares:
        raise ValueError("need 1 <= senders <= grabbers, packets >= 1 and total >= shares")
    t = ctx.target
    names = await ctx.accounts(grabbers, concurrency)
    reg = Client(t.domain, timeout=ctx.timeout)
    try:
        await reg.connect_tcp(t.host, t.port)
        await reg.register(admin, PASSWORD)  # False when it exists already: fine
    finally:
        reg.close()
    boss = await ctx.login(admin)
    info = await boss.iq(f"<query xmlns='{NS_DISCO_INFO}'/>", to=t.domain)
    if info.find(f".//{{{NS_DISCO_INFO}}}feature[@var='{NS_RP}']") is None:
        raise NotAvailable(f"feature missing: {NS_RP}")
    bal = (await boss.iq(f"<balance xmlns='{NS_RP}'/>", to=t.domain)).find(f"{{{NS_RP}}}balance")
    precision = int(bal.get("precision", "2"))

    phase[0] = "logins and joins"
    # Room: the first grabber creates it, everyone joins (members may send and open).
    clients = await ctx.login_many(names, concurrency)
    room = f"rpstorm{os.getpid()}{int(time.time())}@{t.muc_domain or 'conference.' + t.domain}"
    await _join(clients[0], room, names[0])
    sem = asyncio.Semaphore(concurrency)

    async def join(i: int) -> None:
        async with sem:
            await _join(clients[i], room, names[i])

    await gather_all([join(i) for i in range(1, grabbers)])

    phase[0] = "top-ups"
    # Money: the admin tops each sender up through the ad-hoc command (display units).
    per_sender = -(-packets // senders) * total
    display = f"{per_sender // 10**precision}.{per_sender % 10**precision:0{precision}d}" if precision else str(per_sender)
    for i in range(senders):
        await _command(boss, f"{NS_RP}#topup", {"accountjid": f"{names[i]}@{t.domain}", "amount": display, "reason": "bench"})

    phase[0] = "sending"
    # Send the packets (each sender its share of them, senders in parallel).
    ids: list[str] = []
    run_tag = f"{os.getpid()}-{int(time.time() * 1000)}"

    async def send_all(s: int) -> None:
        for k in range(s, packets, senders):
            r = await clients[s].iq(f"<send xmlns='{NS_RP}' kind='lucky' total='{total}' count='{shares}' to='{room}' "
                                    f"client-id='storm-{run_tag}-{k}'/>", type="set", to=t.domain)
            ids.append(r.find(f"{{{NS_RP}}}sent").get("id"))

    t0 = time.perf_counter()
    await gather_all([send_all(s) for s in range(senders)])
    send_seconds = time.perf_counter() - t0

    phase[0] = "the storm"
    # The storm: every grabber opens every packet, one iq in flight per client.
    ok_lat: list[float] = []
    all_lat: list[float] = []
    outcomes: dict[str, int] = {}
    got: dict[str, list[int]] = {pid: [] for pid in ids}
    go = asyncio.Event()

    async def grab(i: int) -> None:
        c = clients[i]
        await go.wait()
        for k in range(packets):
            pid = ids[(i + k) % packets]
            s = time.perf_counter()
            try:
                r = await c.iq(f"<open xmlns='{NS_RP}' id='{pid}'/>", type="set", to=t.domain)
            except XmppError as exc:
                all_lat.append(time.perf_counter() - s)
                why = str(exc).rsplit(" ", 1)[-1] if str(exc).startswith("iq error") else str(exc)
                outcomes[why] = outcomes.get(why, 0) + 1
                if why not in ("all-gone",):
                    raise
                continue
            d = time.perf_counter() - s
            ok_lat.append(d)
            all_lat.append(d)
            outcomes["opened"] = outcomes.get("opened", 0) + 1
            got[pid].append(int(r.find(f"{{{NS_RP}}}opened").get("amount")))

    tasks = [asyncio.ensure_future(grab(i)) for i in range(grabbers)]
    await asyncio.sleep(0.2)
    m = Meter(t)
    go.set()
    try:
        await gather_all(tasks)
    finally:
        for task in tasks:
            task.cancel()
    cpu = m.stop()
    grabs = outcomes.get("opened", 0)
    exact = all(len(v) == min(shares, grabbers) and (sum(v) == total or shares > grabbers) for v in got.values())

    phase[0] = "audit"
    boss.close()  # idle through the storm: a fresh session asks for the audit
    audit = await _command(await ctx.login(admin), f"{NS_RP}#audit")
    return {
        "value": round(grabs / m.elapsed, 1), "unit": "grabs/s",
        "grabs": grabs, "attempts": len(all_lat), "outcomes": outcomes, "seconds": round(m.elapsed, 3),
        "attempts_per_s": round(len(all_lat) / m.elapsed, 1),
        "p50_ms": round(_pct(ok_lat, 0.50) * 1000, 2), "p99_ms": round(_pct(ok_lat, 0.99) * 1000, 2),
        "all_p50_ms": round(_pct(all_lat, 0.50) * 1000, 2), "all_p99_ms": round(_pct(all_lat, 0.99) * 1000, 2),
        "send_per_s": round(packets / send_seconds, 1),
        "every_share_once": exact, "audit_ok": audit.splitlines()[-1] == "audit OK", "audit": audit, **cpu,
    }


# ------------------------------------------------------------------------------ the runner


class StormXmppd(Xmppd):
    """The load generator's xmppd with extra ``--set`` overrides (admin, storage)."""

    def __init__(self, cpu: int | None, extra: list[str]) -> None:
        super().__init__(cpu)
        self.extra = extra

    def _spawn(self, argv: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        super()._spawn(argv + [a for o in self.extra for a in ("--set", o)], port, env, cwd)


def _mariadb(sql: str) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


async def run_backend(backend: str, cpu: int | None, params: dict[str, Any]) -> dict[str, Any]:
    extra = [f'server.admins=["{params.get("admin", ADMIN)}@{DOMAIN}"]', "redpacket.expiry=3600.0", "muc.max_occupants=1000",
             "ping.idle=0"]  # the load generator answers no pings
    db = None
    if backend == "mariadb":
        db = f"xmppd_rpstorm_{os.getpid()}"
        _mariadb(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        extra += [f"storage.url={MARIADB}/{db}?charset=utf8mb4", "storage.auto_upgrade=true", "storage.pool_size=20"]
    server = StormXmppd(cpu, extra)
    try:
        target = server.start()
        target.name = f"xmppd-{backend}"
        return await run_scenario(target, "redpacket_storm", params)
    finally:
        server.stop()
        if db is not None:
            _mariadb(f"DROP DATABASE IF EXISTS `{db}`")


def table(results: list[dict[str, Any]]) -> str:
    head = ["backend", "packets x shares", "grabbers", "grabs", "attempts", "seconds", "grabs/s", "p50 ms", "p99 ms",
            "server CPU", "shares once", "audit"]
    rows = [head]
    for r in results:
        p = r["params"]
        if r.get("status") != "ok":
            rows.append([r["server"], f"{p['packets']} x {p['shares']}", str(p["grabbers"]), r["status"][:60]] + [""] * 8)
            continue
        rows.append([r["server"], f"{p['packets']} x {p['shares']}", str(p["grabbers"]), str(r["grabs"]), str(r["attempts"]),
                     f"{r['seconds']:.2f}", f"{r['value']:,.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                     f"{r.get('server_cpu', 0):.2f}", "yes" if r["every_share_once"] else "NO",
                     "OK" if r["audit_ok"] else "FAILED"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))) for row in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


async def amain(args: argparse.Namespace) -> tuple[int, str]:
    sc = REGISTRY["redpacket_storm"]
    params: dict[str, Any] = {}
    for item in args.param:
        key, _, value = item.partition("=")
        if key not in sc.params:
            raise SystemExit(f"unknown parameter {key!r}; known: {', '.join(sc.params)}")
        params[key] = type(sc.params[key])(value)
    results = []
    for backend in args.backends.split(","):
        if backend not in ("sqlite", "mariadb"):
            raise SystemExit(f"unknown backend {backend!r}: sqlite or mariadb")
        print(f"xmppd on {backend}: running the grab storm", flush=True)
        r = await run_backend(backend, args.server_cpu, params)
        results.append(r)
        print(f"  {r['status']}", flush=True)
        if "audit" in r:
            print("  " + r["audit"].replace("\n", "\n  "), flush=True)
    print()
    print(table(results))
    doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "server_cpu": args.server_cpu, "results": results}
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    print(text)
    return (0 if all(r.get("status") == "ok" and r["audit_ok"] and r["every_share_once"] for r in results) else 1), text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,mariadb", help="comma-separated: sqlite, mariadb")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="packets, shares, grabbers, senders, total (minor units), concurrency (logins, joins)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--loadgen-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    p.add_argument("--json", help="also write the JSON to this file")
    args = p.parse_args(argv)
    try:
        os.sched_setaffinity(0, {args.loadgen_cpu})
    except (AttributeError, OSError):
        pass
    code, text = asyncio.run(amain(args))
    if args.json:
        Path(args.json).write_text(text)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

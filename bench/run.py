#!/usr/bin/env python3
"""Run the xmppd benchmarks (and, when installed, the same against Prosody and ejabberd).

    python bench/run.py --all                       # every scenario, every installed server
    python bench/run.py --servers xmppd --scenarios logins,one2one
    python bench/run.py --quick --all               # tiny parameters: a functional check in seconds
    python bench/run.py --target 127.0.0.1:5222 --domain example.com --ws-url ws://127.0.0.1:5280/xmpp-websocket --scenarios logins
    python bench/run.py --list

Servers are started pinned to CPU 0 (``--server-cpu``), the load generator pins itself to CPU 1
(``--loadgen-cpu``). Prints a table (ratios against the goal and side by side) and writes JSON
to bench/results/ (or ``--json FILE``).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import REGISTRY, Target, run_scenario  # noqa: E402
from loadgen.servers import SERVERS  # noqa: E402

# (label, scenario, metric, higher is better, Prosody 0.12 goal, ejabberd 23.01 goal) from issue 7.
ROWS: list[tuple[str, str, str, bool, float | None, float | None]] = [
    ("logins: bind, session, initial presence and its echo (/s)", "logins", "value", True, 737, None),
    ("logins that stop after binding (/s)", "logins_bind", "value", True, None, None),
    ("idle connection, server memory (KiB)", "idle_memory", "value", False, 53, 66),
    ("one-to-one, 100 pairs x 10 in flight (msg/s)", "one2one", "value", True, 15700, 11400),
    ("one-to-one, 10 pairs x 1 in flight (msg/s)", "one2one_latency", "value", True, 9000, 6000),
    ("  same: p50 latency (ms)", "one2one_latency", "p50_ms", False, 0.79, 1.3),
    ("room fan-out, 100 occupants (delivered/s)", "muc_fanout", "value", True, 14500, 21000),
    ("room fan-out, 500 occupants (delivered/s)", "muc_fanout_500", "value", True, 16400, 22800),
    ("presence: login wave, 1,000 x 20 contacts (s)", "presence", "wave_seconds", False, 4.2, 6.3),
    ("presence updates delivered (/s)", "presence", "updates_per_s", True, 22400, 15100),
    ("WebSocket logins, same flow (/s)", "ws_logins", "value", True, None, 579),
    ("WebSocket logins that stop after binding (/s)", "ws_logins_bind", "value", True, None, None),
    ("WebSocket one-to-one (msg/s)", "ws_one2one", "value", True, 10000, 6200),
    ("logins with STARTTLS (/s)", "logins_tls", "value", True, None, None),
    ("logins with SCRAM-SHA-256 (/s)", "logins_sha256", "value", True, None, None),
]

# Issue 22: what the default configuration (archive on, the "xmppd+mam" column; "xmppd+mariadb"
# is measured against it too) must reach, by (scenario, metric); and the message rows on which the
# archive-off "xmppd" column must be at least TWICE the best peer.
GOALS_ARCHIVE_ON: dict[tuple[str, str], float] = {
    ("logins", "value"): 800,
    ("ws_logins", "value"): 620,
    ("one2one", "value"): 16000,
    ("one2one_latency", "value"): 9100,
    ("one2one_latency", "p50_ms"): 0.75,
    ("ws_one2one", "value"): 10100,
    ("presence", "wave_seconds"): 4.0,
}
TWICE = (("one2one", "value"), ("one2one_latency", "value"), ("ws_one2one", "value"))
TWICE_FACTOR = 2.0

# Runs per cell unless --rounds / --repeat say otherwise (issue 22: medians of three runs).
RUNS = 3

# Tiny parameters: every scenario in a few seconds (a functional check, not a measurement).
QUICK: dict[str, dict[str, Any]] = {
    "logins": {"users": 40, "concurrency": 10},
    "logins_bind": {"users": 40, "concurrency": 10},
    "ws_logins_bind": {"users": 20, "concurrency": 10},
    "logins_tls": {"users": 20, "concurrency": 10},
    "logins_sha256": {"users": 20, "concurrency": 10},
    "ws_logins": {"users": 20, "concurrency": 10},
    "idle_memory": {"connections": 50, "settle": 0.3},
    "one2one": {"pairs": 10, "window": 5, "messages": 2000, "seconds": 5},
    "one2one_latency": {"pairs": 4, "messages": 400, "seconds": 5},
    "ws_one2one": {"pairs": 10, "window": 5, "messages": 1000, "seconds": 5},
    "muc_fanout": {"occupants": 10, "senders": 3, "messages": 100, "seconds": 5},
    "muc_fanout_500": {"occupants": 20, "senders": 3, "messages": 50, "seconds": 5},
    "presence": {"users": 30, "contacts": 4, "updates": 300, "seconds": 5},
}

# Like for like: the xmppd column runs what Debian's Prosody and ejabberd run by default, so
# without the XEP-0313 archive (neither of their default configs loads mod_mam). The
# "xmppd+mam" column runs every installed feature, archive included (SQLite), for the
# scenarios that the archive slows down: what a user gets out of the box.
LIKE_FOR_LIKE = ['features.disabled=["mam"]']
MAM_SCENARIOS = ("logins", "ws_logins", "one2one", "one2one_latency", "ws_one2one", "muc_fanout", "muc_fanout_500", "presence")
# "xmppd+mariadb": the default configuration (archive on) on MariaDB instead of SQLite, in a
# database of its own on BENCH_MYSQL (created for the run, dropped after it).
BENCH_MYSQL = os.environ.get("XMPPD_BENCH_MYSQL", "mysql+aiomysql://root@127.0.0.1:3306")
DEFAULT_SERVERS = ["xmppd", "xmppd+mam", "prosody", "prosody+mam", "ejabberd", "ejabberd+mam", "xmppd+mariadb"]
# The peers with their archive on (mod_mam; bench/servers/*-mam.*): like for like with "xmppd+mam",
# over the same scenarios.
PEERS_MAM = ("prosody+mam", "ejabberd+mam")
XMPPD_VARIANTS = ("xmppd", "xmppd+mam", "xmppd+mariadb")

ORDER = ["idle_memory", "logins", "logins_bind", "logins_sha256", "logins_tls", "ws_logins", "ws_logins_bind", "one2one", "one2one_latency", "ws_one2one", "muc_fanout", "muc_fanout_500", "presence"]


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, _, value = item.partition("=")
        name, _, param = key.partition(".")
        if name not in REGISTRY or param not in REGISTRY[name].params:
            raise SystemExit(f"unknown parameter {key!r} (see --list)")
        kind = type(REGISTRY[name].params[param])
        out.setdefault(name, {})[param] = kind(value)
    return out


def _mysql_connect(server: str = BENCH_MYSQL) -> Any:
    """A pymysql connection to the MariaDB at *server* (a SQLAlchemy URL), without a database."""
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(server)
    return pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", connect_timeout=5)


def _mysql_database(name: str, *, create: bool, server: str = BENCH_MYSQL) -> None:
    """Create (or drop) the MariaDB database of an "xmppd+mariadb" run on BENCH_MYSQL (or *server*)."""
    conn = _mysql_connect(server)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            if create:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()


def _mysql_reachable(server: str = BENCH_MYSQL) -> bool:
    """Whether the MariaDB of the "xmppd+mariadb" column answers (else that column is skipped)."""
    try:
        _mysql_connect(server).close()
    except Exception:  # (pymysql missing, refused, access denied: all mean no column)
        return False
    return True


def _upgrade(url: str) -> None:
    """``xmppctl db upgrade`` on *url* (xmppd does not migrate a MariaDB database by itself)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        conf = Path(d) / "xmppd.toml"
        conf.write_text("")
        subprocess.run([sys.executable, "-c", "from xmppd.cli import xmppctl_main; raise SystemExit(xmppctl_main())", "--config", str(conf),
                        "--set", f"storage.url={url}", "--set", f"server.data_dir={d}", "db", "upgrade"], check=True, capture_output=True, timeout=300)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def _cell(r: dict[str, Any] | None, metric: str, dash: str = "-") -> tuple[str, float | None]:
    """A result's figure as shown (median and min-max over its runs) and its value."""
    if r is None:
        return "-", None
    if r.get("status") != "ok":
        status = r.get("status", "?")
        return ("n/a" if status.startswith("n/a") else status[:40]), None  # the reason is in the JSON and the log above
    v = r.get(metric)
    lo, hi = r.get(f"{metric}_min"), r.get(f"{metric}_max")
    return fmt(v) + (f" ({fmt(lo)}{dash}{fmt(hi)})" if lo is not None and hi is not None else ""), v


def _ratio(a: float | None, b: float | None, higher: bool, need: float = 1.0) -> str:
    """``a`` against ``b`` (>1: better), ``ok`` from ``need`` times up."""
    if not a or not b:
        return "-"
    q = a / b if higher else b / a
    return f"{q:.2f}x " + ("ok" if q >= need else "SHORT")


def table(results: dict[str, dict[str, dict[str, Any]]], servers: list[str]) -> str:
    """Each scenario's figure per server (median and min-max of its runs), against the goals:
    issue 7's (Prosody's and ejabberd's figures), issue 22's for the default configuration
    (archive on: "xmppd+mam", "xmppd+mariadb"), and side by side: the archive-off "xmppd" must
    be twice the best peer on the message rows (``2x`` in the header), "xmppd+mam" ahead of the
    best peer with its archive on."""
    head = ["scenario", "goal", "goal, archive on", *servers]
    others_of = [s for s in servers if not s.startswith("xmppd") and s not in PEERS_MAM]
    others_mam = [s for s in servers if s in PEERS_MAM]
    mine = [s for s in ("xmppd", "xmppd+mam", "xmppd+mariadb") if s in servers]
    head += [f"{s}/goal" for s in mine]
    if others_of and "xmppd" in servers:
        head.append("xmppd/best other (2x on messages)")
    if others_mam and "xmppd+mam" in servers:
        head.append("xmppd+mam/best other+mam")
    lines = [head]
    for label, sc, metric, higher, p, e in ROWS:
        if not any(sc in results.get(s, {}) for s in servers):
            continue
        goals = [g for g in (p, e) if g is not None]
        goal = (max(goals) if higher else min(goals)) if goals else None
        goal_on = GOALS_ARCHIVE_ON.get((sc, metric), goal)
        row = [label, fmt(goal), fmt(goal_on)]
        vals: dict[str, float | None] = {}
        for s in servers:
            shown, vals[s] = _cell(results.get(s, {}).get(sc), metric)
            row.append(shown)
        for s in mine:
            row.append(_ratio(vals.get(s), goal if s == "xmppd" else goal_on, higher))
        for mine_s, peers in (("xmppd", others_of), ("xmppd+mam", others_mam)):
            if peers and mine_s in servers:
                others = [v for s, v in vals.items() if s in peers and v]
                best = (max(others) if higher else min(others)) if others else None
                need = TWICE_FACTOR if mine_s == "xmppd" and (sc, metric) in TWICE else 1.0
                row.append(_ratio(vals.get(mine_s), best, higher, need))
        lines.append(row)
    return _aligned(lines)


def _aligned(lines: list[list[str]]) -> str:
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(lines[0]))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown(results: dict[str, dict[str, dict[str, Any]]], servers: list[str]) -> str:
    """Everything in one Markdown table (issue 22): per scenario and server the median with
    the min-max of its runs, then the server's and the load generator's CPU seconds per 1,000
    operations (medians), e.g. ``9,406 (9,368-9,445); CPU 0.11 / 0.01``."""
    lines = ["| scenario | " + " | ".join(servers) + " |", "| --- |" + " --- |" * len(servers)]
    for label, sc, metric, _higher, _p, _e in ROWS:
        if not any(sc in results.get(s, {}) for s in servers):
            continue
        cells = []
        for s in servers:
            r = results.get(s, {}).get(sc)
            shown, v = _cell(r, metric, "\u2013")
            if v is not None and metric == "value" and r is not None:
                cpu = [r.get(k) for k in ("server_cpu_s_per_1000", "loadgen_cpu_s_per_1000")]
                if all(c is not None for c in cpu):
                    shown += f"; CPU {cpu[0]:.2f} / {cpu[1]:.2f}"
            cells.append(shown)
        lines.append(f"| {label.strip()} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one scenario as one result: the median run's figures, and for every
    number ``<key>_min`` / ``<key>_max`` over the runs (a failed run makes the result failed)."""
    if len(runs) == 1:
        return runs[0]
    bad = [r for r in runs if r.get("status") != "ok"]
    if bad:
        return {**bad[0], "runs": len(runs)}
    out: dict[str, Any] = dict(runs[0])
    for key, v in runs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            values = sorted(r[key] for r in runs if isinstance(r.get(key), (int, float)))
            out[key] = statistics.median(values)
            out[f"{key}_min"], out[f"{key}_max"] = values[0], values[-1]
    out["runs"] = len(runs)
    return out


async def bench_target(target: Target, scenarios: list[str], params: dict[str, dict[str, Any]], repeat: int = 1,
                       runs: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each scenario ``repeat`` times on one running server; the runs are added to ``runs``
    (scenario -> its runs so far: with --rounds, those of the earlier rounds' servers)."""
    out: dict[str, list[dict[str, Any]]] = runs if runs is not None else {}
    for name in scenarios:
        for _ in range(repeat):
            t0 = time.monotonic()
            r = await run_scenario(target, name, params.get(name))
            r["wall_seconds"] = round(time.monotonic() - t0, 1)
            out.setdefault(name, []).append(r)
            extra = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("scenario", "server", "params", "status"))
            print(f"  [{target.name}] {name}: {r['status']}; {extra}", flush=True)
    return out


def cpu_probe(cpu: int) -> float:
    """Seconds a fixed pure-Python loop takes on ``cpu``: how fast the machine is right now (on a
    shared host it varies by more than the differences measured; printed with every round)."""
    code = "import time\nt=time.perf_counter()\ns=0\nfor i in range(3_000_000): s+=i\nprint(time.perf_counter()-t)"
    pin = ["taskset", "-c", str(cpu)] if cpu >= 0 and shutil.which("taskset") else []
    done = subprocess.run([*pin, sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(float(done.stdout), 3)


def cpu_table(results: dict[str, dict[str, dict[str, Any]]], servers: list[str]) -> str:
    """Server and generator CPU seconds per 1,000 operations (logins or messages), medians: the
    figures to compare when the machine is shared (wall-clock rates then measure the neighbours)."""
    lines = [["scenario", *[f"{s} server" for s in servers], *[f"{s} gen." for s in servers]]]
    for sc in ORDER:
        row = [sc]
        cells = []
        for key in ("server_cpu_s_per_1000", "loadgen_cpu_s_per_1000"):
            for s in servers:
                r = results.get(s, {}).get(sc)
                v = r.get(key) if r and r.get("status") == "ok" else None
                lo, hi = (r or {}).get(f"{key}_min"), (r or {}).get(f"{key}_max")
                cells.append("-" if v is None else (f"{v:.2f} ({lo:.2f}-{hi:.2f})" if lo is not None else f"{v:.2f}"))
        if any(c != "-" for c in cells):
            lines.append(row + cells)
    return _aligned(lines)


async def amain(args: argparse.Namespace) -> int:
    scenarios = [s for s in ORDER if s in REGISTRY] if args.all or not args.scenarios else args.scenarios.split(",")
    for s in scenarios:
        if s not in REGISTRY:
            raise SystemExit(f"unknown scenario {s!r}; known: {', '.join(REGISTRY)}")
    params: dict[str, dict[str, Any]] = {}
    if args.quick:
        params = {k: dict(v) for k, v in QUICK.items()}
    for name, p in parse_params(args.param).items():
        params.setdefault(name, {}).update(p)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    servers: list[str] = []
    probes: list[float] = []
    repeat = 1
    if args.target:
        host, _, port = args.target.rpartition(":")
        target = Target("target", host, int(port), args.domain, ws_url=args.ws_url, muc_domain=args.muc_domain, pid=args.pid,
                        provision=shlex.split(args.xmppctl) if args.xmppctl else None)
        servers.append("target")
        repeat = args.repeat if args.repeat is not None else (1 if args.quick else RUNS)
        results["target"] = {k: summarise(v) for k, v in (await bench_target(target, scenarios, params, repeat)).items()}
    else:
        names = args.servers.split(",") if args.servers else DEFAULT_SERVERS
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
        # --rounds: every server in turn, then again: a slow spell of a shared machine falls on
        # each server's runs alike instead of on one server's block of runs.
        rounds = args.rounds if args.rounds is not None else (1 if args.quick or args.repeat else RUNS)
        repeat = args.repeat or 1
        order = [(n, name) for n in range(rounds) for name in names]
        for n, name in order:
            if name == names[0]:
                probe = cpu_probe(args.server_cpu)
                probes.append(probe)
                print(f"round {n + 1} of {rounds}: CPU probe {probe:.3f} s", flush=True)
            if name not in SERVERS and name not in XMPPD_VARIANTS:
                raise SystemExit(f"unknown server {name!r}; known: {', '.join(DEFAULT_SERVERS)}")
            cls = SERVERS["xmppd" if name in XMPPD_VARIANTS else name]
            if not cls.available():
                print(f"{name}: not installed, skipped", flush=True)
                continue
            if name == "xmppd+mariadb" and not _mysql_reachable():
                print(f"xmppd+mariadb: no MariaDB at {BENCH_MYSQL} (XMPPD_BENCH_MYSQL), skipped", flush=True)
                continue
            todo = [sc for sc in scenarios if sc in MAM_SCENARIOS] if name in PEERS_MAM else scenarios
            if not todo:
                continue
            server = cls(args.server_cpu)
            if name.startswith("xmppd"):
                server.provision_xmppctl = args.provision == "xmppctl"  # type: ignore[attr-defined]
            if name == "xmppd":
                server.extra = [*LIKE_FOR_LIKE, *args.xmppd_set]  # type: ignore[attr-defined]
            elif name in ("xmppd+mam", "xmppd+mariadb"):
                server.extra = list(args.xmppd_set)  # type: ignore[attr-defined]
                if name == "xmppd+mariadb":
                    mysql_db = f"xmppd_bench_{os.getpid()}"
                    _mysql_database(mysql_db, create=True)
                    server.extra.append(f"storage.url={BENCH_MYSQL}/{mysql_db}")  # type: ignore[attr-defined]
                    _upgrade(f"{BENCH_MYSQL}/{mysql_db}")
                else:
                    todo = [sc for sc in scenarios if sc in MAM_SCENARIOS]
                if not todo:
                    continue
            try:
                print(f"{name}: starting (CPU {args.server_cpu})", flush=True)
                target = server.start()
                target.name = name
                if name not in servers:
                    servers.append(name)
                await bench_target(target, todo, params, repeat, raw.setdefault(name, {}))
            except RuntimeError as exc:
                print(f"{name}: could not start: {exc}", flush=True)
            finally:
                server.stop()
                if name == "xmppd+mariadb":
                    _mysql_database(f"xmppd_bench_{os.getpid()}", create=False)
        results = {name: {sc: summarise(r) for sc, r in by_scenario.items()} for name, by_scenario in raw.items()}
    print()
    print(table(results, servers))
    print()
    print("CPU seconds per 1,000 operations (medians, min-max):")
    print(cpu_table(results, servers))
    print()
    print("One table (Markdown): median (min-max) of the runs; CPU: server / load generator s per 1,000:")
    print(markdown(results, servers))
    if probes:
        print(f"CPU probe (s, lower is faster) at the start of each round: {', '.join(f'{p:.3f}' for p in probes)}")
    doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": args.quick, "server_cpu": args.server_cpu, "loadgen_cpu": args.loadgen_cpu, "servers": servers, "rounds": len(probes), "repeat": repeat, "cpu_probe_s": probes, "results": results}
    if args.json == "-":
        print(json.dumps(doc, indent=2))
    else:
        # One small write after the run: blocking the loop here costs nothing.
        path = Path(args.json) if args.json else Path(__file__).resolve().parent / "results" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"  # noqa: ASYNC240
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))
        path.with_suffix(".md").write_text(markdown(results, servers) + "\n")
        print(f"\nJSON: {path} (the one table: {path.with_suffix('.md')})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true", help="every scenario (the default when --scenarios is not given)")
    p.add_argument("--scenarios", help="comma-separated scenario names")
    p.add_argument("--servers", help="comma-separated: xmppd (like for like: no archive), xmppd+mam (every feature), xmppd+mariadb, "
                   "prosody, prosody+mam, ejabberd, ejabberd+mam (+mam: with the XEP-0313 archive; default: all installed)")
    p.add_argument("--repeat", type=int, help="runs of each scenario per server start: the table shows the median and min-max "
                   f"(default: 1 per round; against --target {RUNS}, --quick 1)")
    p.add_argument("--rounds", type=int, help="start every server this many times, in turn (each round runs every "
                   "scenario --repeat times on each): on a shared machine, fairer medians than --repeat alone "
                   f"(default: {RUNS}; 1 with --quick or --repeat)")
    p.add_argument("--quick", action="store_true", help="tiny parameters (seconds), for a functional check")
    p.add_argument("--param", action="append", default=[], metavar="SCENARIO.KEY=VALUE")
    p.add_argument("--target", metavar="HOST:PORT", help="an already running server instead of starting ours")
    p.add_argument("--domain", default="localhost")
    p.add_argument("--ws-url")
    p.add_argument("--muc-domain")
    p.add_argument("--pid", type=int, help="the target server's process id (memory and CPU figures)")
    p.add_argument("--provision", choices=("inband", "xmppctl"), default="inband",
                   help="how the xmppd that run.py starts gets its accounts: in-band registration (default) or xmppctl with its configuration")
    p.add_argument("--xmppctl", metavar="COMMAND", help="with --target: make accounts with 'COMMAND user add JID --password P' "
                   "(e.g. 'xmppctl --config /etc/xmppd.toml') instead of in-band registration")
    p.add_argument("--xmppd-set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="extra xmppd config overrides, e.g. 'features.disabled=[\"mam\"]'")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the servers are pinned to; -1: unpinned")
    p.add_argument("--loadgen-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0, help="CPU of the load generator; -1: unpinned")
    p.add_argument("--json", help="where to write the JSON ('-': stdout); default bench/results/run-<time>.json")
    p.add_argument("--list", action="store_true", help="list the scenarios and their parameters")
    args = p.parse_args(argv)
    if args.list:
        for name, sc in REGISTRY.items():
            print(f"{name} (max {sc.max_seconds:.0f}s): {sc.doc}\n    " + " ".join(f"{k}={v}" for k, v in sc.params.items()))
        return 0
    if args.target and not args.target.rpartition(":")[0].startswith(("127.", "localhost", "[::1]", "::1")):
        raise SystemExit("--target must be a loopback address")
    try:
        if args.loadgen_cpu >= 0:  # negative: unpinned
            os.sched_setaffinity(0, {args.loadgen_cpu})
    except (AttributeError, OSError):
        pass
    try:
        import uvloop

        return uvloop.run(amain(args))  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run(amain(args))


if __name__ == "__main__":
    raise SystemExit(main())

"""bench/: the load generator still works (tiny scenarios against an in-process server; counts only, never times)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import running_server

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from loadgen import REGISTRY, Target, run_scenario  # noqa: E402
from loadgen.scram import ScramClient  # noqa: E402

FIGURE_KEYS = {"scenario", "server", "params", "status", "value", "unit", "loadgen_cpu"}


def _target(server) -> Target:  # type: ignore[no-untyped-def]
    return Target("xmppd", "127.0.0.1", server.ports["c2s"], server.domain, ws_url=f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket")


async def test_bench_logins_and_messages_count_right(tmp_path: Path) -> None:
    async with running_server(
        tmp_path, "c2s.require_tls=false", "registration.open=true", "registration.per_ip_per_hour=1000", "listen.http=127.0.0.1:0"
    ) as server:
        target = _target(server)
        logins = await run_scenario(target, "logins", {"users": 20, "concurrency": 5})
        assert logins["status"] == "ok", logins
        assert logins["logins"] == 20
        assert FIGURE_KEYS <= logins.keys()
        # The full flow (session, initial presence, its echo) on WebSocket, and bind-only logins.
        for name, n in (("ws_logins", 4), ("logins_bind", 6), ("ws_logins_bind", 4)):
            r = await run_scenario(target, name, {"users": n, "concurrency": 2})
            assert r["status"] == "ok" and r["logins"] == n, r

        msgs = await run_scenario(target, "one2one", {"pairs": 4, "window": 5, "messages": 200, "seconds": 20})
        assert msgs["status"] == "ok", msgs
        assert msgs["messages"] == 200 and msgs["sent"] == 200
        assert FIGURE_KEYS | {"p50_ms", "p99_ms", "seconds"} <= msgs.keys()

        ws = await run_scenario(target, "ws_one2one", {"pairs": 2, "window": 2, "messages": 40, "seconds": 20})
        assert ws["status"] == "ok", ws
        assert ws["messages"] == 40
        json.dumps([logins, msgs, ws])  # the JSON report can hold them


async def test_bench_room_fan_out_counts_right(tmp_path: Path) -> None:
    async with running_server(
        tmp_path, "c2s.require_tls=false", "registration.open=true", "registration.per_ip_per_hour=1000", "listen.http=127.0.0.1:0"
    ) as server:
        r = await run_scenario(_target(server), "muc_fanout", {"occupants": 6, "senders": 2, "window": 2, "messages": 20, "seconds": 20})
        assert r["status"] == "ok", r
        assert r["sent"] == 20
        assert r["delivered"] == 20 * 6  # every occupant, the sender too (its reflection)
        assert FIGURE_KEYS <= r.keys()


async def test_bench_presence_counts_right_and_refuses_contacts_it_cannot_make_mutual(tmp_path: Path) -> None:
    async with running_server(
        tmp_path, "c2s.require_tls=false", "registration.open=true", "registration.per_ip_per_hour=1000", "listen.http=127.0.0.1:0"
    ) as server:
        target = _target(server)
        r = await run_scenario(target, "presence", {"users": 8, "contacts": 2, "concurrency": 4, "updates": 40, "window": 5, "seconds": 20})
        assert r["status"] == "ok", r
        assert r["users"] == 8 and r["contacts"] == 2
        assert r["updates_delivered"] == 40 * 2  # each update reaches both contacts
        # An odd count cannot be made of mutual neighbours: said at once, not a 30 s stall.
        bad = await run_scenario(target, "presence", {"users": 8, "contacts": 3})
        assert bad["status"].startswith("error: bad parameters: contacts must be even"), bad


async def test_bench_scenario_reports_missing_websocket_instead_of_a_number(tmp_path: Path) -> None:
    async with running_server(tmp_path, "c2s.require_tls=false", "registration.open=true") as server:
        target = Target("xmppd", "127.0.0.1", server.ports["c2s"], server.domain, ws_url=None)
        r = await run_scenario(target, "ws_logins", {"users": 2, "concurrency": 1})
        assert r["status"].startswith("n/a")
        assert "value" not in r


def test_bench_scram_client_matches_rfc5802_example() -> None:
    """RFC 5802 §5: user 'user', password 'pencil', the published nonces and proof."""
    c = ScramClient("SCRAM-SHA-1", "user", "pencil")
    c.nonce = "fyko+d2lbbFgONRv9qkxdawL"
    c._first_bare = f"n=user,r={c.nonce}"
    final = c.final(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
    assert final == b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    c.verify(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")


def test_bench_cli_lists_every_scenario() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "run.py"), "--list"], capture_output=True, text=True, check=True, timeout=60).stdout
    for name in REGISTRY:
        assert name in out
    for required in ("logins", "logins_bind", "idle_memory", "one2one", "one2one_latency", "muc_fanout", "muc_fanout_500", "presence", "ws_logins", "ws_logins_bind", "ws_one2one", "logins_tls", "logins_sha256"):
        assert required in REGISTRY


async def test_bench_provisions_accounts_with_xmppctl_when_registration_is_closed(tmp_path: Path) -> None:
    xmppctl = Path(sys.executable).with_name("xmppctl")
    async with running_server(tmp_path, "c2s.require_tls=false", "registration.open=false") as server:
        target = Target("xmppd", "127.0.0.1", server.ports["c2s"], server.domain, provision=[str(xmppctl), "--set", f"server.data_dir={tmp_path}"])
        r = await run_scenario(target, "logins", {"users": 6, "concurrency": 3})
        assert r["status"] == "ok", r
        assert r["logins"] == 6
        assert sorted(a.username for a in await server.account_service.repo.list(server.domain)) == sorted(f"bench{i}" for i in range(6))
        # Once more: existing accounts are fine (no second creation, no failure).
        target.provisioned = 0
        again = await run_scenario(target, "logins", {"users": 6, "concurrency": 3})
        assert again["status"] == "ok" and again["logins"] == 6


def test_hotpath_bench_runs_with_each_part_of_the_archive_taken_out() -> None:
    """bench/hotpath_bench.py --without: every part it takes out still exists under that name
    (else it would silently measure nothing), and the run still delivers every message."""
    from hotpath_bench import WITHOUT

    for part in sorted(WITHOUT):
        done = subprocess.run(
            [sys.executable, str(BENCH / "hotpath_bench.py"), "--stanzas", "200", "--rounds", "1", "--without", part],
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"200 chat messages, best of 1 rounds, without {part}" in done.stdout, done.stdout
        assert "end to end, process CPU" in done.stdout


def test_mam_row_layouts_writes_the_same_messages_in_both_layouts(tmp_path: Path) -> None:
    """bench/mam_row_layouts.py: the shipped table (built from the archive's own DDL) gets two
    rows per chat message, the one-row layout one, for the same messages."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "mam_row_layouts.py"), "--owners", "4", "--batch", "10", "--batches", "3",
         "--checkpoint-every", "2", "--rounds", "1", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    assert lines[0].startswith("round 1 shipped: ") and lines[0].endswith("; 30 rows"), lines[0]
    assert lines[1].startswith("round 1 one-row: ") and lines[1].endswith("; 15 rows"), lines[1]
    assert {p.name for p in tmp_path.glob("*.db")} == {"shipped.db", "one-row.db"}


def _runs(values: list[float], server_cpu: float, **extra: float) -> list[dict]:
    return [{"status": "ok", "value": v, "server_cpu_s_per_1000": server_cpu, "loadgen_cpu_s_per_1000": 0.01, **extra} for v in values]


def test_bench_tables_report_medians_goals_and_cpu_in_one_table() -> None:
    """run.py's report (issue 22): the median of three runs with its min-max, the archive-on
    goals for the default configuration, twice the best peer for archive-off message rows,
    and one Markdown table with the server's and the generator's CPU in each cell."""
    import run

    results = {
        "xmppd": {"one2one": run.summarise(_runs([24000, 25000, 26000], 0.04))},
        "xmppd+mam": {"one2one": run.summarise(_runs([9000, 9400, 9500], 0.11))},
        "prosody": {"one2one": run.summarise(_runs([15000, 15800, 16000], 0.06))},
    }
    assert results["xmppd"]["one2one"]["value"] == 25000 and results["xmppd"]["one2one"]["runs"] == 3
    line = next(x for x in run.table(results, ["xmppd", "xmppd+mam", "prosody"]).splitlines() if x.startswith("one-to-one, 100"))
    assert "25,000 (24,000-26,000)" in line and "16,000" in line  # issue 22's archive-on goal
    assert "1.58x SHORT" in line  # 25,000 against 15,800: not twice the best peer
    assert "0.59x SHORT" in line  # xmppd+mam against 16,000
    md = run.markdown(results, ["xmppd", "xmppd+mam", "prosody"]).splitlines()
    assert md[0] == "| scenario | xmppd | xmppd+mam | prosody |"
    assert md[2].startswith("| one-to-one, 100 pairs") and "25,000 (24,000\u201326,000); CPU 0.04 / 0.01" in md[2]
    results["xmppd"]["one2one"] = run.summarise(_runs([32000], 0.03))
    assert "2.03x ok" in run.table(results, ["xmppd", "prosody"])

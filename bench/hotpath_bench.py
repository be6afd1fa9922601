#!/usr/bin/env python3
"""Hot-path micro-benchmark: µs per message stanza for each stage, no sockets.

Two sessions of a real ``Server`` (every installed feature loaded, SQLite in a temp dir, no
listeners) with fake transports. N chat messages from A to B's full JID go through

    parse (StreamParser) -> c2s (C2SStream state machine, parse included) -> route
    (Router.from_client ... deliver, B's send captured) -> serialise (etree.tostring)

each timed alone, then end to end through ``Session.data_received`` and the session's drain (run
at once, a task only when it has to wait: ``xmppd.core.tasks.start_eagerly``) to B's transport
(what a TCP connection does, minus the kernel). Best of ``--rounds``.

    python bench/hotpath_bench.py [--stanzas 20000] [--rounds 5] [--profile out.pstats]

``--without PART`` (repeatable) measures what one part of the archive (XEP-0313, on by default)
costs, by taking it out of the run -- a measuring tool only, the messages are then not archived
for real (see ``WITHOUT``):

    python bench/hotpath_bench.py --without archive-store     # minus the SQLite writes
    python bench/hotpath_bench.py --without archive-queue     # records made, never queued
    python bench/hotpath_bench.py --without archive-sender-copy   # one record a message, not two
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lxml import etree  # noqa: E402

from xmppd.app import Server  # noqa: E402
from xmppd.config import build  # noqa: E402
from xmppd.core.hooks import Flow  # noqa: E402
from xmppd.core.loader import discover  # noqa: E402
from xmppd.core.session import Session  # noqa: E402
from xmppd.features.mam import Mam  # noqa: E402
from xmppd.features.mam import repository as mam_repository  # noqa: E402
from xmppd.features.mam.journal import Journal  # noqa: E402
from xmppd.jid import JID  # noqa: E402
from xmppd.protocol import events as ev  # noqa: E402
from xmppd.protocol.c2s import State  # noqa: E402
from xmppd.xml.parser import StreamParser  # noqa: E402

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='bench.localhost' version='1.0'>"
)


async def _continue(*_: object) -> Flow:
    return Flow.CONTINUE


async def _serialise_only(self: Mam, r: object, flags: int) -> Flow:
    """Mam._sent without the sender's record: only the serialisation the recipient's copy reuses."""
    stanza = r.stanza  # type: ignore[attr-defined]
    r.archived = (etree.tostring(stanza, encoding="unicode"), len(stanza), flags)  # type: ignore[attr-defined]
    return Flow.CONTINUE


# --without: each part of the archive's work on a chat message, and how it is taken out. The
# differences between runs are what each part costs (issue 22's breakdown, docs/performance.md).
WITHOUT: dict[str, list[tuple[object, str, object]]] = {
    # the archive's SQLite writes (the writer's and the loop thread's group commits): no rows
    "archive-store": [(mam_repository, "_sqlite_store", lambda messages, loop_thread, db: None)],
    # the archive journal's appends (mam.journal): nothing written to the journal file
    "archive-journal": [(Journal, "append", lambda self, records: None)],
    # records made (ids, stamps, text, quota checks) but never queued: no store, no journal,
    # no durability ticket, deliveries not held
    "archive-queue": [(Mam, "_push", lambda self, record, size=None: None)],
    # the sender's copy not recorded (its text still made, for the recipient's): what a second
    # record of a chat message costs -- its id, quota checks, queueing, journal entry and row
    "archive-sender-copy": [(Mam, "_sent", _serialise_only)],
    # the archive's message hooks return at once (still called: the cost of being loaded)
    "archive-hooks": [(Mam, "_sent", lambda self, r, flags: _continue()), (Mam, "_incoming", lambda self, r: _continue())],
}


def take_out(parts: list[str]) -> None:
    for part in parts:
        for owner, name, replacement in WITHOUT[part]:
            if not hasattr(owner, name):  # (renamed: taking it out would measure nothing)
                raise SystemExit(f"--without {part}: {owner!r} has no {name} any more; update WITHOUT")
            setattr(owner, name, replacement)


class FakeTransport:
    __slots__ = ("out", "bytes")

    def __init__(self) -> None:
        self.out = 0
        self.bytes = 0

    def write(self, units: list[bytes]) -> None:
        self.out += 1
        for u in units:
            self.bytes += len(u)

    def close(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...

    async def start_tls(self) -> None:
        return None


def messages(n: int, to: str) -> list[bytes]:
    return [
        f"<message to='{to}' type='chat' id='m{i}'><body>Benchmark message number {i}, some ordinary chat text.</body></message>".encode()
        for i in range(n)
    ]


def chunks(stanzas: list[bytes], size: int = 4096) -> list[bytes]:
    out, cur, n = [], [], 0
    for s in stanzas:
        cur.append(s)
        n += len(s)
        if n >= size:
            out.append(b"".join(cur))
            cur, n = [], 0
    if cur:
        out.append(b"".join(cur))
    return out


def established(server: Server, username: str) -> tuple[Session, FakeTransport]:
    t = FakeTransport()
    stream = server.new_stream(direct_tls=False)
    s = Session(server, stream, t, "127.0.0.1")
    stream.receive_data(HEADER)
    stream.data_to_send()
    full, _ = server.sessions.bind(s, JID(username, server.domain), "hot")
    stream.authenticated_as = username
    stream.jid = full
    stream.state = State.ESTABLISHED
    s.jid = full
    s.available = True
    if s._auth_timer is not None:
        s._auth_timer.cancel()
        s._auth_timer = None
    server.live.add(s)
    return s, t


async def main(args: argparse.Namespace) -> None:
    take_out(args.without)
    tmp = Path(tempfile.mkdtemp(prefix="hotpath-"))
    classes = discover()
    cfg = build({}, {n: c.Options for n, c in classes.items()}, [
        "server.domain=bench.localhost", f"server.data_dir={tmp}", "listen.c2s=", "listen.c2s_tls=", "listen.http=", "log.level=warning",
        # Inbound shaping off (the sessions here skip SASL, so the pre-login buckets would apply);
        # measure it with --set c2s.rate_stanzas=... if wanted.
        "c2s.rate_bytes=0", "c2s.rate_stanzas=0", "c2s.preauth_rate_bytes=0", "c2s.preauth_rate_stanzas=0",
        *args.set,
    ], source="<hotpath>")
    server = Server(cfg)
    await server.start()
    try:
        for u in ("alice", "bob"):
            await server.account_service.create(u, "bench-password-1")
        a, _ = established(server, "alice")
        b, bt = established(server, "bob")
        n = args.stanzas
        data = chunks(messages(n, str(b.jid)))
        res: dict[str, float] = {}

        def best(name: str, fn) -> None:  # type: ignore[no-untyped-def]
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            res[name] = min(times) / n * 1e6

        def parse() -> None:
            p = StreamParser()
            p.feed(HEADER)
            for c in data:
                p.feed(c)

        best("parse", parse)

        evs: list[object] = []

        def c2s() -> None:
            stream = server.new_stream(direct_tls=False)
            stream.receive_data(HEADER)
            stream.state = State.ESTABLISHED
            stream.jid = a.jid
            stream.authenticated_as = "alice"
            evs.clear()
            for c in data:
                evs.extend(stream.receive_data(c))

        best("c2s (incl. parse)", c2s)
        stanzas = [e for e in evs if type(e) is ev.StanzaReceived]
        assert len(stanzas) == n, len(stanzas)

        delivered: list[etree._Element] = []
        real_send = Session.send  # captured instead of serialised (class attribute: __slots__)
        Session.send = lambda self, stanza: delivered.append(stanza)  # type: ignore[method-assign]
        router = server.router

        async def route_all() -> float:
            t0 = time.perf_counter()
            for e in stanzas:
                el = e.element  # type: ignore[attr-defined]
                await router.from_client(a, el, "message", e.to)  # type: ignore[attr-defined]
            return time.perf_counter() - t0

        times = []
        for _ in range(args.rounds):
            delivered.clear()
            times.append(await route_all())
        res["route"] = min(times) / n * 1e6
        assert len(delivered) == n, len(delivered)
        Session.send = real_send  # type: ignore[method-assign]

        def serialise() -> None:
            for el in delivered:
                etree.tostring(el)

        best("serialise", serialise)

        cpu_times: list[float] = []

        singles = messages(n, str(b.jid))

        async def end_to_end() -> float:
            before = bt.out
            c0 = time.process_time()  # the process's CPU (every thread): what a loaded machine does not inflate as much
            t0 = time.perf_counter()
            deadline = t0 + 120
            if args.in_flight == 1:
                # One message at a time, each sent once the previous one was delivered (the
                # one2one_latency scenario without sockets): with the archive, one commit each.
                for i, s in enumerate(singles, 1):
                    a.data_received(s)
                    # At least one turn of the event loop per message, as when each arrives in
                    # its own socket read: what is scheduled per turn (the archive's _kick, its
                    # writer task, the transports' flushes) runs as often as on a server.
                    await asyncio.sleep(0)
                    while bt.out - before < i and time.perf_counter() < deadline:  # noqa: ASYNC110 - polling a fake transport
                        await asyncio.sleep(0)
            else:
                for c in data:
                    a.data_received(c)
                    while a._drain is not None:  # noqa: ASYNC110 - the session's drain, no event to wait on
                        await asyncio.sleep(0)
            # B's session holds what is not archived yet (xmppd.core.durability): delivered once
            # the archive commits, which counts.
            while bt.out - before < n and time.perf_counter() < deadline:  # noqa: ASYNC110 - polling a fake transport
                await asyncio.sleep(0)
            dt = time.perf_counter() - t0
            cpu_times.append(time.process_time() - c0)
            assert bt.out - before == n, (bt.out - before, n)
            return dt

        prof = cProfile.Profile() if args.profile else None
        times = []
        for i in range(args.rounds):
            if prof is not None and i == args.rounds - 1:
                prof.enable()
            times.append(await end_to_end())
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile)
        res["end to end (Session)"] = min(times) / n * 1e6
        res["  = stanzas/s on one core"] = 1e6 / res["end to end (Session)"]
        res["end to end, process CPU"] = min(cpu_times) / n * 1e6
        res["  = stanzas/s on one free core"] = 1e6 / res["end to end, process CPU"]
        width = max(len(k) for k in res)
        print(f"{n} chat messages, best of {args.rounds} rounds" + (", end to end one in flight" if args.in_flight == 1 else "")
              + "".join(f", without {part}" for part in args.without))
        for k, v in res.items():
            unit = "" if k.startswith("  =") else " µs/stanza"
            print(f"  {k.ljust(width)}  {v:9.2f}{unit}")
        print(f"  (c2s alone ≈ {res['c2s (incl. parse)'] - res['parse']:.2f} µs; delivered bytes per stanza {bt.bytes / max(1, bt.out):.0f})")
    finally:
        await server.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stanzas", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config overrides, e.g. 'features.disabled=[\"mam\"]'")
    p.add_argument("--profile", help="write a cProfile of the last end-to-end round here")
    p.add_argument("--in-flight", type=int, choices=(0, 1), default=0,
                   help="end to end: 0 sends every stanza at once (default), 1 sends each once the previous one was delivered")
    p.add_argument("--without", action="append", default=[], choices=sorted(WITHOUT), metavar="PART",
                   help=f"take one part of the archive's work out of the run ({', '.join(sorted(WITHOUT))}): what it costs")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.run(main(args))
    except ImportError:
        asyncio.run(main(args))

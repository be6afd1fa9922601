"""XEP-0313 archive and XEP-0198 benchmark.

1. Archive page queries (p50/p99) with 10,000 and 100,000 stored messages in one archive (and
   as many in other archives), on SQLite and, with ``--mariadb URL``, on MariaDB: first page,
   a page in the middle (RSM after), the last page (RSM before), a ``with`` filter and a
   ``start``/``end`` window, 50 results a page.
2. One-to-one message rate through a real server over TCP (plaintext loopback): archiving
   and stream management off, then on (both clients enable XEP-0198 and ack every 50).

    .venv/bin/python bench/mam_bench.py [--sizes 10000,100000] [--mariadb mysql+aiomysql://root@127.0.0.1/bench] [--messages 5000]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from pathlib import Path

from xmppd.app import Server, feature_migration_locations
from xmppd.config import build
from xmppd.core.loader import discover
from xmppd.features.mam.ids import IdCodec, SeqClock
from xmppd.features.mam.repository import ArchivedMessage, ArchiveQuery, SqlMamRepository, mam_messages
from xmppd.storage import migrations
from xmppd.storage.engine import Database

PAGE = 50
RUNS = 200
OWNER = "alice@localhost"
STANZA = "<message xmlns='jabber:client' from='bob@localhost/desk' to='alice@localhost' type='chat'><body>{}</body></message>"


async def fill(repo: SqlMamRepository, ids: IdCodec, n: int) -> list[str]:
    """n messages in OWNER's archive and n in another, one a second; OWNER's ids."""
    batch: list[ArchivedMessage] = []
    t0 = 1_700_000_000_000_000
    seqs = SeqClock(0)
    owner_ids = []
    for i in range(n):
        with_jid = "carol@localhost" if i % 10 == 0 else "bob@localhost"
        a, o = seqs.next(t0 + i * 1_000_000), seqs.next(t0 + i * 1_000_000)
        owner_ids.append(ids.encode(a))
        batch.append(ArchivedMessage(OWNER, owner_ids[-1], t0 + i * 1_000_000, with_jid, "desk", STANZA.format(f"message number {i}"), a))
        batch.append(ArchivedMessage("other@localhost", ids.encode(o), t0 + i * 1_000_000, "bob@localhost", "desk", STANZA.format(i), o))
        if len(batch) >= 5000:
            await repo.store_many(batch)
            batch = []
    await repo.store_many(batch)
    return owner_ids


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


async def query_bench(url: str, sizes: list[int], label: str) -> None:
    for n in sizes:
        db = Database.from_url(url)
        await migrations.upgrade(db, feature_migration_locations(discover().values()))
        repo = SqlMamRepository(db)
        ids = await repo.open()
        async with db.transaction() as conn:  # a fresh archive per size
            await conn.execute(mam_messages.delete())
        t = time.perf_counter()
        owner_ids = await fill(repo, ids, n)
        print(f"{label} {n:>7} messages: filled {2 * n} rows in {time.perf_counter() - t:.1f} s")
        t0 = 1_700_000_000_000_000
        mid = owner_ids[n // 2]
        cases = {
            "first page": ArchiveQuery(OWNER, PAGE),
            "middle (after)": ArchiveQuery(OWNER, PAGE, after=mid),
            "last page (before)": ArchiveQuery(OWNER, PAGE, before=""),
            "with filter": ArchiveQuery(OWNER, PAGE, with_jid="carol@localhost", after=mid),
            "start/end window": ArchiveQuery(OWNER, PAGE, start=t0 + (n // 3) * 1_000_000, end=t0 + (n // 3 + 500) * 1_000_000),
        }
        for name, q in cases.items():
            times = []
            for _ in range(RUNS):
                s = time.perf_counter()
                page = await repo.query(q)
                times.append((time.perf_counter() - s) * 1000)
            assert page.items, name
            print(f"  {name:<20} p50 {statistics.median(times):6.2f} ms  p99 {pct(times, 0.99):6.2f} ms  (count {page.count})")
        await db.dispose()


# ---------------------------------------------------------------------------------- message rate


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buf = b""

    @classmethod
    async def login(cls, port: int, user: str, sm: bool) -> "Raw":
        r, w = await asyncio.open_connection("127.0.0.1", port)
        c = cls(r, w)
        header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
        c.write(header)
        await c.until(b"</stream:features>")
        c.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{c.token(user)}</auth>")
        await c.until(b"<success")
        c.write(header)
        await c.until(b"</stream:features>")
        c.write("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
        await c.until(b"</iq>")
        if sm:
            c.write("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
            await c.until(b"<enabled")
        c.write("<presence/>")
        return c

    @staticmethod
    def token(user: str) -> str:
        return base64.b64encode(b"\0" + user.encode() + b"\0pw-pw-pw-pw").decode()

    def write(self, s: str) -> None:
        self.writer.write(s.encode())

    async def until(self, needle: bytes) -> None:
        while needle not in self.buf:
            self.buf += await self.reader.read(65536)
        self.buf = self.buf[self.buf.index(needle) + len(needle):]


async def rate(messages: int, mam: bool, sm: bool) -> float:
    classes = discover()
    with tempfile.TemporaryDirectory() as d:
        overrides = [
            f"server.data_dir={d}", "listen.c2s=127.0.0.1:0", "listen.c2s_tls=", "listen.http=", "c2s.require_tls=false",
            # The sender outruns the receiver's acks by design here: allow a deep queue (the
            # default 1000 ends a stream that falls that far behind).
            "smacks.request_every=0", f"smacks.max_queue={messages + 100}",
            # The sender floods on purpose: inbound shaping would measure the shaper.
            "c2s.rate_bytes=0", "c2s.rate_stanzas=0",
        ]
        disabled = ["carbons", "csi", "push"] if mam or sm else ["carbons", "csi", "push", "mam", "smacks"]
        if not mam:
            disabled.append("mam")
        overrides.append(f"features.disabled={disabled!r}".replace("'", '"'))
        server = Server(build({}, {n: c.Options for n, c in classes.items()}, overrides, source="<bench>"))
        await server.start()
        try:
            for u in ("alice", "bob"):
                await server.account_service.create(u, "pw-pw-pw-pw")
            port = server.ports["c2s"]
            alice = await Raw.login(port, "alice", sm)
            bob = await Raw.login(port, "bob", sm)
            await asyncio.sleep(0.2)
            bob.buf = b""
            alice.write("<presence type='unavailable'/>")  # nothing but the messages from now on
            bob.write("<presence type='unavailable'/>")
            await asyncio.sleep(0.2)
            while True:  # drop what came before
                try:
                    await asyncio.wait_for(bob.reader.read(65536), 0.2)
                except TimeoutError:
                    break
            t = time.perf_counter()

            async def receive() -> None:
                got = acked = 0
                tail = b""
                while got < messages:
                    data = tail + await bob.reader.read(262144)
                    cut = data.rfind(b"</message>") + len(b"</message>")
                    if cut < len(b"</message>"):
                        tail = data
                        continue
                    got += data[:cut].count(b"</message>")
                    tail = data[cut:]
                    if sm and got - acked >= 50:  # counts presence too; messages dominate
                        acked = got
                        bob.write(f"<a xmlns='urn:xmpp:sm:3' h='{got}'/>")

            recv = asyncio.create_task(receive())
            for i in range(messages):
                alice.write(f"<message to='bob@localhost/r' type='chat' id='m{i}'><body>hello number {i}</body></message>")
                if i % 100 == 99:
                    await alice.writer.drain()
            await recv
            return messages / (time.perf_counter() - t)
        finally:
            await server.stop()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--mariadb", default="")
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--skip-queries", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if not args.skip_queries:
        for n in sizes:
            with tempfile.TemporaryDirectory() as d:
                await query_bench(f"sqlite+aiosqlite:///{Path(d) / 'mam.db'}", [n], "sqlite ")
        if args.mariadb:
            await query_bench(args.mariadb, sizes, "mariadb")
    off = await rate(args.messages, False, False)
    sm = await rate(args.messages, False, True)
    mam = await rate(args.messages, True, False)
    on = await rate(args.messages, True, True)
    print(f"one-to-one messages/s over TCP ({args.messages} messages): plain {off:,.0f}; stream management {sm:,.0f};"
          f" archiving {mam:,.0f}; both {on:,.0f} ({on / off:.0%} of plain)")


if __name__ == "__main__":
    asyncio.run(main())

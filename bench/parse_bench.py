"""Stream parser benchmark: µs per stanza for typical ~200-byte chat messages.

Feeds 100,000 <message/> stanzas in 4 KiB chunks through ``StreamParser`` and prints the time per
stanza (best of several rounds). Run: ``python bench/parse_bench.py [--stanzas N] [--chunk BYTES]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmppd.xml.parser import StanzaElement, StreamParser  # noqa: E402

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='capulet.lit' version='1.0' xml:lang='en'>"
)


def stanza(i: int) -> bytes:
    return (
        f"<message to='juliet@capulet.lit/balcony' from='romeo@montague.lit/orchard' type='chat' "
        f"id='m{i:08d}'><body>Art thou not Romeo, and a Montague? #{i}</body>"
        f"<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    ).encode()


def run(stream: bytes, chunk: int) -> tuple[float, int]:
    parser = StreamParser()
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    feed = parser.feed
    n = 0
    start = time.process_time()
    for c in chunks:
        for event in feed(c):
            if type(event) is StanzaElement:
                n += 1
    return time.process_time() - start, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stanzas", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    body = b"".join(stanza(i) for i in range(args.stanzas))
    stream = HEADER + body
    best = float("inf")
    for _ in range(args.rounds):
        elapsed, n = run(stream, args.chunk)
        assert n == args.stanzas, n
        best = min(best, elapsed)
    print(
        f"{args.stanzas} stanzas, {len(body) / args.stanzas:.0f} bytes each, {args.chunk}-byte chunks: "
        f"{best / args.stanzas * 1e6:.2f} µs/stanza ({args.stanzas / best:,.0f} stanzas/s, "
        f"{len(body) / best / 1e6:.1f} MB/s, best of {args.rounds})"
    )


if __name__ == "__main__":
    main()

"""XEP-0045 fan-out micro-benchmark: splice 'to' into bytes serialised once, or set 'to' and serialise per recipient.

    .venv/bin/python bench/muc_fanout.py
"""
from __future__ import annotations

import copy
import time

from lxml import etree

N = 200
ROUNDS = 200


def message() -> etree._Element:
    m = etree.Element("{jabber:client}message", {"from": "room@conference.localhost/Alice", "type": "groupchat", "id": "abc123"}, nsmap={None: "jabber:client"})
    etree.SubElement(m, "{jabber:client}body").text = "hello everybody, this is a message of ordinary length" * 2
    etree.SubElement(m, "{urn:xmpp:sid:0}stanza-id", {"id": "x1", "by": "room@conference.localhost"}, nsmap={None: "urn:xmpp:sid:0"})
    return m


def main() -> None:
    el = message()
    tos = [f"user{i}@localhost/res{i}" for i in range(N)]
    t = time.perf_counter()
    for _ in range(ROUNDS):
        data = etree.tostring(el)
        head, tail = data[:8] + b' to="', b'"' + data[8:]
        out = [head + to.encode() + tail for to in tos]
    splice = (time.perf_counter() - t) / (ROUNDS * N)
    t = time.perf_counter()
    for _ in range(ROUNDS):
        out = []
        for to in tos:
            el.set("to", to)
            out.append(etree.tostring(el))
    per = (time.perf_counter() - t) / (ROUNDS * N)
    t = time.perf_counter()
    for _ in range(ROUNDS // 10):
        for to in tos:
            c = copy.deepcopy(el)
            c.set("to", to)
            etree.tostring(c)
    deep = (time.perf_counter() - t) / (ROUNDS // 10 * N)
    print(f"{N} recipients: splice {splice * 1e6:.2f} us/recipient, set+serialise {per * 1e6:.2f} us, deepcopy+serialise {deep * 1e6:.2f} us")


if __name__ == "__main__":
    main()

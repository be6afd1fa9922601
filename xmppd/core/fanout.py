"""Serialise once, deliver to many: a stanza without ``to`` as ``head + to + tail`` bytes.

The router's fan-out (:meth:`xmppd.core.router.Router.fan_out`) splices each recipient's ``to``
into bytes serialised once, instead of setting ``to`` and serialising per recipient. Measured
with bench/muc_fanout.py (200 recipients): 0.27 us per recipient spliced, 10.4 us setting 'to'
and serialising, 23.6 us deep-copying.
"""
from __future__ import annotations

import functools

from lxml import etree

_tostring = etree.tostring


class Wire:
    """``el`` serialised without ``to``: ``head + attr(to) + tail`` is the stanza for one recipient.

    ``el`` is what DELIVER hooks see, its ``to`` set for the current recipient and removed after
    (shared between recipients: a hook that keeps it must copy it, and its changes are not sent).
    The caller gives an element nobody else changes meanwhile (a private copy when in doubt)."""

    __slots__ = ("el", "head", "tail")

    def __init__(self, el: etree._Element, head: bytes, tail: bytes) -> None:
        self.el = el
        self.head = head
        self.tail = tail

    @classmethod
    def of(cls, el: etree._Element, kind: str) -> "Wire | None":
        """None when ``el`` cannot be spliced: it has a ``to``, or its tag is not ``kind`` in
        ``jabber:client`` as the default namespace."""
        if el.get("to") is not None:
            return None
        data = _tostring(el)
        cut = len(kind) + 1
        if data[:cut] != b"<" + kind.encode() or data[cut:cut + 1] not in (b" ", b">", b"/"):
            return None
        return cls(el, data[:cut] + b' to="', b'"' + data[cut:])


@functools.lru_cache(maxsize=65536)
def attr(value: str) -> bytes:
    """``value`` escaped for a double-quoted XML attribute, as bytes."""
    if "&" in value or "<" in value or '"' in value or ">" in value:
        value = value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;").replace(">", "&gt;")
    return value.encode()

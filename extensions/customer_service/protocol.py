"""urn:xmppd:cs:0: the customer-service namespace, its element names and small parsers.

See docs/customer-service.md and schemas/cs-0.xsd.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from xmppd import timestamps
from xmppd.errors import Condition
from xmppd.i18n import Catalog, LocalisedError

NS = "urn:xmppd:cs:0"
NICK_NS = "http://jabber.org/protocol/nick"  # XEP-0172


LOCALE = Path(__file__).parent / "locale"


def q(name: str) -> str:
    return f"{{{NS}}}{name}"


@functools.cache
def catalog() -> Catalog:
    """The customer-service texts (``locale/<lang>.toml``), loaded once."""
    return Catalog.load(LOCALE)


class CsError(LocalisedError):
    """A stanza error whose text is the catalogue's ``error.<key>``, told in the requester's
    language where it leaves the server (xmppd/i18n.py)."""

    def __init__(self, condition: Condition, key: str, /, **fields: Any) -> None:
        super().__init__(condition, catalog(), "error." + key, **fields)


QUEUE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def check_queue_name(name: str) -> str:
    if not QUEUE_NAME.match(name) or name.startswith("s-"):
        raise CsError(Condition.BAD_REQUEST, "queue_name")
    return name


_WIDE = str.maketrans({"！": "!", "／": "/"})  # what a Chinese input method types for ! and /
VISITOR_WORDS = ("close", "end", "rate")
AGENT_WORDS = ("accept", "reject", "close", "transfer", "pause", "resume", "help", "r", "canned")


def parse_command(body: str, prefixes: Sequence[str], words: Collection[str]) -> tuple[str, str] | None:
    """``"!rate 4 不错"`` -> ``("rate", "4 不错")`` when the word after one of ``prefixes`` is one of
    ``words``; None when the body is no command. Prefixes match case-insensitively, and a
    full-width ``！``/``／`` counts as ``!``/``/``, so that every client and input method gets through."""
    text = body.strip()
    if not text:
        return None
    text = text[0].translate(_WIDE) + text[1:]
    low = text.lower()
    for p in prefixes:
        if low.startswith(p.lower()):
            parts = text[len(p):].split(None, 1)
            if parts and parts[0].lower() in words:
                return parts[0].lower(), (parts[1].strip() if len(parts) > 1 else "")
    return None


stamp = timestamps.micros  # XEP-0082 date-time

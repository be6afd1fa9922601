"""The iq table: exactly one handler per (type, target, domain, payload qname).

A duplicate registration fails at start. A get/set with no handler is answered with
``service-unavailable``; a result or error is never answered (RFC 6120 §8.2.3). Handlers return
the reply payload (or None for an empty result) or raise ``StanzaError``; unexpected exceptions
become ``internal-server-error`` and are logged with the stanza id, and the session survives.
"""
from __future__ import annotations

import asyncio
import enum
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from ..errors import Condition, StanzaError
from ..jid import JID

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)


class Target(enum.Enum):
    HOST = "host"  # to the domain itself (or a service domain)
    BARE = "bare"  # to an account's bare JID (no 'to' means the sender's own account)


@dataclass(slots=True)
class IqRequest:
    stanza: etree._Element
    payload: etree._Element
    type: str
    from_jid: JID
    to: JID  # always set: a missing 'to' is resolved to the sender's bare JID or the domain
    origin: "Session | None"

    @property
    def is_self(self) -> bool:
        """The request concerns the sender's own account."""
        return self.to.local == self.from_jid.local and self.to.domain == self.from_jid.domain


class _NoReply:
    """Returned by a handler that already answered (e.g. before closing the stream)."""

    def __repr__(self) -> str:
        return "NO_REPLY"


NO_REPLY = _NoReply()

IqHandler = Callable[[IqRequest], Awaitable["etree._Element | _NoReply | None"]]


class DuplicateHandler(RuntimeError):
    pass


class IqTable:
    def __init__(self) -> None:
        self._table: dict[tuple[str, Target, str, str], IqHandler] = {}
        self._namespaces: set[tuple[Target, str, str]] = set()

    def add(self, type: str, target: Target, domain: str, qname: str, handler: IqHandler) -> Callable[[], None]:
        if type not in ("get", "set"):
            raise ValueError(f"iq handlers are for get or set, not {type!r}")
        key = (type, target, domain, qname)
        if key in self._table:
            raise DuplicateHandler(f"two handlers for iq {type} {qname} on {target.value} of {domain}")
        self._table[key] = handler

        def remove() -> None:
            if self._table.get(key) is handler:
                del self._table[key]

        return remove

    def lookup(self, type: str, target: Target, domain: str, qname: str) -> IqHandler | None:
        return self._table.get((type, target, domain, qname))

    def known(self, target: Target, domain: str, qname: str) -> bool:
        return any(k[1] is target and k[2] == domain and k[3] == qname for k in self._table)


class IqTracker:
    """Iqs the server sends (pings ...) and the futures waiting for their answers."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[str, asyncio.Future[etree._Element]]] = {}
        self._ids = itertools.count(1)
        self._prefix = format(id(self) & 0xFFFFFF, "x")

    def new_id(self) -> str:
        return f"xmppd-{self._prefix}-{next(self._ids)}"

    def expect(self, iq_id: str, peer: str) -> asyncio.Future[etree._Element]:
        fut: asyncio.Future[etree._Element] = asyncio.get_running_loop().create_future()
        self._pending[iq_id] = (peer, fut)
        fut.add_done_callback(lambda _f: self._pending.pop(iq_id, None))
        return fut

    def resolve(self, stanza: etree._Element, from_jid: JID) -> bool:
        """Deliver a result/error; True when it answered one of ours."""
        iq_id = stanza.get("id")
        if iq_id is None:
            return False
        entry = self._pending.get(iq_id)
        if entry is None:
            return False
        peer, fut = entry
        if peer != str(from_jid) and peer != str(from_jid.bare):
            return False
        if not fut.done():
            fut.set_result(stanza)
        return True

    def cancel_all(self) -> None:
        for _peer, fut in list(self._pending.values()):
            if not fut.done():
                fut.cancel()
        self._pending.clear()


def unavailable(kind: str = "iq") -> StanzaError:
    return StanzaError(Condition.SERVICE_UNAVAILABLE, "no handler for this request")

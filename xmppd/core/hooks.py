"""Hook names with typed payloads, and the chains that run them.

A hook is a module-level constant, so a typo fails at import. Handlers run in descending
priority and return ``Flow.STOP`` to end the chain (the default behaviour then does not run)
or ``Flow.CONTINUE``. A handler is a coroutine function, or a plain function that returns the
``Flow`` itself when it has nothing to await (the common case on the per-stanza chains: no
coroutine is made) and else an awaitable of it (e.g. its own coroutine for the rest).
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from lxml import etree

from ..jid import JID

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)
P = TypeVar("P")


class Flow(enum.Enum):
    CONTINUE = "continue"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class Hook(Generic[P]):
    name: str


@dataclass(slots=True)
class Routed:
    """A stanza on its way: from a local session (``origin``) or made by the server."""

    stanza: etree._Element
    kind: str
    from_jid: JID
    to: JID | None
    origin: "Session | None" = None
    # Relayed by another node of the cluster (``Router.relay``): the sender's node did its part
    # (checks, looking at the other nodes); this node answers for its own sessions only.
    relayed: bool = False
    # The stanza as the sender's archive copy serialised it, its number of children then and
    # what one walk of them found (mam): the recipient's copy reuses them when no child was
    # added or removed since.
    archived: tuple[str, int, int] | None = None


@dataclass(slots=True)
class Delivery:
    """A stanza about to be written to ``session``."""

    session: "Session"
    stanza: etree._Element
    kind: str


class SerialisedDelivery(Delivery):
    """A ``Delivery`` of a stanza that came serialised (another cluster node's envelope: the
    bytes are written as they came). ``stanza`` is parsed from ``data`` the first time a hook
    reads it: most deliveries pass their hooks without looking at the element (no block list,
    no inactive client, no hibernating session). As in a fan-out, a hook that changes it
    changes nothing that is written; one that keeps it may (it is its own)."""

    __slots__ = ("data", "_el", "_parse")

    def __init__(self, session: "Session", data: bytes, kind: str, parse: Callable[[bytes], etree._Element]) -> None:
        self.session = session
        self.kind = kind
        self.data = data
        self._el: etree._Element | None = None
        self._parse = parse

    @property  # type: ignore[override]
    def stanza(self) -> etree._Element:
        el = self._el
        if el is None:
            el = self._el = self._parse(self.data)
        return el

    @stanza.setter
    def stanza(self, el: etree._Element) -> None:
        self._el = el


@dataclass(frozen=True, slots=True)
class SessionEvent:
    session: "Session"
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AccountEvent:
    username: str
    domain: str
    # ACCOUNT_DELETED: what each feature's ``delete_account_txn`` returned, by feature name.
    settled: Mapping[str, Any] = field(default_factory=dict)

    @property
    def jid(self) -> JID:
        return JID(self.username, self.domain)


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Another cluster node came (NODE_UP) or went away (NODE_DOWN; docs/cluster.md): ``graceful``
    when it said so on leaving, else its heartbeats stopped (crash, kill, split) for node_timeout."""

    node: str
    incarnation: str  # which process of that name (a node restarted within the timeout differs)
    graceful: bool = False


@dataclass(frozen=True, slots=True)
class SessionsLost:
    """The sessions a dead cluster node held that were available (SESSIONS_LOST): the one
    survivor that cleans up after it runs the hook, so that their contacts learn they are gone."""

    node: str
    available: tuple[JID, ...]
    # What its sessions kept for this moment (``Router.keep``), by full JID: name -> value.
    kept: dict[JID, dict[str, str]] = field(default_factory=dict)


@dataclass(slots=True)
class StreamFeaturesEvent:
    """Asked when building stream features; handlers append elements."""

    authenticated: bool
    features: list[etree._Element] = field(default_factory=list)


@dataclass(slots=True)
class Speech:
    """A user's content about to reach another local account: a client's message, or what a
    feature sends on the user's behalf (``feature`` names it, e.g. a one-to-one red packet).
    Handlers veto by raising ``StanzaError`` (or returning ``Flow.STOP``: a plain ``forbidden``).
    Rooms have their own gate with the same role (``xmppd.features.muc.events.SPEECH``)."""

    sender: JID  # bare JID
    to: JID
    stanza: etree._Element
    feature: str | None = None


# Client stanzas after from-stamping, before routing (filters: blocking, mute, spoofing rules).
STANZA_IN: Hook[Routed] = Hook("stanza-in")
# The speech gate for one-to-one content (see Speech): client messages to local accounts, after
# STANZA_IN, and features acting on a user's behalf (moderation: platform mute).
SPEECH: Hook[Speech] = Hook("speech")
# Routed stanzas by kind and addressing, for local accounts and the server's own domain.
MESSAGE_HOST: Hook[Routed] = Hook("message/host")
MESSAGE_BARE: Hook[Routed] = Hook("message/bare")
MESSAGE_FULL: Hook[Routed] = Hook("message/full")
PRESENCE_HOST: Hook[Routed] = Hook("presence/host")
PRESENCE_BARE: Hook[Routed] = Hook("presence/bare")
PRESENCE_FULL: Hook[Routed] = Hook("presence/full")
# A client's presence without 'to': broadcast to its subscribers.
PRESENCE_BROADCAST: Hook[Routed] = Hook("presence/broadcast")
# A message for a local account with no available resource (offline storage, push).
MESSAGE_UNDELIVERED: Hook[Routed] = Hook("message/undelivered")
# A stanza about to be written to a session (blocking, client state indication).
DELIVER: Hook[Delivery] = Hook("deliver")
SESSION_BOUND: Hook[SessionEvent] = Hook("session/bound")
SESSION_CLOSED: Hook[SessionEvent] = Hook("session/closed")
ACCOUNT_CREATED: Hook[AccountEvent] = Hook("account/created")
# Deleting an account (xmppd.accounts.AccountService.delete), in this order: its sessions end;
# ACCOUNT_DELETING (what must be told while its data is still stored: roster cancellations);
# one transaction of every feature's ``delete_account_txn`` and the row's deletion; then
# ACCOUNT_DELETED (in-memory state only: caches, timers, notices), before anyone is answered.
ACCOUNT_DELETING: Hook[AccountEvent] = Hook("account/deleting")
ACCOUNT_DELETED: Hook[AccountEvent] = Hook("account/deleted")
# Another cluster node is gone (xmppd/cluster/membership.py): its sessions, rooms and queues
# are to be taken over. Runs on every node that noticed, once per lost node, inside the heartbeat
# loop: a handler with slow work starts a task for it (the node's own entry must stay renewed).
NODE_DOWN: Hook[NodeEvent] = Hook("cluster/node-down")
# Another cluster node registered (joined, or came back after a restart).
NODE_UP: Hook[NodeEvent] = Hook("cluster/node-up")
# A dead node's available sessions, once removed from the cluster registry (on one survivor).
SESSIONS_LOST: Hook[SessionsLost] = Hook("cluster/sessions-lost")

Handler = Callable[[Any], "Flow | Awaitable[Flow]"]


class HookChains:
    """``hooks[name] -> [(priority, handler)]``, kept sorted; running an empty chain is free."""

    def __init__(self) -> None:
        self._chains: dict[str, list[tuple[int, int, Handler]]] = {}
        self._handlers: dict[str, tuple[Handler, ...]] = {}
        self._seq = 0

    def add(self, hook: Hook[P], handler: Callable[[P], "Flow | Awaitable[Flow]"], priority: int = 0) -> Callable[[], None]:
        self._seq += 1
        entry = (priority, self._seq, handler)
        chain = self._chains.setdefault(hook.name, [])
        chain.append(entry)
        chain.sort(key=lambda e: (-e[0], e[1]))
        self._handlers[hook.name] = tuple(e[2] for e in chain)

        def remove() -> None:
            chain.remove(entry)
            self._handlers[hook.name] = tuple(e[2] for e in chain)

        return remove

    def has(self, hook: Hook[Any]) -> bool:
        return bool(self._handlers.get(hook.name))

    async def run(self, hook: Hook[P], payload: P) -> Flow:
        handlers = self._handlers.get(hook.name)
        if not handlers:
            return _CONTINUE
        for handler in handlers:
            flow = handler(payload)
            if flow.__class__ is not Flow:
                flow = await flow  # type: ignore[misc]  # (a coroutine function, or a plain one's awaitable)
            if flow is not _CONTINUE:
                if flow is _STOP:
                    return _STOP
                raise TypeError(f"hook handler {handler!r} for {hook.name} returned {flow!r}, not a Flow")
        return _CONTINUE


_CONTINUE = Flow.CONTINUE
_STOP = Flow.STOP

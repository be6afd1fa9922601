"""Requests between cluster nodes that are not stanzas (docs/cluster.md §4): the types features use.

A feature that must ask another node something (XEP-0198: "hand me this session") registers a
*control kind* through its context (``ctx.add_control``): ``serve`` answers a request on the node
asked, ``orphan`` takes an answer that nobody waits for any more (the asking node gave up, or died
and a survivor drains its bus), so that what an answer carries is never dropped. It asks with
``router.remote.control.request(...)`` (``xmppd/cluster/control.py``); without a cluster nothing
of this runs.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


class ControlFailed(Exception):
    """The request got no answer: Redis failed, the entry to move was not where expected, or the
    node did not answer in time. ``previous``: the moved entry's value before the move, if the
    request moved it (the caller puts it back)."""

    def __init__(self, message: str, previous: str | None = None) -> None:
        super().__init__(message)
        self.previous = previous


@dataclass(slots=True)
class Move:
    """The request moves ``bare/resource``'s registry entry to the asking node, in the same step
    as it is sent, if ``holder`` (``"<node>|<incarnation>|"``) holds it (else it is not sent)."""

    bare: str
    resource: str
    holder: str


@dataclass(slots=True)
class Answer:
    """What ``serve`` returns: the payload (JSON) and ``sent(ok)``, called once the answer was
    written (ok) or could not be (then the server keeps what it would have given)."""

    payload: dict[str, Any]
    sent: Callable[[bool], Awaitable[None]] | None = None


@dataclass(slots=True)
class ControlKind:
    serve: Callable[[dict[str, Any], str], Awaitable[Answer]]  # (request payload, asking node)
    orphan: Callable[[dict[str, Any]], Awaitable[None]] | None = None  # an answer nobody takes

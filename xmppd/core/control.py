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
    """The request got no usable answer: the node is gone, did not answer in time, or refused."""


@dataclass(slots=True)
class Move:
    """Move one resource's registry entry to the asking node, atomically with the answer."""

    bare: str
    resource: str
    priority: int
    available: bool


@dataclass(slots=True)
class Answer:
    """What ``serve`` returns: the payload (JSON), an optional registry move, and ``sent(ok)``,
    called once the answer was written (ok) or could not be (the server keeps what it gave)."""

    payload: dict[str, Any]
    move: Move | None = None
    sent: Callable[[bool], Awaitable[None]] | None = None


@dataclass(slots=True)
class ControlKind:
    serve: Callable[[dict[str, Any], str], Awaitable[Answer]]  # (request payload, asking node)
    orphan: Callable[[dict[str, Any]], Awaitable[None]] | None = None  # an answer nobody waits for

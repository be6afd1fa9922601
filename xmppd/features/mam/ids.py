"""Archive ids: the server-assigned, time-ordered ``seq`` and the opaque public id made from it.

``seq`` (the primary key of ``mam_messages``) is a 63-bit integer::

    seq = (µs since 2020-01-01 UTC) << 11 | node

``node`` (0-2047) tells apart the xmppd processes that share one database (see
:class:`NodeLease`); within one process :class:`SeqClock` makes the µs part strictly increasing
(``max(now, last + 1)``), so a clock step back never reorders nor repeats an id, and a burst of
more than one id per µs runs slightly ahead of the clock and catches up. 52 bits of µs last
until 2162. A message's ``ts`` is its id's time, so a time filter is a ``seq`` range and the
retention purge is ``seq < floor(cutoff)`` on the primary key.

The XEP-0359 stanza-id (also the XEP-0313 result id and the XEP-0059 ids) is ``seq`` made
opaque by :class:`IdCodec`: AES-128 on one 16-byte block (8 bytes of ``seq``, 8 bytes of a
fixed check value) under a per-server key kept in the database (``mam_settings``, shared by
every node), 32 hex digits. AES is a permutation, so distinct ``seq`` give distinct ids and the
server reads an id back without storing or indexing it; an observer learns nothing from an id
(neither time nor archive size nor order), as XEP-0359 asks. A garbled or foreign id fails the
check (a 2^-64 chance of passing) and is an unknown id.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "EPOCH_US",
    "MAX_NODE",
    "NODE_BITS",
    "IdCodec",
    "NodeLease",
    "SeqClock",
    "holder_name",
    "new_key",
    "seq_ceiling",
    "seq_floor",
    "time_of",
]

#: 2020-01-01T00:00:00Z in µs since the Unix epoch: time zero of ``seq``.
EPOCH_US = 1_577_836_800_000_000
NODE_BITS = 11
MAX_NODE = (1 << NODE_BITS) - 1  # 2047
_NODE_MASK = MAX_NODE
_SEQ_MAX = (1 << 63) - 1
_CHECK = b"\x00xmppd\x00\x01"  # the second half of every plaintext block
KEY_BYTES = 16

if TYPE_CHECKING:
    from ...core.feature import Clock
    from .repository import MamRepository


def seq_floor(ts: int) -> int:
    """The smallest ``seq`` whose time is ``ts`` (µs since the Unix epoch) or later."""
    return max(ts - EPOCH_US, 0) << NODE_BITS


def seq_ceiling(ts: int) -> int:
    """The largest ``seq`` whose time is ``ts`` or earlier (-1 before 2020: none)."""
    if ts < EPOCH_US:
        return -1
    return ((ts - EPOCH_US) << NODE_BITS) | _NODE_MASK


def time_of(seq: int) -> int:
    """The time of an id, µs since the Unix epoch."""
    return (seq >> NODE_BITS) + EPOCH_US


class SeqClock:
    """Issues this node's ids: strictly increasing, time-ordered, never repeated.

    ``floor`` (e.g. the largest ``seq`` already stored) makes every id issued greater than it,
    so that a restart after the clock stepped back still continues the order.
    """

    __slots__ = ("_last", "_node")

    def __init__(self, node: int, floor: int = -1) -> None:
        self._node = 0
        self._last = -1  # µs part of the last id issued (since EPOCH_US)
        self.set_node(node)
        self.advance_past(floor)

    @property
    def node(self) -> int:
        return self._node

    def set_node(self, node: int) -> None:
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node must be 0..{MAX_NODE}, not {node}")
        self._node = node

    def advance_past(self, seq: int) -> None:
        """Issue only ids greater than ``seq`` from now on."""
        if seq >= 0:
            self._last = max(self._last, seq >> NODE_BITS)

    def next(self, now_us: int) -> int:
        """A new id at ``now_us`` (µs since the Unix epoch; a clock before 2020 counts as 2020)."""
        us = now_us - EPOCH_US
        last = self._last
        if us <= last:
            us = last + 1
        self._last = us
        seq = (us << NODE_BITS) | self._node
        if seq > _SEQ_MAX:
            raise OverflowError("archive ids run out in 2162")
        return seq


class IdCodec:
    """``seq`` <-> opaque public id (32 hex digits), with the server's 16-byte key."""

    __slots__ = ("_dec", "_enc")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the archive id key is {KEY_BYTES} bytes")
        cipher = Cipher(algorithms.AES(key), modes.ECB())  # one block per id: a keyed permutation
        # ECB keeps no state between blocks: one long-lived context each way (never finalised)
        # saves building one per id (~5 µs).
        self._enc = cipher.encryptor()
        self._dec = cipher.decryptor()

    def encode(self, seq: int) -> str:
        return self._enc.update(seq.to_bytes(8, "big") + _CHECK).hex()

    def decode(self, public_id: str) -> int | None:
        """The ``seq`` of an id this server issued, or None (garbled, foreign, another format)."""
        if len(public_id) != 32:
            return None
        try:
            block = bytes.fromhex(public_id)
        except ValueError:
            return None
        if len(block) != 16:  # fromhex skips whitespace
            return None
        plain = self._dec.update(block)
        if plain[8:] != _CHECK:
            return None
        return int.from_bytes(plain[:8], "big")


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def holder_name() -> str:
    """Who holds a node lease, for the operator reading ``mam_nodes``: host, pid, a random tag."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class NodeLease:
    """This process's node id (the low 11 bits of every ``seq`` it issues), leased in ``mam_nodes``.

    Nodes sharing one database must never issue the same ``seq``; within a node :class:`SeqClock`
    sees to it, across nodes the node id does. ``mam_nodes`` has one row per node id in use:
    ``(node, holder, expires)``, ``expires`` in µs of the holder's wall clock.

    * Start: take the first node id that has no row (a single server: 0), else the one whose
      lease expired longest ago. A missing row is taken with an INSERT, which the primary key
      makes exclusive (of two nodes starting at once, the second fails and tries the next id); an
      expired one with a compare-and-set UPDATE (``WHERE holder = old AND expires = old``).
    * While running: renew (``expires = now + TTL``) every TTL/5.
    * Stop: delete the row, so the id is free at once (a clean restart gets the same id again).
      A crashed node's id stays taken until its lease expires (TTL); the next start takes another.
    * A node issues ids only while its lease is certainly alive: for TTL/2 after it last started
      a successful renewal (by its monotonic clock). Past that (a process paused for minutes, a
      database unreachable for a while) the next id first renews the lease; if another node took
      the id meanwhile (the lease had expired), it claims a new one. Since another node takes an
      id only once it has expired (TTL after the renewal), two nodes never issue ids with the
      same node bits at the same time, provided the nodes' wall clocks agree within TTL/2
      (2.5 minutes; NTP does far better). If the database cannot be reached to renew, the node
      keeps its id (it logs an error and retries every few seconds): its archive writes fail
      then too, and the id can only be taken by another node after TTL.
    """

    TTL_US = 300 * 1_000_000
    RETRY_S = 5.0

    def __init__(self, repo: "MamRepository", clock: "Clock", log: logging.Logger) -> None:
        self._repo = repo
        self._clock = clock
        self._log = log
        self.holder = holder_name()
        self.node: int | None = None
        self.valid_until = 0.0  # monotonic seconds: ids may be issued before then
        self.seqs: SeqClock | None = None
        self._lock = asyncio.Lock()

    def _now(self) -> int:
        return int(self._clock.now() * 1_000_000)

    async def claim(self, floor: int = -1) -> SeqClock:
        """Lease a node id; returns the id source (every id greater than ``floor``)."""
        started = self._clock.monotonic()
        self.node = await self._repo.claim_node(self.holder, self._now(), self.TTL_US)
        self.valid_until = started + self.TTL_US / 2_000_000
        self.seqs = SeqClock(self.node, floor)
        self._log.info("archive node id %d (%s)", self.node, self.holder)
        return self.seqs

    def stale(self) -> bool:
        return self._clock.monotonic() >= self.valid_until

    async def renew(self) -> None:
        """Renew now (or claim anew if the lease was lost); a database error is logged."""
        async with self._lock:
            await self._renew()

    async def refresh(self) -> None:
        """Before issuing an id with a stale lease (see :meth:`stale`): renew unless done meanwhile."""
        async with self._lock:
            if self.stale():
                await self._renew()

    async def _renew(self) -> None:
        assert self.node is not None and self.seqs is not None
        started = self._clock.monotonic()
        try:
            if not await self._repo.renew_node(self.node, self.holder, self._now(), self.TTL_US):
                old = self.node
                self.node = await self._repo.claim_node(self.holder, self._now(), self.TTL_US)
                self.seqs.set_node(self.node)
                self._log.warning("archive node id %d was lost (its lease expired and another node took it); now %d", old, self.node)
        except Exception:
            self._log.exception("renewing the archive node id %d failed; keeping it, retrying", self.node)
            self.valid_until = max(self.valid_until, started + self.RETRY_S)
            return
        self.valid_until = started + self.TTL_US / 2_000_000

    async def keep(self) -> None:
        """The renewal loop (a background task until stop)."""
        while True:
            await asyncio.sleep(self.TTL_US / 5_000_000)
            await self.renew()

    async def release(self) -> None:
        if self.node is not None:
            await self._repo.release_node(self.node, self.holder)
            self.node = None

"""Durability barriers: what the server acknowledges or delivers is in every store it goes to.

A store that writes behind (the archive's group commit) gives each write a :class:`Ticket`,
resolved once the transaction holding it has committed, and hands it to the *barrier* of the
stanza being processed (:func:`hold`). The router opens one barrier per stanza it takes in
(``Router.from_client``, ``Router.send``). What processing the stanza writes to any session
waits for it (:func:`pending`, ``Session.send``): held in that session's output, in order,
until the barrier settles -- so nobody receives a message that a crash could still take out of
a store, and the sender's session goes on processing its next stanzas meanwhile (one client's
messages share group commits instead of waiting for one commit each). XEP-0198 counts a
client's stanza in ``<a h=''/>`` only once its barrier has settled (the session observer's
``hold``). A store that
commits before the router moves on (offline storage) needs no ticket. Waiting on a ticket
*hurries* it: the store commits at once instead of lingering to gather a larger batch.

The barrier lives in a context variable, so the stores and the router need not pass it along;
a task spawned while a stanza is processed sees a closed barrier and opens its own.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["Barrier", "StoreFailed", "Ticket", "hold", "pending", "scope", "settle"]

log = logging.getLogger(__name__)


class StoreFailed(RuntimeError):
    """A write behind was given up (the store shut down without committing it)."""


class Ticket:
    """One commit of a store writing behind: done when it committed (or failed for good)."""

    __slots__ = ("future", "_hurry", "_callbacks")

    def __init__(self, hurry: Callable[["Ticket"], None] | None = None) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._hurry = hurry
        self._callbacks: list[Callable[[], None]] | None = None

    def done(self) -> bool:
        return self.future.done()

    def committed(self) -> None:
        if not self.future.done():
            self.future.set_result(None)
            self._run_callbacks()

    def failed(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
            self.future.add_done_callback(_retrieved)  # waiters raise it; nobody waiting is fine too
            self._run_callbacks()

    def on_done(self, callback: Callable[[], None]) -> None:
        """``callback()`` as soon as the ticket is done: called by :meth:`committed` or
        :meth:`failed` themselves, in the store's own turn of the event loop (a future's done
        callbacks would wait for the next turn: on a busy loop, hundreds of µs before the
        deliveries held for the commit go out)."""
        if self.future.done():
            asyncio.get_running_loop().call_soon(callback)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def _run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            try:
                callback()
            except Exception:  # one waiter's failure is not the store's, nor the other waiters'
                log.exception("durability callback %r failed", callback)

    def hurry(self) -> None:
        """Somebody waits for this write: the store should commit now rather than linger."""
        if self._hurry is not None and not self.future.done():
            self._hurry(self)


def _retrieved(f: asyncio.Future[None]) -> None:
    f.exception()


class Barrier:
    """The tickets of the writes one stanza caused."""

    __slots__ = ("origin", "tickets", "open")

    def __init__(self, origin: Any = None) -> None:
        self.origin = origin  # the Session whose stanza this is, if any
        self.tickets: list[Ticket] = []
        self.open = True

    def hold(self, ticket: Ticket) -> None:
        if ticket.done() and ticket.future.exception() is None:
            return
        first = not self.tickets
        if ticket not in self.tickets:
            self.tickets.append(ticket)
        if first and self.open:
            observer = getattr(self.origin, "observer", None)
            if observer is not None:
                observer.hold(self)

    @property
    def settled(self) -> bool:
        """Every write of the stanza is done: committed, or given up (see :attr:`failed`)."""
        for t in self.tickets:  # (asked for every held stanza: a loop, not all() of a generator)
            if not t.future.done():
                return False
        return True

    @property
    def failed(self) -> bool:
        """A write of the stanza was given up: it is not stored, whatever else is."""
        return any(t.future.done() and t.future.exception() is not None for t in self.tickets)

    async def wait(self) -> None:
        """Until every ticket committed; raises :class:`StoreFailed` if one was given up."""
        for t in self.tickets:
            if not t.done():
                t.hurry()
                await asyncio.shield(t.future)  # (raises what failed() set)
            elif t.future.exception() is not None:
                raise t.future.exception()  # type: ignore[misc]
        self.tickets.clear()  # all committed

    def when_settled(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once, from the event loop) when :attr:`settled` becomes true;
        the stores are hurried, since somebody waits."""
        pending = [t for t in self.tickets if not t.done()]
        if not pending:
            asyncio.get_running_loop().call_soon(callback)
            return
        for t in pending:
            t.hurry()
        if len(pending) == 1:
            pending[0].on_done(callback)
            return
        left = [len(pending)]

        def one_done() -> None:
            left[0] -= 1
            if left[0] == 0:
                callback()

        for t in pending:
            t.on_done(one_done)


#: The barrier of the stanza being processed (None outside any).
CURRENT: ContextVar[Barrier | None] = ContextVar("xmppd_durability_barrier", default=None)


@contextmanager
def scope(origin: Any = None) -> Iterator[Barrier]:
    """The barrier of the stanza being processed: a new one, unless one is open already (a
    stanza routed while another is processed belongs to it)."""
    current = CURRENT.get()
    if current is not None and current.open:
        yield current
        return
    barrier = Barrier(origin)
    token = CURRENT.set(barrier)
    try:
        yield barrier
    finally:
        barrier.open = False
        CURRENT.reset(token)


def hold(ticket: Ticket) -> None:
    """A store wrote behind for the stanza being processed: its deliveries and acks wait."""
    barrier = CURRENT.get()
    if barrier is not None and barrier.open:
        barrier.hold(ticket)


def pending() -> Barrier | None:
    """The barrier of the stanza being processed, if some of its writes are not committed yet:
    what it makes the server write to a session waits for it (``Session.send``)."""
    barrier = CURRENT.get()
    if barrier is not None and barrier.tickets and not barrier.settled:
        return barrier
    return None


async def settle() -> None:
    """Before a delivery: wait until the stanza being processed is in every store it goes to."""
    barrier = CURRENT.get()
    if barrier is not None and barrier.tickets:
        await barrier.wait()

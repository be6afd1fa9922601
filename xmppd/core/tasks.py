"""Tasks: stopping them the one way (cancel, then wait until each has ended), and starting a
coroutine eagerly (its first step at once, a Task only if it suspends)."""
from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any


async def stop_tasks(*tasks: asyncio.Task[object] | None) -> None:
    """Cancel ``tasks`` (None ones are skipped) and wait until every one has ended, so that
    nothing of theirs still runs when the caller goes on (closing what they used)."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        try:
            await task
        except asyncio.CancelledError:
            pass


# ------------------------------------------------------------------ eager start
#
# Python 3.12 runs a task's first step at once when asked (``asyncio.Task(...,
# eager_start=True)``, ``asyncio.eager_task_factory``): a coroutine that finishes without
# suspending never costs a Task, a call_soon and a turn of the event loop. Most stanzas are
# handled that way (nothing they do waits); on Python 3.11 the task per chunk a client sent was
# about a fifth of the CPU of a chat message at one message in flight (bench/hotpath_bench.py
# --in-flight 1: 29 -> 24 µs without the archive). :func:`start_eagerly` is the
# same for 3.11, written here because no library offers it: the first step runs in the
# caller's turn under a stand-in for the task (what ``asyncio.current_task()`` returns there,
# so that ``asyncio.timeout``, aiohttp's and redis-py's timeouts work in the first step as in
# any task), and only a coroutine that suspends gets a Task, which resumes it where it stopped.

_enter_task = asyncio.tasks._enter_task  # (private, but the C functions 3.12's own eager start uses too)
_leave_task = asyncio.tasks._leave_task
#: asyncio's futures and tasks in C, whose await yields the future again when resumed early.
_C_FUTURE: type | tuple[()] = getattr(asyncio.futures, "_CFuture", ())


class _StandIn:
    """``asyncio.current_task()`` during an eager first step. What a timeout or a task group
    asks of its task (cancel, uncancel, cancelling, done) is counted here until the step ends, and
    forwarded to the Task that carries the coroutine on from then on."""

    __slots__ = ("task", "_cancels", "_message")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self._cancels = 0
        self._message: Any = None

    def cancel(self, msg: Any = None) -> bool:
        if self.task is not None:
            return self.task.cancel(msg)
        self._cancels += 1
        self._message = msg
        return True

    def cancelling(self) -> int:
        return self.task.cancelling() if self.task is not None else self._cancels

    def uncancel(self) -> int:
        if self.task is not None:
            return self.task.uncancel()
        if self._cancels > 0:
            self._cancels -= 1
        return self._cancels

    def done(self) -> bool:
        return self.task.done() if self.task is not None else False

    def hand_over(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        for _ in range(self._cancels):  # cancelled while the first step ran: at its next await
            task.cancel(self._message)


def start_eagerly(coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop, *, name: str | None = None) -> asyncio.Task[Any] | None:
    """Run ``coro`` up to its first suspension now, in a copy of the current context (as a
    task would); return the Task that carries it on from there, or None when it finished.
    An exception it raised in that step propagates to the caller. The caller must expect the
    coroutine to run re-entrantly: call this from a transport's callback or the like, not
    from code that holds state the coroutine may change."""
    context = contextvars.copy_context()
    current = asyncio.current_task(loop)
    stand_in = _StandIn()
    if current is not None:
        _leave_task(loop, current)
    _enter_task(loop, stand_in)
    try:
        yielded = context.run(coro.send, None)
    except StopIteration:
        return None
    finally:
        _leave_task(loop, stand_in)
        if current is not None:
            _enter_task(loop, current)
    if yielded is None or isinstance(yielded, _C_FUTURE):
        # The Task can take the coroutine over as it is: its first step resumes the coroutine,
        # whose await (asyncio's C future iterator) yields the same future again once it is
        # no longer marked as waited for -- and the Task waits for it. A bare yield (sleep(0))
        # just goes on, one turn later, as it would have.
        if yielded is not None:
            yielded._asyncio_future_blocking = False
        task = loop.create_task(coro, name=name, context=context)
    else:  # another kind of future: a task of ours waits for it in the coroutine's stead
        task = loop.create_task(_carry_on(coro, yielded), name=name, context=context)
        # (cancelled before its first step, the task never reached the coroutine: close it)
        task.add_done_callback(lambda _: coro.close())
    stand_in.hand_over(task)
    return task


async def _carry_on(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """What a Task does with a coroutine, from the point where it suspended on a future that is
    not asyncio's own C one: wait for it, then resume the coroutine -- with the exception the
    wait raised, this task's cancellation included -- until it returns."""
    while True:
        error: BaseException | None = None
        try:
            # The coroutine's own await marked the future as waited for; a Task clears the mark
            # when it takes the future over, and so do we, to wait for it in its stead.
            yielded._asyncio_future_blocking = False
            await yielded
        except BaseException as exc:  # noqa: BLE001 -- handed to the coroutine, as a Task does
            error = exc
        try:
            yielded = coro.send(None) if error is None else coro.throw(error)
        except StopIteration as stop:
            return stop.value

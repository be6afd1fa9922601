"""``xmppd.core.tasks.start_eagerly``: a coroutine's first step runs at once, a Task carries it
on only if it suspends, and inside it behaves as in any task (current task, timeouts,
cancellation, context variables, exceptions). Run on asyncio's loop and on uvloop's, which
the server uses."""
from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from xmppd.core.tasks import start_eagerly

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("eager_test", default="unset")


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]:
    def runner(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        loop = asyncio.new_event_loop() if request.param == "asyncio" else uvloop.new_event_loop()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()

    return runner


def _from_a_callback(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[asyncio.Task[Any] | None]:
    """start_eagerly as a transport's callback calls it: from the loop, outside any task."""
    started: asyncio.Future[asyncio.Task[Any] | None] = loop.create_future()
    loop.call_soon(lambda: started.set_result(start_eagerly(coro, loop)))
    return started


def test_a_coroutine_that_never_waits_runs_at_once_without_a_task(run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[object] = []

        async def quick() -> None:
            seen.append(asyncio.current_task() is not None)

        tasks_before = len(asyncio.all_tasks())
        assert start_eagerly(quick(), loop) is None
        assert seen == [True]  # ran inside the call, with a current task to ask for
        assert len(asyncio.all_tasks()) == tasks_before

    run(main)


def test_a_coroutine_that_waits_is_carried_on_by_a_task_with_its_result(run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        steps: list[str] = []
        gate = loop.create_future()

        async def two_steps() -> int:
            steps.append("first")
            value = await gate
            steps.append("second")
            await asyncio.sleep(0)  # a bare yield too
            return value + 1

        task = await _from_a_callback(loop, two_steps())
        assert steps == ["first"] and isinstance(task, asyncio.Task) and not task.done()
        gate.set_result(41)
        assert await task == 42
        assert steps == ["first", "second"]

    run(main)


def test_exceptions_reach_the_caller_in_the_first_step_and_the_coroutine_after_it(run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def broken_at_once() -> None:
            raise ValueError("first step")

        with pytest.raises(ValueError, match="first step"):
            start_eagerly(broken_at_once(), loop)

        failing = loop.create_future()
        caught: list[BaseException] = []

        async def catches() -> str:
            try:
                await failing
            except KeyError as exc:
                caught.append(exc)
            raise RuntimeError("after")

        task = await _from_a_callback(loop, catches())
        failing.set_exception(KeyError("the future's"))
        with pytest.raises(RuntimeError, match="after"):
            await task
        assert [str(e) for e in caught] == ["\"the future's\""]

    run(main)


def test_a_timeout_entered_in_the_first_step_fires_after_it(run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        outcome: list[str] = []

        async def waits_too_long() -> None:
            try:
                async with asyncio.timeout(0.05):
                    await loop.create_future()  # never done
            except TimeoutError:
                outcome.append("timed out")
            outcome.append("went on")

        task = await _from_a_callback(loop, waits_too_long())
        assert task is not None
        await asyncio.wait_for(task, 5)
        assert outcome == ["timed out", "went on"]
        assert not task.cancelled() and task.cancelling() == 0

    run(main)


def test_cancelling_the_task_cancels_the_coroutine_where_it_waits(run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waited = loop.create_future()
        cleaned: list[str] = []

        async def waits() -> None:
            try:
                await waited
            finally:
                cleaned.append("finally")

        task = await _from_a_callback(loop, waits())
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled() and waited.cancelled() and cleaned == ["finally"]

    run(main)


def test_a_cancel_asked_for_in_the_first_step_takes_effect_at_the_next_wait(run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        got: list[str] = []

        async def cancels_itself() -> None:
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            got.append("still running")
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                got.append("cancelled at the wait")
                raise

        task = await _from_a_callback(loop, cancels_itself())
        assert task is not None
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        assert got == ["still running", "cancelled at the wait"]

    run(main)


def test_context_variables_live_in_the_coroutines_own_copy(run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        gate = loop.create_future()

        async def sets_a_variable() -> None:
            VAR.set("inside")
            await gate
            seen.append(VAR.get())

        VAR.set("outside")
        task = start_eagerly(sets_a_variable(), loop)
        assert VAR.get() == "outside"  # the caller's context is not the coroutine's
        gate.set_result(None)
        assert task is not None
        await task
        assert seen == ["inside"]

    run(main)


def test_called_from_a_task_the_callers_task_is_current_again_afterwards(run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        inner: list[object] = []

        async def other() -> None:
            inner.append(asyncio.current_task())
            await asyncio.sleep(0)
            inner.append(asyncio.current_task())

        task = start_eagerly(other(), loop)
        assert asyncio.current_task() is me
        assert task is not None
        await task
        assert inner[0] is not me and inner[0] is not None
        assert inner[1] is task

    run(main)


def test_a_future_of_another_kind_is_waited_for_in_the_coroutines_stead(run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        other = asyncio.futures._PyFuture(loop=loop)  # the pure-Python future, not the C one
        got: list[object] = []

        async def waits_for_it() -> str:
            got.append(await other)
            return "done"

        task = await _from_a_callback(loop, waits_for_it())
        assert task is not None and not task.done()
        await asyncio.sleep(0)
        other.set_result("value")
        assert await asyncio.wait_for(task, 5) == "done" and got == ["value"]

        never = asyncio.futures._PyFuture(loop=loop)
        cleaned: list[str] = []

        async def cancelled_while_waiting() -> None:
            try:
                await never
            finally:
                cleaned.append("finally")

        task = await _from_a_callback(loop, cancelled_while_waiting())
        assert task is not None
        task.cancel()  # before the task's first step, even
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned == ["finally"]

    run(main)

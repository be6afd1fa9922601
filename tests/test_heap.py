"""xmppd.heap: freed heap memory goes back to the system (glibc malloc_trim)."""
from __future__ import annotations

import asyncio

import pytest

from xmppd import heap


def test_trim_runs_only_when_enough_heap_is_free():
    libc = heap._libc()
    assert libc is not None, "xmppd runs on glibc here; on musl trim_periodically returns at once"
    assert heap.trim_if_worth_it(libc, min_free=0) is True
    if hasattr(libc, "mallinfo2"):
        assert heap.trim_if_worth_it(libc, min_free=1 << 62) is False


async def test_trim_periodically_runs_until_cancelled():
    task = asyncio.ensure_future(heap.trim_periodically(interval=0.01))
    await asyncio.sleep(0.1)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

"""Give freed heap memory back to the operating system (glibc ``malloc_trim``).

CPython and libxml2 allocate with malloc, and glibc hands freed memory back to the system only
from the top of the heap. After a burst (a flood of big stanzas, a storm of logins) the process
therefore keeps its peak size although the memory is free and reused: a flood of 250,000
distinct names in 60 KB stanzas left ~40 MB resident that ``malloc_trim`` gave back at once
(issue 15 item 1; the names themselves are freed by :mod:`xmppd.xml.names`).

Every :data:`INTERVAL` seconds, when more than :data:`MIN_FREE` bytes lie free in the heap,
``malloc_trim(0)`` releases the free pages, in a worker thread (ctypes drops the GIL for the
call; the allocator's lock is held for a few milliseconds per gigabyte of heap). On a C library
other than glibc this does nothing.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from typing import Any

log = logging.getLogger(__name__)

INTERVAL = 5.0  # seconds between checks
MIN_FREE = 8 * 1024 * 1024  # free bytes in the heap worth a trim


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
    )]


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
        libc.mallinfo2.argtypes = ()
    return libc


def trim_if_worth_it(libc: Any, min_free: int = MIN_FREE) -> bool:
    """Trim when the heap holds more than ``min_free`` free bytes (always, without mallinfo2)."""
    if hasattr(libc, "mallinfo2") and libc.mallinfo2().fordblks < min_free:
        return False
    libc.malloc_trim(0)
    return True


async def trim_periodically(interval: float = INTERVAL) -> None:
    """Run until cancelled; returns at once where there is no glibc."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        log.debug("no malloc_trim: freed heap memory stays with the process")
        return
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        await loop.run_in_executor(None, trim_if_worth_it, libc)

"""Background tasks: stopping them the one way (cancel, then wait until each has ended)."""
from __future__ import annotations

import asyncio


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

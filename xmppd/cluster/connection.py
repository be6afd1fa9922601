"""The Redis client every cluster part uses: redis-py's asyncio client, failing fast.

No retries inside the client: the callers (the membership loop, ``xmppctl``) decide what an
unreachable Redis means for them (serve locally and retry with backoff; one error line).
"""
from __future__ import annotations

from typing import Any


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """What "Redis cannot be reached right now" looks like (BusyLoadingError is a ConnectionError)."""
    from redis.exceptions import ConnectionError, TimeoutError

    return (ConnectionError, TimeoutError, OSError)


def connect(url: str, timeout: float) -> Any:
    """A client for ``url``; nothing connects until the first command."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return aioredis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        client_name="xmppd",
    )


def describe(url: str) -> str:
    """The URL without its password, for logs and messages."""
    from ..storage.engine import redact_url

    return redact_url(url)

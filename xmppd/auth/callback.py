"""The app's auth callback (``auth.http_url``): is this user/password pair valid?

xmppd POSTs ``{"user": ..., "server": ..., "password": ...}`` as JSON; the app answers
``200 {"ok": true}`` for a valid pair, and anything else (another status, ``ok`` not true)
refuses it. Each attempt waits at most ``http_timeout`` seconds; a timeout or a connection
error is tried again at most ``http_retries`` times, then the login fails closed
(:class:`CallbackUnavailable`: temporary-auth-failure). A valid answer is remembered for
``http_cache_seconds``, keyed by a keyed hash of user and password: the password itself is
never kept, nor logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import aiohttp

from ..config import AuthOptions

log = logging.getLogger("xmppd.auth")

#: Valid pairs remembered at once (oldest forgotten first).
CACHE_SIZE: Final = 10_000


class CallbackUnavailable(Exception):
    """The callback did not answer (down, too slow, a 5xx): fail closed."""


class AuthCallback:
    def __init__(self, opts: AuthOptions, domain: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = opts.http_url
        self.domain = domain
        self.timeout = opts.http_timeout
        self.retries = opts.http_retries
        self.cache_seconds = opts.http_cache_seconds
        self._clock = clock
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._key = secrets.token_bytes(32)  # per process: a stolen cache dump proves nothing
        self._session: aiohttp.ClientSession | None = None

    def _cache_key(self, user: str, password: str) -> bytes:
        return hmac.digest(self._key, user.encode() + b"\0" + password.encode("utf-8", "surrogatepass"), hashlib.sha256)

    async def check(self, user: str, password: str) -> bool:
        """True when the app says the pair is valid; raises :class:`CallbackUnavailable`."""
        key = self._cache_key(user, password)
        now = self._clock()
        until = self._cache.get(key)
        if until is not None:
            if until > now:
                return True
            del self._cache[key]
        ok = await self._ask(user, password)
        if ok and self.cache_seconds > 0:
            self._cache[key] = now + self.cache_seconds
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return ok

    async def _ask(self, user: str, password: str) -> bool:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        body = {"user": user, "server": self.domain, "password": password}
        for attempt in range(self.retries + 1):
            try:
                async with self._session.post(self.url, json=body) as resp:
                    if resp.status >= 500:
                        raise CallbackUnavailable(f"status {resp.status}")
                    if resp.status != 200:
                        return False
                    try:
                        answer = await resp.json(content_type=None)
                    except ValueError:
                        return False
                    return isinstance(answer, dict) and answer.get("ok") is True
            except (TimeoutError, aiohttp.ClientError, CallbackUnavailable) as exc:
                log.warning("auth callback %s: attempt %d of %d failed: %s", self.url, attempt + 1, self.retries + 1, type(exc).__name__ if not str(exc) else exc)
        raise CallbackUnavailable("the auth callback did not answer")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

"""A real HTTP receiver for webhook tests: an aiohttp server on a free port that checks every
request's X-Xmppd-Signature and records the events in arrival order."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

SECRET = "test-webhook-secret-0123456789"


class Receiver:
    def __init__(self, secret: str = SECRET, status: Callable[[dict[str, Any]], int] | None = None) -> None:
        self.secret = secret
        self.status = status or (lambda _event: 200)
        self.events: list[dict[str, Any]] = []  # accepted, in arrival order (duplicates included)
        self.bad_signatures = 0
        self.refused = 0
        self.port = 0
        self.hang = False  # True: accept requests and never answer (a stuck endpoint)
        self._runner: web.AppRunner | None = None
        self.arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ids(self) -> set[str]:
        return {e["id"] for e in self.events}

    def first_arrivals(self) -> list[dict[str, Any]]:
        seen: set[str] = set()
        out = []
        for e in self.events:
            if e["id"] not in seen:
                seen.add(e["id"])
                out.append(e)
        return out

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hang:
            await asyncio.sleep(3600)  # cancelled when the receiver stops
        want = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, request.headers.get("X-Xmppd-Signature", "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        event = json.loads(body)
        assert set(event) == {"id", "event", "time", "data"}, event
        assert request.headers.get("X-Xmppd-Event") == event["event"]
        status = self.status(event)
        if status >= 300:
            self.refused += 1
            return web.Response(status=status)
        self.events.append(event)
        self.arrived.set()
        return web.Response(status=204)

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port or self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 60) -> None:
        async def go() -> None:
            while not predicate():
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), 0.5)
                except TimeoutError:
                    pass

        await asyncio.wait_for(go(), timeout)

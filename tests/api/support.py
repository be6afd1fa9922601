"""A server with the REST API on a free port, and an aiohttp client for it."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import running_server

ADMIN = "admin-token-0123456789abcdefghij"
READ = "read-token-0123456789abcdefghijkl"
TOKENS = f'api.tokens=[{{ token = "{ADMIN}", scope = "admin", name = "backend" }}, {{ token = "{READ}", scope = "read" }}]'


class Api:
    """``await api.call("POST", "/users", json=...)`` -> (status, decoded JSON or None)."""

    def __init__(self, server: Any, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = session
        self.base = f"http://127.0.0.1:{server.ports['http']}"

    async def call(self, method: str, path: Any, *, token: str | None = ADMIN, **kw: Any) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = self.base + path if isinstance(path, str) else path  # a yarl.URL: sent as it is
        async with self.http.request(method, url, headers=headers, **kw) as r:
            text = await r.text()
            if r.content_type == "application/json" and text:
                import json

                return r.status, json.loads(text)
            return r.status, text or None


@contextlib.asynccontextmanager
async def api_server(tmp_path: Path, *overrides: str) -> AsyncIterator[Api]:
    async with running_server(tmp_path, "listen.http=127.0.0.1:0", TOKENS, *overrides) as server:
        async with aiohttp.ClientSession() as session:
            yield Api(server, session)


async def call_once(port: int, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    """One request to the REST API (``/api/v1`` + ``path``) on ``port`` as the admin: a cluster
    node of a test -> (status, decoded JSON or None)."""
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}/api/v1{path}"
        async with http.request(method, url, headers={"Authorization": f"Bearer {ADMIN}"}, **kw) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else None)

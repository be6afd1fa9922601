"""/metrics (Prometheus text, metrics.allow) and /health (storage answers or 503), over HTTP."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import add_user, slix, slix_close

from .support import api_server


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(api, **headers: str) -> tuple[int, str]:
    async with api.http.get(api.base + "/metrics", headers=headers) as r:
        return r.status, await r.text()


async def test_metrics_count_sessions_stanzas_latency_and_auth_failures(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        alice = await slix(api.server, await add_user(api.server, "alice"))
        bob = await slix(api.server, await add_user(api.server, "bob"))
        got: asyncio.Queue = asyncio.Queue()
        bob.add_event_handler("message", got.put_nowait)
        try:
            bob.send_presence()
            alice.send_message(mto="bob@localhost", mbody="hi", mtype="chat")
            await asyncio.wait_for(got.get(), 10)
            with pytest.raises(ConnectionError):
                await slix(api.server, "alice@localhost", "a wrong password")
            status, text = await scrape(api)
            assert status == 200
            m = samples(text)
            assert m[("xmppd_sessions", (("transport", "tcp"),))] == 2
            assert m[("xmppd_sessions", (("transport", "websocket"),))] == 0
            assert m[("xmppd_stanzas_in_total", (("kind", "message"),))] >= 1
            assert m[("xmppd_stanzas_out_total", (("kind", "message"),))] >= 1
            assert m[("xmppd_stanzas_in_total", (("kind", "presence"),))] >= 1
            assert m[("xmppd_auth_failures_total", (("reason", "not-authorized"),))] >= 1  # one per mechanism slixmpp tried
            assert m[("xmppd_routing_seconds_count", ())] >= 2
            assert m[("xmppd_storage_seconds_count", ())] >= 1
            assert ("xmppd_archive_queue", ()) in m
            assert m[("xmppd_redpackets_total", (("event", "sent"),))] == 0
        finally:
            await slix_close(alice)
            await slix_close(bob)


async def test_metrics_only_for_allowed_addresses_and_forwarded_only_from_trusted_proxies(tmp_path: Path) -> None:
    async with api_server(tmp_path, 'metrics.allow=["10.0.0.0/8"]') as api:
        status, text = await scrape(api)
        assert status == 403
        status, _ = await scrape(api, **{"X-Forwarded-For": "10.1.2.3"})  # 127.0.0.1 is no trusted proxy here
        assert status == 403
    async with api_server(tmp_path, 'metrics.allow=["10.0.0.0/8"]', 'http.trusted_proxies=["127.0.0.1"]') as api:
        status, text = await scrape(api, **{"X-Forwarded-For": "10.1.2.3"})
        assert status == 200 and "xmppd_sessions" in text
        status, _ = await scrape(api, **{"X-Forwarded-For": "192.0.2.7"})
        assert status == 403
        status, _ = await scrape(api)  # the proxy itself is not in metrics.allow
        assert status == 403


# ------------------------------------------------------------------ /health


class FreezableProxy:
    """A TCP relay to the shared MariaDB that can stop relaying (a database that hangs)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, up_writer]
        for a, b in ((reader, up_writer), (up_reader, writer)):
            t = asyncio.ensure_future(self._pump(a, b))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            self.flowing.set()
            server.close()
            for w in self.writers:
                w.close()
            for t in list(self.tasks):
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)


async def health(api) -> tuple[int, dict]:
    async with api.http.get(api.base + "/health") as r:
        return r.status, await r.json()


async def test_health_is_503_while_storage_does_not_answer(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    db = request.getfixturevalue("mariadb_server")
    url = db.create_database()
    proxy = FreezableProxy(url.port or 3306)
    async with proxy.running() as port:
        storage = url.set(port=port, host="127.0.0.1").render_as_string(hide_password=False)
        async with api_server(tmp_path, f"storage.url={storage}", "storage.auto_upgrade=true", "metrics.health_timeout=1") as api:
            status, body = await health(api)
            assert (status, body["status"], body["checks"]["storage"]) == (200, "ok", "ok")
            proxy.flowing.clear()
            status, body = await health(api)
            assert status == 503 and body["status"] == "unavailable"
            assert body["checks"]["storage"] == "no answer within 1 s"
            proxy.flowing.set()
            for _ in range(50):  # the hung connection is dropped; a new one answers
                status, body = await health(api)
                if status == 200:
                    break
            assert status == 200
    db.drop_database(url)


async def test_health_needs_no_token_and_answers_json(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        async with aiohttp.ClientSession() as s, s.get(api.base + "/health") as r:
            assert r.status == 200 and (await r.json())["checks"] == {"node": "serving", "storage": "ok"}

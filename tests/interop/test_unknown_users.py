"""SCRAM answers for accounts that do not exist look like those of accounts that do, and stay
the same across restarts (the key is a server secret kept in the database, storage.secrets)."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ..helpers import RawClient, add_user, running_server

pytestmark = pytest.mark.interop

PLAIN_OK = "c2s.require_tls=false"


async def server_first(srv, user: str, mechanism: str = "SCRAM-SHA-256") -> dict[str, str]:
    """The attributes of the server-first-message the server (or its c2s port) sends to ``user``."""
    port = srv if isinstance(srv, int) else srv.ports["c2s"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = RawClient(reader, writer)
    try:
        await raw.open_stream()
        raw.buffer = b""
        first = base64.b64encode(f"n,,n={user},r=fyko+d2lbbFgONRv9qkxdawL".encode()).decode()
        await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{first}</auth>")
        data = (await raw.read_until(b"</challenge>")).decode()
    finally:
        raw.close()
    payload = data[data.index("<challenge") :].split(">", 1)[1].split("</challenge>", 1)[0]
    message = base64.b64decode(payload).decode()
    return dict(part.split("=", 1) for part in message.split(","))


def shape(attrs: dict[str, str]) -> tuple[object, ...]:
    return (tuple(attrs), len(base64.b64decode(attrs["s"])), attrs["i"], len(attrs["r"]))


@contextlib.asynccontextmanager
async def xmppd_process(data_dir: Path, storage_url: str) -> AsyncIterator[int]:
    """A real ``xmppd`` process (its own key material would be per process); its c2s port."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "xmppd"),
        "--set", f"server.data_dir={data_dir.as_posix()}",
        "--set", f"storage.url={storage_url}",
        "--set", "storage.auto_upgrade=true",
        "--set", "listen.c2s=127.0.0.1:0",
        "--set", "listen.c2s_tls=",
        "--set", "listen.http=",
        "--set", PLAIN_OK,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    log = b""
    try:
        while True:
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, log.decode()
            log += line
            if m := re.search(rb"listening for c2s on 127\.0\.0\.1:(\d+)", line):
                break
        drain = asyncio.ensure_future(proc.stderr.read())  # never block the server on a full pipe
        yield int(m.group(1))
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await drain
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_salt_of_an_unknown_user_is_the_same_on_every_node_and_after_restarts(tmp_path):
    url = f"sqlite+aiosqlite:///{(tmp_path / 'shared.db').as_posix()}"
    mechanisms = ("SCRAM-SHA-256", "SCRAM-SHA-1")
    # Two nodes starting at once on a fresh database: both want to make the secret.
    async with contextlib.AsyncExitStack() as stack:
        a, b = await asyncio.gather(
            stack.enter_async_context(xmppd_process(tmp_path / "a", url)),
            stack.enter_async_context(xmppd_process(tmp_path / "b", url)),
        )
        first = {m: await server_first(a, "nobody", m) for m in mechanisms}
        other = {m: await server_first(b, "nobody", m) for m in mechanisms}
    async with xmppd_process(tmp_path / "a", url) as a:  # restarted
        again = {m: await server_first(a, "nobody", m) for m in mechanisms}
        assert (await server_first(a, "NoBody"))["s"] == again["SCRAM-SHA-256"]["s"]
    for m in mechanisms:
        assert first[m]["s"] == other[m]["s"] == again[m]["s"]
        assert first[m]["i"] == other[m]["i"] == again[m]["i"]
    assert first["SCRAM-SHA-256"]["s"] != first["SCRAM-SHA-1"]["s"]  # as a real account's


async def test_an_unknown_user_gets_the_answer_of_a_real_one(tmp_path):
    async with running_server(tmp_path, PLAIN_OK) as srv:
        await add_user(srv, "alice")
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
            real, fake = await server_first(srv, "alice", mechanism), await server_first(srv, "nobody", mechanism)
            assert shape(fake) == shape(real)
            assert (await server_first(srv, "alice", mechanism))["s"] == real["s"]
            assert (await server_first(srv, "nobody", mechanism))["s"] == fake["s"]
        assert (await server_first(srv, "somebody"))["s"] != (await server_first(srv, "nobody"))["s"]

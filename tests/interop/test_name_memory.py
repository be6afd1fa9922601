"""Distinct XML names from peers do not stay in the server's memory (issue 15 item 1).

libxml2 interns element and attribute names in dictionaries that never shrink; lxml shared one
per thread, so every distinct name a peer sent stayed for the life of the process. The server
runs in a subprocess here so that its resident set size (/proc/<pid>/status VmRSS) can be read
while raw sockets flood it: ~500,000 distinct names before login over ~1,000 sequential
connections (each within the 10 KiB pre-auth limit) and ~500,000 after login (16 KB messages to
another user and iqs to the server, both with unknown payloads), then every flooding connection
closes. A smaller round of the same traffic first warms the server up (allocator pools, storage
caches). Freed heap memory is handed back by xmppd.heap every few seconds: the test waits for
it. Before the name tables of xmppd.xml.names this grew by ~40 MB; with them, by ~4 MB.
"""
from __future__ import annotations

import asyncio
import base64
import re
import sys
from pathlib import Path

import pytest

from xmppd import heap

from ..helpers import PASSWORD

pytestmark = pytest.mark.interop

BIN = Path(sys.executable).parent
HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)
MB = 1024 * 1024


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class _Names:
    """Distinct element and attribute names, never repeated within a run."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.n = 0

    def children(self, budget: int) -> tuple[bytes, int]:
        """Empty elements, each with a distinct name and one distinct attribute, within ``budget`` bytes."""
        parts = []
        size = 0
        count = 0
        while True:
            self.n += 1
            part = f"<e{self.tag}{self.n:x} a{self.tag}{self.n:x}=''/>".encode()
            if size + len(part) > budget:
                return b"".join(parts), count
            parts.append(part)
            size += len(part)
            count += 2


async def _start(tmp_path: Path) -> tuple[asyncio.subprocess.Process, int]:
    for user in ("mallory", "bob"):
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "xmppctl"), "--set", f"server.data_dir={tmp_path / 'data'}",
            "user", "add", f"{user}@localhost", "--password", PASSWORD,
        )
        assert await proc.wait() == 0
    log = tmp_path / "xmppd.log"
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "xmppd"),
        "--set", f"server.data_dir={tmp_path / 'data'}",
        "--set", "listen.c2s=127.0.0.1:0",
        "--set", "listen.c2s_tls=",
        "--set", "listen.http=",
        "--set", "c2s.require_tls=false",
        "--set", "log.level=warning",
        cwd=tmp_path,
        stderr=log.open("wb"),
    )
    # The port is logged at info level, which this run hides: read it from the socket table.
    for _ in range(300):
        port = _listening_port(proc.pid)
        if port:
            return proc, port
        assert proc.returncode is None, log.read_text()
        await asyncio.sleep(0.1)
    raise AssertionError(f"the server did not listen: {log.read_text()}")


def _listening_port(pid: int) -> int | None:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
            return int(fields[1].split(":")[1], 16)
    return None


async def _preauth_flood(port: int, names: _Names, total: int) -> int:
    """Sequential connections, each one pre-auth element of distinct names; the server refuses it."""
    sent = 0
    while sent < total:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body, count = names.children(10240 - 20)
        writer.write(HEADER + b"<flood>" + body + b"</flood>")
        await writer.drain()
        while await reader.read(65536):  # the stream error, then the close
            pass
        writer.close()
        sent += count
    return sent


async def _login(port: int, user: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def until(needle: bytes) -> None:
        buf = b""
        while needle not in buf:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, buf
            buf += chunk

    writer.write(HEADER)
    await until(b"</stream:features>")
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode())
    await until(b"<success")
    writer.write(HEADER)
    await until(b"</stream:features>")
    writer.write(f"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{user}</resource></bind></iq>".encode())
    await until(b"</iq>")
    writer.write(b"<presence/>")
    return reader, writer


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def _authenticated_flood(port: int, names: _Names, total: int) -> int:
    """Messages to another user and iqs to the server, their payloads full of distinct names."""
    bob_r, bob_w = await _login(port, "bob")
    draining = asyncio.create_task(_drain(bob_r))
    mal_r, mal_w = await _login(port, "mallory")
    mal_draining = asyncio.create_task(_drain(mal_r))
    sent = 0
    i = 0
    while sent < total:
        i += 1
        body, count = names.children(16000)
        if i % 2:
            stanza = b"<message to='bob@localhost/bob' type='normal'><x xmlns='urn:example:flood'>" + body + b"</x></message>"
        else:
            stanza = f"<iq type='get' to='localhost' id='q{i}'><q xmlns='urn:example:flood'>".encode() + body + b"</q></iq>"
        mal_w.write(stanza)
        await mal_w.drain()
        sent += count
    # A ping round trip: everything before it has been processed.
    mal_w.write(b"<iq type='get' to='localhost' id='last'><ping xmlns='urn:xmpp:ping'/></iq>")
    await mal_w.drain()
    await asyncio.sleep(0.5)
    for w in (mal_w, bob_w):
        w.write(b"</stream:stream>")
        w.close()
    await asyncio.wait_for(asyncio.gather(draining, mal_draining, return_exceptions=True), 10)
    return sent


async def test_distinct_names_before_and_after_login_leave_no_memory_behind(tmp_path):
    proc, port = await _start(tmp_path)
    try:
        names = _Names("w")
        # Warm up every code path once (allocator pools, storage caches, the first generations).
        await _preauth_flood(port, names, 100_000)
        await _authenticated_flood(port, names, 100_000)
        await asyncio.sleep(heap.INTERVAL + 1)
        before = _rss(proc.pid)

        names = _Names("f")
        pre = await _preauth_flood(port, names, 500_000)
        post = await _authenticated_flood(port, names, 500_000)
        assert pre + post >= 1_000_000
        # Freed memory goes back to the system within a few trim periods (xmppd.heap).
        for _ in range(40):
            await asyncio.sleep(0.5)
            after = _rss(proc.pid)
            if after - before < 10 * MB:
                break
        print(f"VmRSS before {before / MB:.1f} MB, after {pre + post:,} names {after / MB:.1f} MB")
        assert after - before < 10 * MB, f"RSS grew by {(after - before) / MB:.1f} MB"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)

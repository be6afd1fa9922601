"""HTTP file upload (XEP-0363): throughput and the server's memory for one large file.

Starts ``xmppd`` as its own process (default configuration, SQLite, listen.http on a free
port), logs in with slixmpp, asks for a slot, PUTs a file of ``--mb`` MiB streamed from a
generator (the client holds one chunk at a time), GETs it back, and reports MB/s each way and
the server's peak resident memory (``VmHWM``) against its memory before the upload. Figures,
never assertions::

    .venv/bin/python bench/upload_bench.py --mb 100
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import slixmpp
from slixmpp import ET

NS = "urn:xmpp:http:upload:0"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mem_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run(mb: int) -> dict:
    size = mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        c2s, http = free_port(), free_port()
        common = ["--set", f"server.data_dir={tmp}", "--set", f"listen.c2s=127.0.0.1:{c2s}", "--set", "listen.c2s_tls=",
                  "--set", f"listen.http=127.0.0.1:{http}",
                  "--set", f"upload.max_size={size}", "--set", f"upload.quota={size}", "--set", "log.level=warning"]
        subprocess.run([BIN / "xmppctl", *common, "user", "add", "bench@localhost", "--password", "benchpass"], check=True)
        proc = subprocess.Popen([BIN / "xmppd", *common], stderr=subprocess.DEVNULL)
        try:
            return asyncio.run(measure(proc, mb, size, c2s, http))
        finally:
            proc.terminate()
            proc.wait(30)


async def measure(proc: subprocess.Popen, mb: int, size: int, c2s: int, http: int) -> dict:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", http), 0.2).close()
            break
        except OSError:
            await asyncio.sleep(0.1)
    client = slixmpp.ClientXMPP("bench@localhost", "benchpass")
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # the generated certificate
    client.ssl_context = tls
    started = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _: started.set_result(True))
    client.connect(host="127.0.0.1", port=c2s)
    await asyncio.wait_for(started, 10)
    iq = client.make_iq_get(ito="upload.localhost")
    ET.SubElement(iq.xml, f"{{{NS}}}request", {"filename": "big.bin", "size": str(size), "content-type": "application/octet-stream"})
    slot = (await iq.send(timeout=10)).xml.find(f"{{{NS}}}slot")
    url = slot.find(f"{{{NS}}}put").get("url")
    before = mem_kib(proc.pid, "VmRSS")
    chunk = os.urandom(1 << 20)

    async def body():
        for _ in range(mb):
            yield chunk

    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        async with session.put(url, data=body(), headers={"Content-Length": str(size)}) as r:
            assert r.status == 201, r.status
        put_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = 0
        async with session.get(url) as r:
            async for part in r.content.iter_chunked(1 << 20):
                got += len(part)
        get_s = time.perf_counter() - t0
    assert got == size
    peak = mem_kib(proc.pid, "VmHWM")
    client.disconnect()
    return {"mb": mb, "put_mb_s": round(mb / put_s, 1), "get_mb_s": round(mb / get_s, 1),
            "server_rss_before_kib": before, "server_peak_rss_kib": peak,
            "peak_minus_before_kib": peak - before}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100)
    print(json.dumps(run(ap.parse_args().mb), indent=1))

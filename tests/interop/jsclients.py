"""Node.js XMPP clients (xmpp.js, strophe.js, Converse.js in Chromium) driven from pytest.

Each client is a script in tests/js/ talking JSON lines: events on its stdout, commands on its
stdin (tests/js/lib/driver.mjs). Node, the npm packages and Chromium must be there: a missing
one FAILS the test with the command that installs it (scripts/test does), it never skips.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent.parent / "js"
CHROMIUM = "/usr/bin/chromium"
_checked: list[bool] = []


def ensure_node_modules() -> str:
    """The node binary, after making sure tests/js/node_modules matches package-lock.json."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are required for the WebSocket client tests (apt-get install nodejs npm)")
    if not _checked:
        lock = JS_DIR / "package-lock.json"
        installed = JS_DIR / "node_modules" / ".package-lock.json"
        if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
            result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(JS_DIR)], capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                pytest.fail(f"npm ci --prefix tests/js failed:\n{result.stdout}\n{result.stderr}")
        _checked.append(True)
    return node


def ensure_chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test installs it)")
    return CHROMIUM


class JsClientError(AssertionError):
    pass


class NodeClient:
    """One Node process; ``expect`` waits for an event, ``command`` sends one."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.events: list[dict[str, Any]] = []  # everything it printed, for diagnostics
        self._pending: list[dict[str, Any]] = []  # printed and not yet expected
        self._stderr: list[str] = []
        self._stderr_task = asyncio.get_running_loop().create_task(self._read_stderr())

    @classmethod
    async def start(cls, script: str, *args: str, env: dict[str, str] | None = None) -> "NodeClient":
        node = ensure_node_modules()
        proc = await asyncio.create_subprocess_exec(
            node, str(JS_DIR / script), *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=str(JS_DIR), env={**os.environ, **(env or {})},
        )
        return cls(proc, script)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self._stderr.append(line.decode("utf-8", "replace").rstrip())
            del self._stderr[:-200]

    def _diagnostics(self) -> str:
        events = "\n".join(json.dumps(e) for e in self.events[-30:])
        return f"{self.name}: events so far:\n{events}\nstderr:\n" + "\n".join(self._stderr[-40:])

    async def _next_line(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            return None
        try:
            event = json.loads(line)
        except ValueError:
            event = {"event": "stdout", "text": line.decode("utf-8", "replace").rstrip()}
        self.events.append(event)
        return event

    async def expect(self, event: str, timeout: float = 20, **match: Any) -> dict[str, Any]:
        """The next event named ``event`` whose fields equal ``match`` (earlier ones count too)."""

        def matches(e: dict[str, Any]) -> bool:
            return e.get("event") == event and all(e.get(k) == v for k, v in match.items())

        for i, e in enumerate(self._pending):
            if matches(e):
                del self._pending[i]
                return e
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise JsClientError(f"no {event} {match} within {timeout} s\n{self._diagnostics()}")
            try:
                e = await asyncio.wait_for(self._next_line(), left)
            except TimeoutError:
                raise JsClientError(f"no {event} {match} within {timeout} s\n{self._diagnostics()}") from None
            if e is None:
                await asyncio.sleep(0.1)  # let stderr finish
                raise JsClientError(f"{self.name} exited ({self.proc.returncode}) before {event} {match}\n{self._diagnostics()}")
            if e.get("event") == "error":
                raise JsClientError(f"{self.name} failed: {e.get('message')}\n{self._diagnostics()}")
            if matches(e):
                return e
            self._pending.append(e)

    async def command(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        await self.proc.stdin.drain()

    async def quit(self, timeout: float = 15) -> int:
        """Ask the client to log out and exit; kill it when it does not."""
        if self.proc.returncode is None:
            try:
                await self.command("quit")
                self.proc.stdin.close()  # type: ignore[union-attr]
            except (ConnectionError, RuntimeError):
                pass
            try:
                await asyncio.wait_for(self._drain_stdout(), timeout)
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._stderr_task.cancel()
        try:
            await self._stderr_task
        except asyncio.CancelledError:
            pass
        return self.proc.returncode  # type: ignore[return-value]

    async def _drain_stdout(self) -> None:
        while await self._next_line() is not None:
            pass


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)


def file_size(path: str | Path) -> int:
    return Path(path).stat().st_size

"""Start and stop the servers under test on free loopback ports, each in its own data directory.

xmppd always; Prosody and ejabberd when their Debian packages are installed (configured from the
templates in ``bench/servers/``). Each server process is pinned to one CPU.
"""
from __future__ import annotations

import abc
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .core import Target

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
DOMAIN = "bench.localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s")


def _pin(cpu: int | None) -> Any:
    def pre() -> None:
        os.setsid()  # its own process group: stop() ends the server and its children
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return pre


def self_signed(dirpath: Path) -> tuple[Path, Path]:
    cert, key = dirpath / "server.crt", dirpath / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", f"/CN={DOMAIN}",
         "-addext", f"subjectAltName=DNS:{DOMAIN},DNS:*.{DOMAIN}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


class Managed(abc.ABC):
    """A server process we started; ``stop()`` ends it and removes its data directory."""

    name = ""

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.proc: subprocess.Popen[Any] | None = None
        self.log = self.dir / "server.log"
        self.target: Target | None = None

    @staticmethod
    def available() -> bool:
        return True

    @abc.abstractmethod
    def start(self) -> Target:
        """Start the server on free loopback ports and say where it listens."""

    def _spawn(self, argv: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=cwd or self.dir, stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
            preexec_fn=_pin(self.cpu), env={**os.environ, **(env or {})},
        )
        try:
            wait_port(port, self.proc)
        except RuntimeError as exc:
            tail = self.log.read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"{self.name}: {exc}\n{tail}") from None

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        self.proc = None
        if self.log.exists():  # kept for post-mortems: bench/results/<server>.log
            keep = BENCH / "results" / f"{self.name}.log"
            keep.parent.mkdir(exist_ok=True)
            shutil.copyfile(self.log, keep)
        shutil.rmtree(self.dir, ignore_errors=True)


class Xmppd(Managed):
    name = "xmppd"
    extra: list[str] = []  # more --set overrides

    def start(self) -> Target:
        c2s, http = free_port(), free_port()
        exe = Path(sys.executable).with_name("xmppd")
        argv = [str(exe)] if exe.exists() else [sys.executable, "-c", "from xmppd.cli import xmppd_main; raise SystemExit(xmppd_main())"]
        overrides = [
            f"server.domain={DOMAIN}",
            f"server.data_dir={self.dir / 'data'}",
            f"listen.c2s=127.0.0.1:{c2s}",
            "listen.c2s_tls=",
            f"listen.http=127.0.0.1:{http}",
            "c2s.require_tls=false",
            "c2s.max_connections_per_ip=100000",
            "c2s.auth_failures_per_ip=1000000",
            "c2s.auth_failures_per_account=1000000",
            "c2s.max_sessions_per_account=1000",
            "registration.open=true",
            "registration.per_ip_per_hour=1000000",
            "muc.max_occupants=1000",
            "log.level=warning",
            *self.extra,
        ]
        # An empty file: every key at its built-in default, then the overrides.
        conf = self.dir / "xmppd.toml"
        conf.write_text("")
        argv += ["--config", str(conf)] + [a for o in overrides for a in ("--set", o)]
        self._spawn(argv, c2s)
        assert self.proc is not None
        self.target = Target("xmppd", "127.0.0.1", c2s, DOMAIN, ws_url=f"ws://127.0.0.1:{http}/xmpp-websocket", muc_domain=f"conference.{DOMAIN}", pid=self.proc.pid)
        return self.target


class Prosody(Managed):
    name = "prosody"

    @staticmethod
    def available() -> bool:
        return shutil.which("prosody") is not None

    def start(self) -> Target:
        c2s, http = free_port(), free_port()
        cert, key = self_signed(self.dir)
        data = self.dir / "data"
        data.mkdir()
        cfg = (BENCH / "servers" / "prosody.cfg.lua").read_text().format(
            data=data, c2s=c2s, http=http, domain=DOMAIN, cert=cert, key=key, log=self.log,
        )
        path = self.dir / "prosody.cfg.lua"
        path.write_text(cfg)
        self._spawn(["prosody", "--config", str(path), "-F"], c2s)
        wait_port(http, self.proc)  # type: ignore[arg-type]
        assert self.proc is not None
        self.target = Target("prosody", "127.0.0.1", c2s, DOMAIN, ws_url=f"ws://127.0.0.1:{http}/xmpp-websocket", muc_domain=f"conference.{DOMAIN}", pid=self.proc.pid)
        return self.target


class Ejabberd(Managed):
    name = "ejabberd"

    @staticmethod
    def available() -> bool:
        return shutil.which("ejabberdctl") is not None

    def start(self) -> Target:
        c2s, http = free_port(), free_port()
        cert, key = self_signed(self.dir)
        pem = self.dir / "server.pem"
        pem.write_bytes(cert.read_bytes() + key.read_bytes())
        spool, logs = self.dir / "spool", self.dir / "logs"
        spool.mkdir()
        logs.mkdir()
        cfg = (BENCH / "servers" / "ejabberd.yml").read_text().format(c2s=c2s, http=http, domain=DOMAIN, pem=pem)
        path = self.dir / "ejabberd.yml"
        path.write_text(cfg)
        try:  # ejabberdctl runs the node as the package's ejabberd user
            import pwd

            ej = pwd.getpwnam("ejabberd")
            for p in (self.dir, spool, logs, path, pem):
                os.chown(p, ej.pw_uid, ej.pw_gid)
        except (KeyError, PermissionError):
            pass
        node = f"bench{c2s}@localhost"
        self.node = node
        self._spawn(
            ["ejabberdctl", "--config", str(path), "--logs", str(logs), "--spool", str(spool), "--node", node, "foreground"],
            c2s, env={"HOME": str(self.dir), "EJABBERD_CONFIG_PATH": str(path), "EJABBERD_BYPASS_WARNINGS": "true", "ERL_EPMD_ADDRESS": "127.0.0.1"},
        )
        wait_port(http, self.proc)  # type: ignore[arg-type]
        assert self.proc is not None
        self.target = Target("ejabberd", "127.0.0.1", c2s, DOMAIN, ws_url=f"ws://127.0.0.1:{http}/xmpp-websocket", muc_domain=f"conference.{DOMAIN}", pid=self.proc.pid)
        return self.target


SERVERS: dict[str, type[Managed]] = {"xmppd": Xmppd, "prosody": Prosody, "ejabberd": Ejabberd}

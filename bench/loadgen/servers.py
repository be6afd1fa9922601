"""Start and stop the servers under test on free loopback ports, each in its own data directory.

xmppd always; Prosody and ejabberd when their Debian packages are installed (configured from the
templates in ``bench/servers/``). Each server process is pinned to one CPU.
"""
from __future__ import annotations

import abc
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .core import Target, proc_tree

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


def wait_notify(sock: socket.socket, message: bytes, proc: subprocess.Popen[Any], timeout: float) -> None:
    """Wait for an sd_notify datagram holding ``message`` (e.g. READY=1) on ``sock``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it was ready")
        sock.settimeout(min(left, 0.5))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        if message in data.split(b"\n"):
            return
    raise RuntimeError(f"no {message.decode()} after {timeout:.0f}s")


def _pin(cpu: int | None) -> Any:
    def pre() -> None:
        os.setsid()  # its own process group: stop() ends the server and its children
        if cpu is not None and cpu >= 0:  # negative: unpinned (e.g. server.workers on every core)
            os.sched_setaffinity(0, {cpu})

    return pre


def _started(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), to tell it from a later one with its pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


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

    def _spawn(self, argv: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60.0, **popen: Any) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=cwd or self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_pin(self.cpu), env={**os.environ, **(env or {})}, **popen,
            )
        try:
            wait_port(port, self.proc, timeout)
        except RuntimeError as exc:
            tail = self.log.read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"{self.name}: {exc}\n{tail}") from None

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            tree = {pid: t for pid in proc_tree(p.pid) if (t := _started(pid)) is not None}
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
            # Helpers that left the process group (port programs) go too; the same processes only.
            for pid, t in tree.items():
                if pid != p.pid and _started(pid) == t:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.proc = None
        if self.log.exists():  # kept for post-mortems: bench/results/<server>.log
            keep = BENCH / "results" / f"{self.name}.log"
            keep.parent.mkdir(exist_ok=True)
            shutil.copyfile(self.log, keep)
        shutil.rmtree(self.dir, ignore_errors=True)


class Xmppd(Managed):
    name = "xmppd"
    extra: list[str] = []  # more --set overrides
    provision_xmppctl = False  # make accounts with xmppctl (same config) instead of in-band registration

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
            # Inbound shaping off: the load generator sends as fast as it can on purpose, and the
            # figures would measure the shaper.
            "c2s.rate_bytes=0",
            "c2s.rate_stanzas=0",
            "c2s.preauth_rate_bytes=0",
            "c2s.preauth_rate_stanzas=0",
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
        if self.provision_xmppctl:
            ctl = Path(sys.executable).with_name("xmppctl")
            ctl_argv = [str(ctl)] if ctl.exists() else [sys.executable, "-c", "from xmppd.cli import xmppctl_main; raise SystemExit(xmppctl_main())"]
            self.target.provision = ctl_argv + argv[argv.index("--config"):]
        return self.target


class Prosody(Managed):
    name = "prosody"
    mam = False  # the prosody+mam column: bench/servers/prosody-mam.cfg.lua added

    @staticmethod
    def available() -> bool:
        return shutil.which("prosody") is not None

    def start(self) -> Target:
        c2s, http = free_port(), free_port()
        cert, key = self_signed(self.dir)
        data = self.dir / "data"
        data.mkdir()
        mam = (BENCH / "servers" / "prosody-mam.cfg.lua").read_text() if self.mam else ""
        cfg = (BENCH / "servers" / "prosody.cfg.lua").read_text().format(
            data=data, c2s=c2s, http=http, domain=DOMAIN, cert=cert, key=key, log=self.log,
            mam_modules='"mam";' if self.mam else "", mam=mam,
        )
        path = self.dir / "prosody.cfg.lua"
        path.write_text(cfg)
        self._spawn(["prosody", "--config", str(path), "-F"], c2s)
        wait_port(http, self.proc)  # type: ignore[arg-type]
        assert self.proc is not None
        self.target = Target(self.name, "127.0.0.1", c2s, DOMAIN, ws_url=f"ws://127.0.0.1:{http}/xmpp-websocket", muc_domain=f"conference.{DOMAIN}", pid=self.proc.pid)
        return self.target


class Ejabberd(Managed):
    """ejabberd run the way Debian's ejabberdctl runs it, but as ``erl`` directly.

    ``ejabberdctl --config FILE`` is not enough: after parsing its options the script sources
    /etc/ejabberd/ejabberdctl.cfg (a link to /etc/default/ejabberd), which sets
    ``EJABBERD_CONFIG_PATH=/etc/ejabberd/ejabberd.yml`` again, so the node loaded Debian's own
    config and died on its MQTT listener (port 1883, Mosquitto's here). Run as root the script also
    goes through ``su`` (the node lands in another session, out of reach of our process-group
    stop), and it registers the node with whatever epmd runs (RabbitMQ's here) or starts one.
    So we build its command line ourselves: the same emulator flags and environment, our config,
    spool, log, pid and inetrc paths in the temporary directory, a unique node name and random
    cookie, and ``-dist_listen false -start_epmd false``: the node takes no distribution
    connections, so it neither contacts nor starts an epmd (nothing needs to reach it:
    ejabberdctl is not used). As root the node runs as the package's ``ejabberd`` user, like
    ejabberdctl runs it. Ready means ejabberd's own sd_notify READY=1, not just listening.
    """

    name = "ejabberd"
    mam = False  # the ejabberd+mam column: bench/servers/ejabberd-mam.yml added to the modules
    CTL = "/usr/sbin/ejabberdctl"
    notify: socket.socket | None = None

    def stop(self) -> None:
        super().stop()
        if self.notify is not None:
            self.notify.close()
            self.notify = None

    @classmethod
    def _install(cls) -> tuple[str, str] | None:
        """(erl, ERL_LIBS) as the installed ejabberdctl sets them, if ejabberd is installed."""
        ctl = shutil.which("ejabberdctl") or cls.CTL
        try:
            text = Path(ctl).read_text()
        except OSError:
            return None
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key in ("ERL", "ERL_LIBS") and key not in values:
                values[key] = value.strip("'\"")
        erl, libs = values.get("ERL") or shutil.which("erl"), values.get("ERL_LIBS", "")
        if not erl or not os.access(erl, os.X_OK) or not any(Path(d).glob("ejabberd-*/ebin/ejabberd.app") for d in libs.split(":") if d):
            return None
        return erl, libs

    @classmethod
    def available(cls) -> bool:
        return cls._install() is not None

    def start(self) -> Target:
        install = self._install()
        if install is None:
            raise RuntimeError("ejabberd: not installed (no ejabberdctl / ejabberd.app)")
        erl, libs = install
        c2s, http = free_port(), free_port()
        cert, key = self_signed(self.dir)
        pem = self.dir / "server.pem"
        pem.write_bytes(cert.read_bytes() + key.read_bytes())
        spool, logs, contrib = self.dir / "spool", self.dir / "logs", self.dir / "modules.d"
        for d in (spool, logs, contrib):
            d.mkdir()
        mam = (BENCH / "servers" / "ejabberd-mam.yml").read_text() if self.mam else ""
        cfg = (BENCH / "servers" / "ejabberd.yml").read_text().format(c2s=c2s, http=http, domain=DOMAIN, pem=pem, mam=mam)
        path = self.dir / "ejabberd.yml"
        path.write_text(cfg)
        inetrc = self.dir / "inetrc"  # Debian's /etc/ejabberd/inetrc
        inetrc.write_text('{lookup,["file","native"]}.\n{host,{127,0,0,1}, ["localhost","hostalias"]}.\n{file, resolv, "/etc/resolv.conf"}.\n')
        user: dict[str, Any] = {}
        if os.geteuid() == 0:  # as ejabberdctl: the node runs as the package's user
            import pwd

            try:
                ej = pwd.getpwnam("ejabberd")
            except KeyError:
                pass
            else:
                for root, dirs, files in os.walk(self.dir):
                    for n in (root, *(os.path.join(root, f) for f in (*dirs, *files))):
                        os.chown(n, ej.pw_uid, ej.pw_gid)
                user = {"user": ej.pw_uid, "group": ej.pw_gid, "extra_groups": []}
        self.node = f"xmppdbench{os.getpid()}_{c2s}@localhost"
        argv = [
            erl, "-sname", self.node, "-setcookie", secrets.token_hex(16),
            # ejabberdctl's ERLANG_OPTS: "+K $POLL +P $ERL_PROCESSES $ERL_OPTIONS" (ERL_OPTIONS from ejabberdctl.cfg)
            "+K", "true", "+P", "250000", "-env", "ERL_CRASH_DUMP_BYTES", "0",
            # a named node that neither listens for distribution nor registers with (or starts) an epmd
            "-dist_listen", "false", "-start_epmd", "false",
            "-mnesia", "dir", f'"{spool}"', "-ejabberd", "log_rotate_count", "0", "-s", "ejabberd", "-noinput",
        ]
        env = {
            "HOME": str(self.dir),
            "EJABBERD_CONFIG_PATH": str(path),
            "EJABBERD_LOG_PATH": str(logs / "ejabberd.log"),
            "EJABBERD_PID_PATH": str(self.dir / "ejabberd.pid"),
            "ERL_CRASH_DUMP": str(logs / "erl_crash.dump"),
            "ERL_INETRC": str(inetrc),
            "ERL_MAX_PORTS": "32000",
            "ERL_MAX_ETS_TABLES": "1400",
            "ERL_LIBS": libs,
            "CONTRIB_MODULES_PATH": str(self.dir / ".ejabberd-modules"),
            "CONTRIB_MODULES_CONF_DIR": str(contrib),
        }
        # ejabberd listens before its modules are up; it says READY=1 (sd_notify) once started
        # (and STOPPING=1 when it stops: the socket stays open until stop()).
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock = self.dir / "notify.sock"
        self.notify.bind(str(sock))
        os.chmod(sock, 0o666)
        env["NOTIFY_SOCKET"] = str(sock)
        self._spawn(argv, c2s, env=env, cwd=spool, timeout=120, **user)
        assert self.proc is not None
        try:
            wait_port(http, self.proc)
            wait_notify(self.notify, b"READY=1", self.proc, 120)
        except RuntimeError as exc:
            tail = self.log.read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"{self.name}: {exc}\n{tail}") from None
        assert self.proc is not None
        self.target = Target(self.name, "127.0.0.1", c2s, DOMAIN, ws_url=f"ws://127.0.0.1:{http}/xmpp-websocket", muc_domain=f"conference.{DOMAIN}", pid=self.proc.pid)
        return self.target


class ProsodyMam(Prosody):
    """Prosody with its XEP-0313 archive (mod_mam, internal storage): bench/servers/prosody-mam.cfg.lua."""

    name = "prosody+mam"
    mam = True


class EjabberdMam(Ejabberd):
    """ejabberd with its XEP-0313 archive (mod_mam, default db: Mnesia): bench/servers/ejabberd-mam.yml."""

    name = "ejabberd+mam"
    mam = True


SERVERS: dict[str, type[Managed]] = {
    "xmppd": Xmppd, "prosody": Prosody, "prosody+mam": ProsodyMam, "ejabberd": Ejabberd, "ejabberd+mam": EjabberdMam,
}

"""``xmppd`` and ``xmppctl`` as a user runs them (shared/INTERFACE.md), as real processes."""
from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from xmppd.config import ConfigError, build, parse_override
from xmppd.core.loader import discover

from .helpers import PASSWORD

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def ctl(tmp_path: Path, *args: str, stdin: str | None = None, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "xmppctl"), "--set", f"server.data_dir={tmp_path / 'data'}", *extra, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_user_add_list_passwd_del(tmp_path):
    r = ctl(tmp_path, "user", "add", "alice@localhost", "--password", PASSWORD)
    assert r.returncode == 0, r.stderr
    assert "created alice@localhost" in r.stdout
    r = ctl(tmp_path, "user", "add", "bob@localhost", stdin=PASSWORD + "\n")  # password from stdin
    assert r.returncode == 0, r.stderr
    r = ctl(tmp_path, "user", "add", "alice@localhost", "--password", PASSWORD)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = ctl(tmp_path, "user", "list")
    assert r.stdout.split() == ["alice@localhost", "bob@localhost"]
    r = ctl(tmp_path, "user", "passwd", "alice@localhost", "--password", "another long one")
    assert r.returncode == 0 and "password changed" in r.stdout
    r = ctl(tmp_path, "user", "del", "bob@localhost")
    assert r.returncode == 0
    r = ctl(tmp_path, "user", "list")
    assert r.stdout.split() == ["alice@localhost"]
    r = ctl(tmp_path, "user", "del", "bob@localhost")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_user_add_refuses_bad_jids_and_other_domains(tmp_path):
    r = ctl(tmp_path, "user", "add", "a@@b", "--password", PASSWORD)
    assert r.returncode == 1 and "not a valid JID" in r.stderr
    r = ctl(tmp_path, "user", "add", "alice@elsewhere.org", "--password", PASSWORD)
    assert r.returncode == 1 and "not served here" in r.stderr
    r = ctl(tmp_path, "user", "add", "alice@localhost", "--password", "short")
    assert r.returncode == 1 and "at least 8" in r.stderr


def test_user_add_refuses_reserved_and_look_alike_names(tmp_path):
    for jid, why in [
        ("root@localhost", "'root' is reserved"),
        ("adm\u0456n@localhost", "it looks like 'admin'"),
        ("s-0000abcd@localhost", "reserved for the addresses of cs"),
        ("conference.localhost@localhost", "looks like the domain"),
        ("chat.example.net@localhost", "looks like the domain chat.example.net"),
    ]:
        r = ctl(tmp_path, "user", "add", jid, "--password", PASSWORD, extra=("--set", "muc.domain=chat.example.net"))
        assert r.returncode == 1 and why in r.stderr, (jid, r.stderr)
    assert ctl(tmp_path, "user", "list").stdout.split() == []
    # The operator creates the accounts of server.admins, reserved names or not.
    r = ctl(tmp_path, "user", "add", "admin@localhost", "--password", PASSWORD, extra=("--set", 'server.admins=["admin@localhost"]'))
    assert r.returncode == 0, r.stderr


def test_db_upgrade_is_idempotent(tmp_path):
    r = ctl(tmp_path, "db", "upgrade")
    assert r.returncode == 0, r.stderr
    assert re.search(r"applied \d+ migrations", r.stdout)
    r = ctl(tmp_path, "db", "upgrade")
    assert "already up to date" in r.stdout


def test_check_names_the_bad_key_and_exits_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\ndomian = 'x'\n")
    r = subprocess.run([str(BIN / "xmppctl"), "--config", str(bad), "check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "server.domian" in r.stderr
    r = ctl(tmp_path, "check")
    assert r.returncode == 0 and "is valid" in r.stdout
    r = ctl(tmp_path, "check", extra=("--set", "tls.cert=/nonexistent.pem", "--set", "tls.key=/nonexistent.key"))
    assert r.returncode == 1 and "nonexistent" in r.stderr
    r = ctl(tmp_path, "check", extra=("--set", "storage.url=mysql+aiomysql://root@127.0.0.1:1/none"))
    assert r.returncode == 1 and "cannot be reached" in r.stderr


def test_set_parsing():
    assert parse_override("server.domain=example.com") == ("server", "domain", "example.com")
    assert parse_override('server.admins=["a@b"]') == ("server", "admins", ["a@b"])
    assert parse_override("registration.open=true") == ("registration", "open", True)
    assert parse_override("listen.c2s_tls=") == ("listen", "c2s_tls", "")
    assert parse_override("c2s.max_stanza_size=1024") == ("c2s", "max_stanza_size", 1024)
    with pytest.raises(ConfigError):
        parse_override("nodot=1")


def test_config_errors_name_the_key():
    sections = {n: c.Options for n, c in discover().items()}
    for overrides, needle in [
        (["c2s.require_tls=maybe"], "c2s.require_tls"),
        (["c2s.max_stanza_size=big"], "c2s.max_stanza_size"),
        (["nosuch.key=1"], "[nosuch]"),
        (["server.nosuch=1"], "server.nosuch"),
        (["server.admins=[\"not a jid@@\"]"], "server.admins[0]"),
        (["listen.c2s=nonsense"], "listen.c2s"),
        (["storage.url=postgresql://x"], "storage.url"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            build({}, sections, overrides)


def test_every_file_in_conf_loads_and_the_packaged_copy_is_identical():
    sections = {n: c.Options for n, c in discover().items()}
    import tomllib

    for path in (ROOT / "conf").glob("*.toml"):
        build(tomllib.loads(path.read_text()), sections, [], source=str(path))
    assert (ROOT / "conf" / "xmppd.toml").read_text() == (ROOT / "xmppd" / "default.toml").read_text()


def test_xmppd_bad_config_exits_2_with_one_line(tmp_path):
    r = subprocess.run(
        [str(BIN / "xmppd"), "--set", "c2s.require_tls=perhaps"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "c2s.require_tls" in r.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    r = subprocess.run(
        [str(BIN / "xmppd"), "--set", f"server.data_dir={tmp_path / 'd'}", "--set", f"tls.cert={garbage}", "--set", f"tls.key={garbage}",
         "--set", "listen.c2s=127.0.0.1:0", "--set", "listen.c2s_tls=127.0.0.1:0", "--set", "listen.http="],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert r.returncode == 2 and "garbage.pem" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_xmppd_serves_on_port_0_and_shuts_down_gracefully(tmp_path, sig):
    import slixmpp  # noqa: F401  (a real client logs in to the real process)

    from .helpers import slix_close

    assert ctl(tmp_path, "user", "add", "alice@localhost", "--password", PASSWORD).returncode == 0
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "xmppd"),
        "--set", f"server.data_dir={tmp_path / 'data'}",
        "--set", "listen.c2s=127.0.0.1:0",
        "--set", "listen.c2s_tls=127.0.0.1:0",
        "--set", "listen.http=",
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )
    port = None
    log = b""
    try:
        while port is None:
            line = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert line, log.decode()
            log += line
            m = re.search(rb"listening for c2s on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        assert port != 5222 and port > 0
        import slixmpp as sx

        client = sx.ClientXMPP("alice@localhost", PASSWORD)
        client.ssl_context.check_hostname = False
        import ssl

        client.ssl_context.verify_mode = ssl.CERT_NONE
        client.enable_direct_tls = False
        client.enable_plaintext = False
        started = asyncio.get_running_loop().create_future()
        errors: asyncio.Queue = asyncio.Queue()
        client.add_event_handler("session_start", lambda e: started.set_result(True))
        client.add_event_handler("stream_error", lambda e: errors.put_nowait(e))
        client.connect("127.0.0.1", port)
        await asyncio.wait_for(started, 10)
        proc.send_signal(sig)
        err = await asyncio.wait_for(errors.get(), 10)
        assert err["condition"] == "system-shutdown"
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        rest = await proc.stderr.read()
        assert b"xmppd stopped" in rest
        await slix_close(client)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_xmppctl_from_another_directory_creates_no_database_and_says_where_it_looked(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run([str(BIN / "xmppctl"), "user", "list"], capture_output=True, text=True, timeout=60, cwd=elsewhere)
    assert r.returncode == 1, r.stdout + r.stderr
    db = (elsewhere / "data" / "xmppd.db").resolve()
    assert f"there is no database at {db}" in r.stderr
    assert "default.toml" in r.stderr  # which configuration was used: the packaged copy
    assert not (elsewhere / "data").exists()
    assert "Traceback" not in r.stderr


def test_xmppctl_names_the_configuration_and_the_database(tmp_path):
    r = ctl(tmp_path, "user", "add", "alice@localhost", "--password", PASSWORD)
    db = (tmp_path / "data" / "xmppd.db").resolve()
    assert r.returncode == 0 and f"creating a new database at {db}" in r.stderr
    r = ctl(tmp_path, "user", "list")
    assert r.stdout.split() == ["alice@localhost"]
    assert f"database {db}" in r.stderr and "creating" not in r.stderr
    r = ctl(tmp_path, "check")
    assert f"database {db}" in r.stdout


def test_user_list_on_an_empty_database_says_so(tmp_path):
    ctl(tmp_path, "db", "upgrade")
    r = ctl(tmp_path, "user", "list")
    assert r.returncode == 0 and r.stdout == "" and "no accounts" in r.stderr

"""The whole server on each storage backend: accounts made by xmppctl-equivalent code,
logins, a restart that keeps them; and `xmppctl db upgrade` against MariaDB."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xmppd.app import SchemaNotCurrent

from ..helpers import PASSWORD, add_user, running_server, slix, slix_close

pytestmark = pytest.mark.interop


async def test_accounts_and_logins_survive_a_restart(tmp_path, storage_overrides):
    async with running_server(tmp_path, *storage_overrides) as srv:
        assert srv.db.dialect_name == ("mysql" if storage_overrides else "sqlite")
        jid = await add_user(srv, "alice")
        await srv.account_service.set_disabled("alice", False)
        c = await slix(srv, jid)
        await slix_close(c)
    async with running_server(tmp_path, *storage_overrides) as srv:
        c = await slix(srv, "alice@localhost", PASSWORD)
        try:
            assert c.boundjid.bare == "alice@localhost"
        finally:
            await slix_close(c)
        await srv.account_service.set_disabled("alice", True, "abuse")
        with pytest.raises(ConnectionError):
            await slix(srv, "alice@localhost", PASSWORD, timeout=5)


async def test_server_refuses_an_outdated_mysql_schema(tmp_path, mariadb_url):
    with pytest.raises(SchemaNotCurrent, match="xmppctl db upgrade"):
        async with running_server(tmp_path, f"storage.url={mariadb_url}"):
            pass


def test_xmppctl_db_upgrade_and_users_on_mariadb(tmp_path, mariadb_url):
    xmppctl = str(Path(sys.executable).parent / "xmppctl")
    base = [xmppctl, "--set", f"storage.url={mariadb_url}", "--set", f"server.data_dir={tmp_path}"]
    r = subprocess.run([*base, "user", "add", "alice@localhost", "--password", PASSWORD], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "xmppctl db upgrade" in r.stderr  # MySQL needs an explicit upgrade
    r = subprocess.run([*base, "db", "upgrade"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "applied" in r.stdout
    r = subprocess.run([*base, "user", "add", "alice@localhost", "--password", PASSWORD], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*base, "user", "list"], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["alice@localhost"]

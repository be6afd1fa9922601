"""``xmppctl webhooks list|retry|purge`` on storage: what xmppctl changes writes its events as
the server does (webhooks.url set), and dead letters are listed, queued again and deleted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from xmppd.storage.engine import Database
from xmppd.webhooks.outbox import outbox

from ..helpers import CONF
from .receiver import SECRET

BIN = Path(sys.executable).parent


def ctl(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "xmppctl"), "--config", str(CONF), "--set", f"server.data_dir={tmp.as_posix()}",
         "--set", "webhooks.url=http://127.0.0.1:9/hook", "--set", f"webhooks.secret={SECRET}", *args],
        capture_output=True, text=True, timeout=60, cwd=tmp,
    )


async def kill_all(tmp: Path) -> None:
    db = Database.from_url(f"sqlite+aiosqlite:///{tmp / 'xmppd.db'}")
    try:
        async with db.transaction() as conn:
            await conn.execute(outbox.update().values(dead_at=datetime.now(UTC), last_error="HTTP 500"))
    finally:
        await db.dispose()


def test_list_retry_purge(tmp_path: Path) -> None:
    assert ctl(tmp_path, "user", "add", "ann@localhost", "--password", "correct horse battery").returncode == 0
    r = ctl(tmp_path, "webhooks", "list", "--pending", "--json")
    assert r.returncode == 0, r.stderr
    waiting = json.loads(r.stdout)
    assert [e["event"] for e in waiting] == ["account.created"]
    assert "1 events waiting, 0 dead letters" in r.stderr
    asyncio.run(kill_all(tmp_path))
    r = ctl(tmp_path, "webhooks", "list")
    assert waiting[0]["id"] in r.stdout and "last error: HTTP 500" in r.stdout
    assert "0 events waiting, 1 dead letters" in r.stderr
    r = ctl(tmp_path, "webhooks", "retry")
    assert r.returncode != 0 and "give the event ids" in r.stderr
    r = ctl(tmp_path, "webhooks", "retry", waiting[0]["id"])
    assert (r.returncode, r.stdout.strip()) == (0, "1 dead letters queued again")
    assert "1 events waiting, 0 dead letters" in ctl(tmp_path, "webhooks", "list").stderr
    asyncio.run(kill_all(tmp_path))
    r = ctl(tmp_path, "webhooks", "purge", "--all")
    assert (r.returncode, r.stdout.strip()) == (0, "1 dead letters deleted")
    assert "0 events waiting, 0 dead letters" in ctl(tmp_path, "webhooks", "list", "--all").stderr

"""Red packets (urn:xmppd:redpacket:0): a server killed with SIGKILL in the middle of a grab
storm (red packets opened and 转账 transfers accepted) and restarted on the same data; the
money audit holds, and every share is taken once."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from xmppd.accounts import AccountService
from xmppd.storage.accounts import SqlAccountRepository
from xmppd.storage.engine import Database
from xmppd_extensions.redpacket import split
from xmppd_extensions.redpacket.feature import NS
from xmppd_extensions.redpacket.models import NewPacket
from xmppd_extensions.redpacket.sql import SqlRedPacketRepository

from ...helpers import CONF, PASSWORD, start_xmppd
from .rawclients import login
from .servers import STRANGERS, disabled_option

pytestmark = pytest.mark.interop

BIN = Path(sys.executable).parent
N = 60


def start(tmp: Path, storage: list[str]) -> tuple[subprocess.Popen, int]:
    sets = storage[1::2]  # storage is ["--set", OPTION, ...], as ctl takes it
    return start_xmppd(tmp, "c2s.max_connections_per_ip=1000", "c2s.auth_failures_per_ip=1000", disabled_option(), STRANGERS, *sets)


def ctl(tmp: Path, storage: list[str], *verb: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "xmppctl"), "--config", str(CONF), "--set", f"server.data_dir={tmp.as_posix()}",
                           "--set", disabled_option(), *storage, *verb], capture_output=True, text=True, cwd=tmp, timeout=60)


async def grab_all(port: int, packets: dict[str, tuple[str, str]], answered: asyncio.Event | None = None, concurrency: int = 0) -> list[bytes]:
    # concurrency > 0: at most that many clients at once, so that the storm lasts several
    # login+grab rounds, and a kill after the first answer is sure to land in the middle of it
    # (all at once, a fast build answers every grab before the kill arrives).
    gate = asyncio.Semaphore(concurrency) if concurrency else None

    async def one(i: int, user: str, target: tuple[str, str]) -> bytes:
        if gate is None:
            return await attempt(i, user, *target)
        async with gate:
            return await attempt(i, user, *target)

    async def attempt(i: int, user: str, pid: str, verb: str) -> bytes:
        try:
            c = await login(port, user)
        except (TimeoutError, OSError, EOFError):
            return b"lost"
        try:
            answer = await c.iq(f"o{i}", f"<iq type='set' id='o{i}' to='localhost'><{verb} xmlns='{NS}' id='{pid}'/></iq>", timeout=10)
            if answered is not None:
                answered.set()
            return answer
        except (TimeoutError, OSError, EOFError):
            return b"lost"
        finally:
            c.close()

    return await asyncio.gather(*(one(i, u, p) for i, (u, p) in enumerate(packets.items())))


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
async def test_sigkill_during_grab_storm_then_restart_audit_holds(tmp_path, request, backend):
    storage: list[str] = []
    if backend == "mariadb":
        url = request.getfixturevalue("mariadb_server").create_database()
        storage = ["--set", f"storage.url={url.render_as_string(hide_password=False)}", "--set", "storage.auto_upgrade=true"]
        db_url = url.render_as_string(hide_password=False)
    else:
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'xmppd.db'}"
    proc, port = start(tmp_path, storage)
    try:
        db = Database.from_url(db_url)
        try:
            accounts = AccountService(SqlAccountRepository(db), "localhost")
            repo = SqlRedPacketRepository(db)
            now = datetime.now(UTC)
            await repo.topup("alice@localhost", 100 * N, now)
            packets: dict[str, tuple[str, str]] = {}  # user -> (packet id, open or accept)
            rng = random.Random(5)
            for i in range(N):
                user = f"k{i:03d}"
                await accounts.create(user, PASSWORD)
                pid = f"{i + 1:08x}"
                transfer = i % 2 == 1  # every other one a 转账 transfer, accepted instead of opened
                await repo.send(NewPacket(pid, "alice@localhost", "equal" if transfer else "lucky", "hi", f"{user}@localhost",
                                          False, None, f"c{i}", "en", now, now + timedelta(hours=1),
                                          tuple(split.lucky(100, 1, rng)), transfer=transfer))
                packets[user] = (pid, "accept" if transfer else "open")
        finally:
            await db.dispose()
        answered = asyncio.Event()
        storm = asyncio.create_task(grab_all(port, packets, answered, concurrency=10))
        await asyncio.wait_for(answered.wait(), 30)  # the first grab is done, the others under way (no fixed delay:
        proc.send_signal(signal.SIGKILL)  # how long the storm lasts depends on the machine and the build)
        proc.wait(10)
        first = await storm
        assert any(x == b"lost" for x in first), "the kill came too late to interrupt the storm"
        audit = ctl(tmp_path, storage, "wallet", "audit")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert "audit OK" in audit.stdout
        # restart on the same data: everyone who did not get an answer tries again
        proc, port = start(tmp_path, storage)
        retry = {u: p for (u, p), x in zip(packets.items(), first, strict=True) if b"<opened" not in x and b"<accepted" not in x}
        second = await grab_all(port, retry)
        assert all(b"<opened" in x or b"<accepted" in x or b"already-grabbed" in x for x in second), second[:3]
        audit = ctl(tmp_path, storage, "wallet", "audit")
        assert audit.returncode == 0 and "audit OK" in audit.stdout, audit.stdout + audit.stderr
        assert f"balances {100 * N} + unclaimed 0 = {100 * N}" in audit.stdout
        print("\n" + audit.stdout)
        balance = ctl(tmp_path, storage, "wallet", "balance", "alice@localhost")
        assert balance.stdout.strip() == "alice@localhost: 0.00 CNY"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)

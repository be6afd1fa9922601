"""XEP-0357 push registration repository contract on memory, SQLite and MariaDB."""
from __future__ import annotations

from xmppd.features.push.repository import MemoryPushRepository, PushRegistration, SqlPushRepository, push_registrations


async def test_enable_update_limit_disable(backend):
    repo = backend.repo(SqlPushRepository, MemoryPushRepository)
    await backend.add_account("alice")
    a = PushRegistration("push.example", "n1", "")
    assert await repo.enable("alice", "localhost", a, 2)
    assert await repo.enable("alice", "localhost", PushRegistration("push.example", "n1", "<x/>"), 2)  # update, not a new one
    assert await repo.enable("alice", "localhost", PushRegistration("other.example", "n9", ""), 2)
    assert not await repo.enable("alice", "localhost", PushRegistration("third.example", "n", ""), 2)
    assert await repo.of("alice", "localhost") == [PushRegistration("push.example", "n1", "<x/>"), PushRegistration("other.example", "n9", "")]
    assert not await repo.enable("nobody", "localhost", a, 2)
    assert await repo.disable("alice", "localhost", "push.example", "nope") == 0
    assert await repo.disable("alice", "localhost", "push.example", None) == 1
    assert await repo.of("alice", "localhost") == [PushRegistration("other.example", "n9", "")]
    assert await repo.of("nobody", "localhost") == []


async def test_registrations_go_with_the_account(sql_backend):
    repo = SqlPushRepository(sql_backend.db)
    account_id = await sql_backend.add_account("alice")
    await repo.enable("alice", "localhost", PushRegistration("push.example", "n1", ""), 5)
    assert await sql_backend.rows_of(push_registrations, account_id) == 1
    await sql_backend.accounts.delete("alice", "localhost")
    assert await sql_backend.rows_of(push_registrations, account_id) == 0

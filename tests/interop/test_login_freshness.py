"""What a login sees is never stale: accounts changed by another process (``xmppctl`` on the same
database) take effect at the next login, and stream features follow runtime changes.

The login read runs on the event loop's thread for SQLite files (xmppd.storage.inline) and nothing
of an account is cached between logins; these tests pin that through the wire."""
from __future__ import annotations

import pytest
from lxml import etree

from xmppd.accounts import AccountService
from xmppd.storage.accounts import SqlAccountRepository
from xmppd.storage.engine import Database

from ..helpers import PASSWORD, RawClient, add_user, slix, slix_close

NEW_PASSWORD = "another correct horse"


async def _other_process(server):  # type: ignore[no-untyped-def]
    """AccountService on its own engine, as xmppctl builds it: no live server attached."""
    db = Database.from_url(server.db.url)
    repo = SqlAccountRepository(db)
    return db, repo, AccountService(repo, server.domain, None)


async def _login_fails(server, jid: str, password: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectionError):
        await slix(server, jid, password, timeout=5)


async def test_password_changed_by_another_process_counts_at_the_next_login(server):
    jid = await add_user(server, "alice")
    await slix_close(await slix(server, jid))  # a login before: nothing of it may linger
    db, repo, svc = await _other_process(server)
    try:
        await svc.set_password("alice", NEW_PASSWORD)
    finally:
        repo.close()
        await db.dispose()
    await _login_fails(server, jid, PASSWORD)
    await slix_close(await slix(server, jid, NEW_PASSWORD))


async def test_account_deleted_or_disabled_by_another_process_cannot_log_in(server):
    alice = await add_user(server, "alice")
    bob = await add_user(server, "bob")
    await slix_close(await slix(server, alice))
    await slix_close(await slix(server, bob))
    db, repo, svc = await _other_process(server)
    try:
        assert await svc.delete("alice")
        await svc.set_disabled("bob", True, "abuse")
    finally:
        repo.close()
        await db.dispose()
    await _login_fails(server, alice, PASSWORD)
    await _login_fails(server, bob, PASSWORD)


async def test_password_changed_by_an_admin_counts_at_once(server):
    jid = await add_user(server, "alice")
    await slix_close(await slix(server, jid))
    await server.account_service.set_password("alice", NEW_PASSWORD)
    await _login_fails(server, jid, PASSWORD)
    await slix_close(await slix(server, jid, NEW_PASSWORD))


async def test_stream_features_follow_makers_added_and_removed_at_runtime(server):
    probe = "urn:example:probe"

    async def features() -> bytes:
        raw = await RawClient.connect(server)
        try:
            return await raw.open_stream(server.domain)
        finally:
            raw.close()

    assert probe.encode() not in await features()
    remove = server.add_stream_feature(lambda authenticated: [etree.Element(f"{{{probe}}}thing", nsmap={None: probe})])
    assert probe.encode() in await features()
    remove()
    assert probe.encode() not in await features()

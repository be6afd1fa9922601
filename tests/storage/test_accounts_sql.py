"""Accounts on SQL only: what the database itself guarantees (cascade, constraints)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from xmppd.storage.accounts import (
    SqlAccountRepository,
    StoredCredentials,
    account_credentials,
    accounts,
)
from xmppd.storage.engine import Database

pytestmark = pytest.mark.asyncio

CREDS = [
    StoredCredentials("SCRAM-SHA-1", b"salt1", 4096, b"k1" * 10, b"s1" * 10),
    StoredCredentials("SCRAM-SHA-256", b"salt2", 4096, b"k2" * 16, b"s2" * 16),
]


async def credential_rows(db: Database) -> list[tuple[int, str]]:
    async with db.transaction(readonly=True) as conn:
        result = await conn.execute(
            sa.select(account_credentials.c.account_id, account_credentials.c.mechanism).order_by(
                account_credentials.c.account_id, account_credentials.c.mechanism
            )
        )
        return [(int(r[0]), r[1]) for r in result]


async def test_deleting_an_account_cascades_to_its_credentials(migrated_db: Database) -> None:
    repo = SqlAccountRepository(migrated_db)
    alice = await repo.create("alice", "example.com", CREDS)
    bob = await repo.create("bob", "example.com", CREDS)
    assert len(await credential_rows(migrated_db)) == 4
    assert await repo.delete("alice", "example.com")
    assert await credential_rows(migrated_db) == [
        (bob.id, "SCRAM-SHA-1"),
        (bob.id, "SCRAM-SHA-256"),
    ]
    # A plain SQL delete cascades too: it is the foreign key, not the repository.
    async with migrated_db.transaction() as conn:
        await conn.execute(accounts.delete().where(accounts.c.id == bob.id))
    assert await credential_rows(migrated_db) == []
    assert alice.id != bob.id


async def test_credentials_need_an_existing_account(migrated_db: Database) -> None:
    with pytest.raises(DBAPIError):
        async with migrated_db.transaction() as conn:
            await conn.execute(
                account_credentials.insert().values(
                    account_id=12345,
                    mechanism="SCRAM-SHA-1",
                    salt=b"s",
                    iterations=1,
                    stored_key=b"k",
                    server_key=b"k",
                )
            )


async def test_iterations_must_be_positive_in_the_database(migrated_db: Database) -> None:
    account = await SqlAccountRepository(migrated_db).create("alice", "example.com", [])
    with pytest.raises(DBAPIError):
        async with migrated_db.transaction() as conn:
            await conn.execute(
                account_credentials.insert().values(
                    account_id=account.id,
                    mechanism="SCRAM-SHA-1",
                    salt=b"s",
                    iterations=0,
                    stored_key=b"k",
                    server_key=b"k",
                )
            )
    assert await credential_rows(migrated_db) == []


async def test_migrated_db_starts_empty_for_every_test(migrated_db: Database) -> None:
    # Pins the MariaDB fixture's per-test cleaning of the shared migrated database.
    repo = SqlAccountRepository(migrated_db)
    assert await repo.count() == 0
    assert await credential_rows(migrated_db) == []
    await repo.create("leftover", "example.com", CREDS)


async def test_an_account_is_read_through_the_storage_fast_path(migrated_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """``get`` (the read behind a message to an account not seen lately, and behind the admin
    commands) goes through the storage fast path -- on SQLite the loop's thread, on MariaDB the
    fast path's own connections -- never a read transaction through SQLAlchemy's pool, and
    returns what ``create`` stored."""
    repo = SqlAccountRepository(migrated_db)
    created = await repo.create("alice", "example.com", CREDS)
    await repo.set_disabled("alice", "example.com", True, "spam")

    async def no_read_txn(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("read through Database.read_txn")

    monkeypatch.setattr(migrated_db, "read_txn", no_read_txn)
    got = await repo.get("alice", "example.com")
    assert got is not None
    assert (got.id, got.username, got.domain, got.disabled, got.disabled_reason) == (created.id, "alice", "example.com", True, "spam")
    assert got.created_at == created.created_at and got.created_at.tzinfo is not None
    assert await repo.get("bob", "example.com") is None
    assert await repo.get("alice", "example.org") is None

"""Accounts repository contract: the same tests on memory, SQLite and MariaDB."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import TYPE_CHECKING

import pytest

from xmppd.storage.accounts import (
    MAX_NAME_LENGTH,
    Account,
    AccountExists,
    AccountNotFound,
    AccountRepository,
    StoredCredentials,
)

if TYPE_CHECKING:
    from tests.storage.conftest import FakeClock

pytestmark = pytest.mark.asyncio

D = "example.com"


def scram(
    mechanism: str = "SCRAM-SHA-256", seed: int = 1, iterations: int = 4096
) -> StoredCredentials:
    return StoredCredentials(
        mechanism=mechanism,
        salt=bytes([seed]) * 16,
        iterations=iterations,
        stored_key=bytes([seed, 0xFF, 0x00, 0x27, 0x5C]) * 6,  # NUL, quote, backslash
        server_key=bytes(range(seed, seed + 32)),
    )


BOTH = [scram("SCRAM-SHA-1", 1), scram("SCRAM-SHA-256", 2)]


# -- create / get ------------------------------------------------------------------------


async def test_create_returns_the_account_and_get_reads_it_back(
    repo: AccountRepository, clock: FakeClock
) -> None:
    account = await repo.create("alice", D, BOTH)
    assert account == Account(account.id, "alice", D, clock.now, False, None)
    assert account.created_at.tzinfo is UTC
    assert await repo.get("alice", D) == account


async def test_created_at_keeps_microseconds_and_is_utc(
    repo: AccountRepository, clock: FakeClock
) -> None:
    clock.now = clock.now.astimezone(UTC).replace(microsecond=999999)
    await repo.create("alice", D, [])
    got = await repo.get("alice", D)
    assert got is not None
    assert got.created_at == clock.now
    offset = got.created_at.utcoffset()
    assert offset is not None and offset.total_seconds() == 0


async def test_get_unknown_account_is_none(repo: AccountRepository) -> None:
    assert await repo.get("nobody", D) is None
    await repo.create("alice", D, [])
    assert await repo.get("alice", "other.example") is None


async def test_create_duplicate_raises_account_exists(repo: AccountRepository) -> None:
    first = await repo.create("alice", D, BOTH)
    with pytest.raises(AccountExists) as excinfo:
        await repo.create("alice", D, [scram()])
    assert (excinfo.value.username, excinfo.value.domain) == ("alice", D)
    assert await repo.get("alice", D) == first
    assert await repo.count() == 1


async def test_same_username_on_other_domain_is_another_account(repo: AccountRepository) -> None:
    a = await repo.create("alice", D, [])
    b = await repo.create("alice", "other.example", [])
    assert a.id != b.id
    assert await repo.count() == 2


async def test_names_are_compared_exactly_not_by_collation(repo: AccountRepository) -> None:
    # Usernames arrive prepared; the store must not fold case or accents again
    # (MariaDB's default collations would make these duplicates).
    for name in ("alice", "Alice", "café", "cafe", "straße", "strasse", "\uff41lice"):
        await repo.create(name, D, [])
    assert await repo.count(D) == 7
    assert (await repo.get("Alice", D)) != (await repo.get("alice", D))


async def test_ten_concurrent_creates_of_one_user_exactly_one_succeeds(
    repo: AccountRepository,
) -> None:
    results = await asyncio.gather(
        *(repo.create("racer", D, [scram(seed=i + 1)]) for i in range(10)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Account)]
    losers = [r for r in results if isinstance(r, AccountExists)]
    assert len(winners) == 1, results
    assert len(losers) == 9, results
    assert await repo.count() == 1
    assert await repo.get("racer", D) == winners[0]
    # The winner's credentials, and only those, were stored.
    found = await repo.get_credentials("racer", D, "SCRAM-SHA-256")
    assert found is not None
    winner_seed = found[1].salt[0]
    assert found[1] == scram(seed=winner_seed)


async def test_utf8mb4_round_trip(repo: AccountRepository) -> None:
    await repo.create("ユーザー", "bücher.example", [scram()])
    await repo.set_disabled("ユーザー", "bücher.example", True, "🚫 spam 💥 (ユーザー)")
    got = await repo.get("ユーザー", "bücher.example")
    assert got is not None
    assert (got.username, got.domain) == ("ユーザー", "bücher.example")
    assert got.disabled_reason == "🚫 spam 💥 (ユーザー)"
    assert [a.username for a in await repo.list("bücher.example")] == ["ユーザー"]


async def test_create_validates_names_and_credentials(repo: AccountRepository) -> None:
    longest = "a" * MAX_NAME_LENGTH
    await repo.create(longest, D, [])
    assert await repo.get(longest, D) is not None
    for username, domain in (("", D), ("bob", ""), ("a" * (MAX_NAME_LENGTH + 1), D)):
        with pytest.raises(ValueError):
            await repo.create(username, domain, [])
    with pytest.raises(ValueError, match="SCRAM-SHA-1"):
        await repo.create("bob", D, [scram("SCRAM-SHA-1", 1), scram("SCRAM-SHA-1", 2)])
    assert await repo.get("bob", D) is None
    assert await repo.count() == 1


# -- credentials ---------------------------------------------------------------------------


async def test_get_credentials_returns_account_and_verifier(repo: AccountRepository) -> None:
    account = await repo.create("alice", D, BOTH)
    for cred in BOTH:
        assert await repo.get_credentials("alice", D, cred.mechanism) == (account, cred)


async def test_get_credentials_unknown_mechanism_or_account_is_none(
    repo: AccountRepository,
) -> None:
    await repo.create("alice", D, [scram("SCRAM-SHA-1")])
    assert await repo.get_credentials("alice", D, "SCRAM-SHA-256") is None
    assert await repo.get_credentials("alice", D, "scram-sha-1") is None
    assert await repo.get_credentials("nobody", D, "SCRAM-SHA-1") is None


async def test_get_credentials_of_a_disabled_account_says_disabled(
    repo: AccountRepository,
) -> None:
    await repo.create("alice", D, BOTH)
    await repo.set_disabled("alice", D, True, "abuse")
    found = await repo.get_credentials("alice", D, "SCRAM-SHA-1")
    assert found is not None
    assert found[0].disabled and found[0].disabled_reason == "abuse"


async def test_set_credentials_replaces_all(repo: AccountRepository) -> None:
    account = await repo.create("alice", D, BOTH)
    new = scram("SCRAM-SHA-256", seed=9, iterations=10000)
    await repo.set_credentials("alice", D, [new])
    assert await repo.get_credentials("alice", D, "SCRAM-SHA-256") == (account, new)
    assert await repo.get_credentials("alice", D, "SCRAM-SHA-1") is None
    await repo.set_credentials("alice", D, [])
    assert await repo.get_credentials("alice", D, "SCRAM-SHA-256") is None
    assert await repo.get("alice", D) == account


async def test_set_credentials_of_unknown_account_raises(repo: AccountRepository) -> None:
    with pytest.raises(AccountNotFound):
        await repo.set_credentials("nobody", D, [scram()])
    with pytest.raises(ValueError):
        await repo.set_credentials("nobody", D, [scram(), scram()])


async def test_stored_credentials_validate_and_keep_keys_out_of_repr() -> None:
    cred = StoredCredentials(
        "SCRAM-SHA-1",
        bytearray(b"salt"),  # type: ignore[arg-type]
        4096,
        b"stored",
        b"server",
    )
    assert cred.salt == b"salt" and type(cred.salt) is bytes
    assert "stored" not in repr(cred) and "salt" not in repr(cred)
    with pytest.raises(ValueError):
        StoredCredentials("SCRAM-SHA-1", b"s", 0, b"k", b"k")
    with pytest.raises(ValueError):
        StoredCredentials("", b"s", 1, b"k", b"k")
    with pytest.raises(TypeError):
        StoredCredentials("SCRAM-SHA-1", "salt", 1, b"k", b"k")  # type: ignore[arg-type]


# -- delete --------------------------------------------------------------------------------


async def test_delete_removes_account_and_credentials(repo: AccountRepository) -> None:
    await repo.create("alice", D, BOTH)
    await repo.create("bob", D, BOTH)
    assert await repo.delete("alice", D) is True
    assert await repo.get("alice", D) is None
    assert await repo.get_credentials("alice", D, "SCRAM-SHA-1") is None
    assert await repo.delete("alice", D) is False
    assert await repo.get_credentials("bob", D, "SCRAM-SHA-1") is not None


async def test_deleted_name_can_be_created_again_fresh(repo: AccountRepository) -> None:
    old = await repo.create("alice", D, BOTH)
    await repo.set_disabled("alice", D, True, "x")
    await repo.delete("alice", D)
    new = await repo.create("alice", D, [])
    assert new.id != old.id
    assert not new.disabled
    assert await repo.get_credentials("alice", D, "SCRAM-SHA-1") is None


# -- disable -------------------------------------------------------------------------------


async def test_set_disabled_stores_reason_and_enabling_clears_it(repo: AccountRepository) -> None:
    await repo.create("alice", D, [])
    await repo.set_disabled("alice", D, True, "spam")
    got = await repo.get("alice", D)
    assert got is not None and got.disabled and got.disabled_reason == "spam"
    await repo.set_disabled("alice", D, False, "ignored when enabling")
    got = await repo.get("alice", D)
    assert got is not None and not got.disabled and got.disabled_reason is None
    await repo.set_disabled("alice", D, True)
    got = await repo.get("alice", D)
    assert got is not None and got.disabled and got.disabled_reason is None


async def test_set_disabled_twice_with_same_values_is_not_not_found(
    repo: AccountRepository,
) -> None:
    # MySQL reports 0 *changed* rows here; the repository must count matched rows.
    await repo.create("alice", D, [])
    await repo.set_disabled("alice", D, True, "spam")
    await repo.set_disabled("alice", D, True, "spam")
    await repo.set_disabled("alice", D, False)
    await repo.set_disabled("alice", D, False)


async def test_set_disabled_of_unknown_account_raises(repo: AccountRepository) -> None:
    with pytest.raises(AccountNotFound) as excinfo:
        await repo.set_disabled("nobody", D, True, "x")
    assert "nobody@example.com" in str(excinfo.value)


# -- list / count ----------------------------------------------------------------------------


async def test_list_orders_by_domain_then_username_by_code_point(repo: AccountRepository) -> None:
    names = ["bob", "alice", "Zed", "émile", "ユーザー", "carol", "a", "ab"]
    for name in names:
        await repo.create(name, "b.example", [])
    await repo.create("zoe", "a.example", [])
    listed = await repo.list()
    assert [(a.domain, a.username) for a in listed] == [("a.example", "zoe")] + [
        ("b.example", n) for n in sorted(names)
    ]
    assert [a.username for a in await repo.list("b.example")] == sorted(names)
    assert await repo.list("nowhere.example") == []


async def test_list_pages_with_limit_and_offset(repo: AccountRepository) -> None:
    names = [f"user{i:02d}" for i in range(7)]
    for name in names:
        await repo.create(name, D, [])
    assert [a.username for a in await repo.list(D, limit=3)] == names[:3]
    assert [a.username for a in await repo.list(D, limit=3, offset=3)] == names[3:6]
    assert [a.username for a in await repo.list(D, limit=3, offset=6)] == names[6:]
    assert [a.username for a in await repo.list(D, offset=5)] == names[5:]
    assert await repo.list(D, limit=0) == []
    assert await repo.list(D, offset=99) == []
    with pytest.raises(ValueError):
        await repo.list(D, limit=-1)
    with pytest.raises(ValueError):
        await repo.list(D, offset=-1)


async def test_count_all_and_per_domain(repo: AccountRepository) -> None:
    assert await repo.count() == 0
    for name in ("a", "b", "c"):
        await repo.create(name, D, [])
    await repo.create("a", "other.example", [])
    assert await repo.count() == 4
    assert await repo.count(D) == 3
    assert await repo.count("other.example") == 1
    assert await repo.count("nowhere.example") == 0
    await repo.delete("a", D)
    assert await repo.count(D) == 2

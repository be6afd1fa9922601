"""Alembic migrations: core tables, idempotency, per-feature version locations."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import xmppd.storage.accounts  # noqa: F401  (registers the live core tables)
from xmppd.storage.engine import Database
from xmppd.storage.metadata import metadata
from xmppd.storage.migrations import (
    CORE_VERSIONS,
    MigrationError,
    alembic_config,
    current_heads,
    pending,
    upgrade,
    version_locations,
)

CORE_TABLES = {"accounts", "account_credentials", "server_secrets", "webhook_outbox"}
CORE_REVISIONS = ["core_0001", "core_0002", "core_0003"]
CORE_HEAD = CORE_REVISIONS[-1]

EXTENSION_REVISION = '''\
"""Test extension: gadgets."""
import sqlalchemy as sa
from alembic import op

revision = "gadgets_0001"
down_revision = None
branch_labels = ("gadgets",)
depends_on = "core_0001"


def upgrade():
    op.create_table(
        "gadgets",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(
            "account_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(191), nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade():
    op.drop_table("gadgets")
'''


@pytest.fixture
def gadgets_versions(tmp_path: Path) -> Path:
    """A version location outside the xmppd package, on its own branch."""
    versions = tmp_path / "elsewhere" / "gadgets" / "migrations"
    versions.mkdir(parents=True)
    (versions / "gadgets_0001_gadgets.py").write_text(textwrap.dedent(EXTENSION_REVISION))
    return versions


async def table_names(db: Database) -> set[str]:
    async with db.transaction(readonly=True) as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def test_upgrade_creates_the_core_tables(db: Database) -> None:
    assert await table_names(db) == set()
    assert await current_heads(db) == set()
    assert await upgrade(db) == CORE_REVISIONS
    assert await table_names(db) == CORE_TABLES | {"alembic_version"}
    assert await current_heads(db) == {CORE_HEAD}


async def test_second_upgrade_is_a_no_op(db: Database) -> None:
    await upgrade(db)
    assert await upgrade(db) == []
    assert await upgrade(db) == []
    assert await current_heads(db) == {CORE_HEAD}


async def test_pending_lists_what_upgrade_would_apply(db: Database) -> None:
    assert await pending(db) == CORE_REVISIONS
    await upgrade(db)
    assert await pending(db) == []


async def test_concurrent_upgrades_apply_each_revision_once(db: Database) -> None:
    other = Database.from_url(db.url)
    try:
        results = await asyncio.gather(upgrade(db), upgrade(other), upgrade(db))
    finally:
        await other.dispose()
    assert sorted(rev for applied in results for rev in applied) == CORE_REVISIONS
    assert await current_heads(db) == {CORE_HEAD}


async def test_live_table_definitions_match_the_migrations(db: Database, migration_locations: list[str]) -> None:
    # Every installed feature: discover() imported them all, so their tables are on `metadata`.
    await upgrade(db, migration_locations)

    def diff(conn: sa.Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return [
            d
            for d in compare_metadata(context, metadata)
            if not (isinstance(d, tuple) and d and d[0] == "remove_table")
        ]

    async with db.transaction(readonly=True) as conn:
        assert await conn.run_sync(diff) == []


async def test_constraint_names_are_deterministic(db: Database) -> None:
    await upgrade(db)

    def names(conn: sa.Connection) -> tuple[set[str | None], set[str | None]]:
        inspector = sa.inspect(conn)
        uniques = {u["name"] for u in inspector.get_unique_constraints("accounts")}
        fks = {f["name"] for f in inspector.get_foreign_keys("account_credentials")}
        return uniques, fks

    async with db.transaction(readonly=True) as conn:
        uniques, fks = await conn.run_sync(names)
    assert uniques == {"uq_accounts_domain_username"}
    assert fks == {"fk_account_credentials_account_id_accounts"}


async def test_extra_version_location_outside_the_package_adds_its_branch(
    db: Database, gadgets_versions: Path
) -> None:
    assert not gadgets_versions.is_relative_to(CORE_VERSIONS.parent.parent.parent)
    applied = await upgrade(db, [str(gadgets_versions)])
    assert sorted(applied) == sorted([*CORE_REVISIONS, "gadgets_0001"])
    assert applied.index("core_0001") < applied.index("gadgets_0001")  # depends_on: core first
    assert "gadgets" in await table_names(db)
    assert await pending(db, [str(gadgets_versions)]) == []
    assert await upgrade(db, [str(gadgets_versions)]) == []

    # The feature's table references accounts (same key type on both backends).
    async with db.transaction() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO accounts (username, domain, created_at, disabled) "
            "VALUES ('a', 'example.com', '2024-01-01 00:00:00', 0)"
        )
        await conn.exec_driver_sql(
            "INSERT INTO gadgets (account_id, name) "
            "SELECT id, 'g' FROM accounts WHERE username = 'a'"
        )
        await conn.exec_driver_sql("DELETE FROM accounts")
        assert (await conn.exec_driver_sql("SELECT count(*) FROM gadgets")).scalar() == 0


async def test_feature_added_later_applies_only_its_revisions(
    db: Database, gadgets_versions: Path
) -> None:
    assert await upgrade(db) == CORE_REVISIONS
    assert await pending(db, [str(gadgets_versions)]) == ["gadgets_0001"]
    assert await upgrade(db, [str(gadgets_versions)]) == ["gadgets_0001"]


def _revision(path: Path, rev: str, down: str | None, label: str | None, dep: str | None) -> None:
    table = rev.replace("_", "")
    path.joinpath(f"{rev}.py").write_text(
        textwrap.dedent(
            f"""\
            import sqlalchemy as sa
            from alembic import op

            revision = {rev!r}
            down_revision = {down!r}
            branch_labels = {(label,) if label else None!r}
            depends_on = {dep!r}


            def upgrade():
                op.create_table({table!r}, sa.Column("id", sa.Integer, primary_key=True))


            def downgrade():
                op.drop_table({table!r})
            """
        )
    )


async def test_a_branch_keeps_evolving_after_another_depends_on_it(
    db: Database, tmp_path: Path
) -> None:
    # Like core getting core_0002 after a feature's first revision depends on core_0001.
    base, feature = tmp_path / "base", tmp_path / "feature"
    base.mkdir()
    feature.mkdir()
    _revision(base, "base_0001", None, "base", None)
    _revision(feature, "feature_0001", None, "feature", "base_0001")
    locations = [str(base), str(feature)]
    applied = await upgrade(db, locations)
    assert sorted(applied) == sorted(["base_0001", *CORE_REVISIONS, "feature_0001"])
    assert applied.index("base_0001") < applied.index("feature_0001")  # depends_on

    _revision(base, "base_0002", "base_0001", None, None)
    _revision(feature, "feature_0002", "feature_0001", None, "base_0002")
    assert await pending(db, locations) == ["base_0002", "feature_0002"]
    assert await upgrade(db, locations) == ["base_0002", "feature_0002"]
    assert {"base0002", "feature0002"} <= await table_names(db)
    assert await upgrade(db, locations) == []


async def test_missing_version_location_of_an_applied_revision_is_reported(
    db: Database, gadgets_versions: Path
) -> None:
    await upgrade(db, [str(gadgets_versions)])
    with pytest.raises(MigrationError, match="gadgets_0001"):
        await upgrade(db)
    with pytest.raises(MigrationError, match="gadgets_0001"):
        await pending(db)


def test_version_locations_validates_and_deduplicates(gadgets_versions: Path) -> None:
    locations = version_locations([gadgets_versions, str(gadgets_versions)])
    assert locations == [str(CORE_VERSIONS), str(gadgets_versions.resolve())]
    with pytest.raises(MigrationError, match="not a directory"):
        version_locations([gadgets_versions / "nope"])


async def test_alembic_config_is_built_in_code(gadgets_versions: Path) -> None:
    cfg = alembic_config("sqlite:////tmp/x%y.db", [gadgets_versions])
    assert cfg.config_file_name is None
    assert cfg.get_main_option("sqlalchemy.url") == "sqlite:////tmp/x%y.db"
    script = ScriptDirectory.from_config(cfg)
    assert set(script.get_heads()) == {CORE_HEAD, "gadgets_0001"}
    assert script.get_revision("core@head").revision == CORE_HEAD
    assert script.get_revision("gadgets@head").revision == "gadgets_0001"

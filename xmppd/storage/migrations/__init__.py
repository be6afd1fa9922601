"""Schema migrations: Alembic, configured in code, one version location per feature.

No ``alembic.ini`` is needed: :func:`alembic_config` builds the ``Config`` from the
directory of this package (``env.py``, ``script.py.mako``) plus a list of version
locations. The core revisions live in ``versions/`` next to this file, on the branch
``core``. A feature -- inside xmppd or not -- keeps its own revisions in its own
directory, on its own branch::

    # myfeature/migrations/myfeature_0001_items.py
    revision = "myfeature_0001"          # <= 32 characters (alembic_version column)
    down_revision = None                 # the root of the feature's branch
    branch_labels = ("myfeature",)
    depends_on = "core_0001"             # the core revision that created what it needs

and passes that directory to :func:`upgrade`. ``upgrade heads`` then applies every
branch in dependency order. Revisions are written by hand with explicit table
definitions (SQLAlchemy Core types, explicit constraint names through ``op.f()``);
they never import live table definitions, so that they stay frozen in time.

To generate revision skeletons during development (``script.py.mako``)::

    from alembic import command
    cfg = alembic_config(sync_url, ["path/to/myfeature/migrations"])
    command.revision(cfg, "items", head="base", branch_label="myfeature",  # first one
                     depends_on="core_0001", rev_id="myfeature_0001",
                     version_path="path/to/myfeature/migrations")
    command.revision(cfg, "more items", head="myfeature@head", rev_id="myfeature_0002")

Operators never need any of this: the server calls :func:`upgrade` at start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from xmppd.storage.engine import Database

__all__ = [
    "CORE_BRANCH",
    "CORE_VERSIONS",
    "MIGRATIONS_DIR",
    "MigrationError",
    "alembic_config",
    "current_heads",
    "pending",
    "upgrade",
    "version_locations",
]

log = logging.getLogger(__name__)

#: Directory holding env.py and script.py.mako.
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent
#: The core revisions (branch label :data:`CORE_BRANCH`).
CORE_VERSIONS: Final = MIGRATIONS_DIR / "versions"
CORE_BRANCH: Final = "core"

# The MySQL advisory lock serialising concurrent upgrades of one database (several
# processes starting at once); named after the database, at most 64 characters.
# SQLite serialises them with BEGIN IMMEDIATE.
_MYSQL_LOCK_NAME: Final = "LEFT(CONCAT('xmppd.migrations.', DATABASE()), 64)"
_MYSQL_LOCK_TIMEOUT_S: Final = 120


class MigrationError(RuntimeError):
    """The schema cannot be brought up to date (e.g. an unknown revision is recorded)."""


PathLike = str | os.PathLike[str]


def version_locations(extra: Iterable[PathLike] = ()) -> list[str]:
    """Absolute version directories: the core one first, then *extra*, without duplicates."""
    result: list[str] = []
    for location in (CORE_VERSIONS, *extra):
        path = Path(location).expanduser().resolve()
        if not path.is_dir():
            raise MigrationError(f"migration version location {str(path)!r} is not a directory")
        if str(path) not in result:
            result.append(str(path))
    return result


def alembic_config(url: str | None = None, extra_locations: Iterable[PathLike] = ()) -> Config:
    """An Alembic ``Config`` built in code (no ini file).

    *url* (a synchronous-driver URL, see :func:`xmppd.storage.engine.sync_url`) is only
    needed for Alembic commands run without a connection (CLI-style or ``--sql``
    offline mode); :func:`upgrade` hands env.py a live connection instead.
    """
    cfg = Config()
    # ConfigParser interpolates "%": escape it in paths and URLs.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "newline")
    cfg.set_main_option(
        "version_locations", "\n".join(version_locations(extra_locations)).replace("%", "%%")
    )
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _script(extra_locations: Iterable[PathLike]) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(None, extra_locations))


async def current_heads(db: Database) -> set[str]:
    """The revisions recorded in ``alembic_version`` (empty for a fresh database)."""

    def _heads(conn: Connection) -> set[str]:
        return set(MigrationContext.configure(conn).get_current_heads())

    async with db.transaction(readonly=True) as conn:
        return await conn.run_sync(_heads)


async def pending(db: Database, extra_locations: Sequence[PathLike] = ()) -> list[str]:
    """Revisions that :func:`upgrade` would apply, oldest first."""
    script = _script(extra_locations)
    heads = await current_heads(db)
    _check_known(script, heads)
    applied: set[str] = set()
    if heads:
        applied = {rev.revision for rev in script.iterate_revisions(tuple(heads), "base")}
    ordered = [rev.revision for rev in script.walk_revisions("base", "heads")]
    ordered.reverse()
    return [rev for rev in ordered if rev not in applied]


def _unknown(script: ScriptDirectory, heads: Iterable[str]) -> list[str]:
    unknown = []
    for head in heads:
        try:
            script.revision_map.get_revision(head)
        except Exception:
            unknown.append(head)
    return sorted(unknown)


def _check_known(script: ScriptDirectory, heads: Iterable[str]) -> None:
    unknown = _unknown(script, heads)
    if unknown:
        raise MigrationError(
            f"the database is at revision(s) {', '.join(unknown)}, which no version location "
            f"provides ({', '.join(script.version_locations)}); was a feature or extension "
            "that owns tables removed? Reinstall it (it can stay disabled)."
        )


async def upgrade(db: Database, extra_locations: Sequence[PathLike] = ()) -> list[str]:
    """Bring the schema to all heads (``alembic upgrade heads``); return applied revisions.

    Idempotent: on an up-to-date database it applies nothing and returns ``[]``.
    Concurrent callers (several processes) are serialised. On SQLite the whole upgrade
    is one transaction, run with ``foreign_keys`` off (as SQLite's table-rebuild
    procedure requires; ``PRAGMA foreign_key_check`` must pass before commit). On MySQL
    every DDL statement commits on its own: a revision that fails half-way leaves a
    half-applied schema.
    """
    cfg = alembic_config(None, extra_locations)
    script = ScriptDirectory.from_config(cfg)
    applied: list[str] = []

    def on_version_apply(*, step: Any, **_kw: Any) -> None:
        if step.is_upgrade and not step.is_stamp:
            applied.extend(step.up_revision_ids)

    def run(conn: Connection) -> None:
        _check_known(script, MigrationContext.configure(conn).get_current_heads())
        cfg.attributes["connection"] = conn
        cfg.attributes["on_version_apply"] = on_version_apply
        command.upgrade(cfg, "heads")
        if conn.dialect.name == "sqlite":
            problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise MigrationError(f"foreign key violations after migrating: {problems[:10]}")

    async with db.connect() as conn:
        if db.is_sqlite:
            await conn.run_sync(_set_sqlite_foreign_keys, False)
        else:
            got = (
                await conn.exec_driver_sql(
                    f"SELECT GET_LOCK({_MYSQL_LOCK_NAME}, %s)", (_MYSQL_LOCK_TIMEOUT_S,)
                )
            ).scalar()
            await conn.commit()
            if got != 1:
                raise MigrationError("timed out waiting for another process's migration")
        try:
            async with conn.begin():
                await conn.run_sync(run)
        finally:
            try:
                if db.is_sqlite:
                    await conn.run_sync(_set_sqlite_foreign_keys, True)
                else:
                    await conn.exec_driver_sql(f"SELECT RELEASE_LOCK({_MYSQL_LOCK_NAME})")
                    await conn.commit()
            except BaseException:
                # Never hand a connection with foreign keys off (or holding the lock)
                # back to the pool.
                await conn.invalidate()
                raise
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied


def _set_sqlite_foreign_keys(conn: Connection, on: bool) -> None:
    # PRAGMA foreign_keys is a no-op inside a transaction: run it on the raw driver
    # connection, which is in autocommit mode between transactions.
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")
    finally:
        cursor.close()

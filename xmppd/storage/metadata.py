"""Shared SQLAlchemy metadata and the column conventions of every xmppd table.

One :data:`metadata` object holds the *live* table definitions of the core and of
every feature (each feature defines its tables in its own ``repository.py`` on this
object). Its naming convention makes every constraint and index name deterministic
and identical on SQLite and MariaDB/MySQL, so that a later migration can drop or
alter a constraint by name on both backends::

    ix  ix_<table>_<col>[_<col>...]            index
    uq  uq_<table>_<col>[_<col>...]            unique constraint
    ck  ck_<table>_<name given in code>        check constraint (name is required)
    fk  fk_<table>_<col>[_<col>...]_<referred table>
    pk  pk_<table>                             (MySQL always calls it PRIMARY)

Column conventions (use the helpers below, and spell the same types out literally in
migrations, which must never import live definitions):

* **Indexed or unique text is ``String(191)``** (:data:`INDEXED_TEXT_LENGTH`,
  :func:`indexed_string`). 191 characters x 4 bytes (utf8mb4) = 764 bytes, which fits
  InnoDB's 767-byte index-prefix limit of the COMPACT/REDUNDANT row formats; with
  DYNAMIC rows the limit per *index* is 3072 bytes, so a unique key over up to four
  such columns is still fine. Text that is never indexed may be ``Text``.
* **Identifiers are compared byte-for-byte.** MySQL tables are created with
  :data:`MYSQL_TABLE_KWARGS` (InnoDB, utf8mb4, collation ``utf8mb4_bin``) so that
  uniqueness and equality match SQLite and Python: the server default collations
  (``utf8mb4_general_ci``, ``uca1400_ai_ci``) would treat ``café`` and ``cafe``, or
  ``A`` and ``a``, as the same key. ``utf8mb4_bin`` is still PAD SPACE (trailing
  spaces are ignored when comparing); prepared JID parts never end in a space.
* **Surrogate keys are** :func:`id_type` -- ``BIGINT`` on MySQL, ``INTEGER`` on SQLite
  (only ``INTEGER PRIMARY KEY`` is SQLite's auto-incrementing rowid). A foreign key
  must have exactly the type of the column it references, so a column pointing at
  ``accounts.id`` uses :func:`id_type` too (without autoincrement). A table with such a
  key also passes ``sqlite_autoincrement=True``: plain SQLite hands the id of a deleted
  last row to the next insert, and a recycled account id would inherit whatever other
  tables still say about the old one; InnoDB never reuses ids.
* **Timestamps are** :class:`UtcDateTime`: timezone-aware UTC ``datetime`` in Python,
  a naive UTC ``DATETIME(6)`` (microseconds) on MySQL and an ISO string on SQLite.
  Naive datetimes are refused on the way in.
* **Money is integer minor units** (``BigInteger``); non-negativity is a check
  constraint.
* Booleans are ``Boolean`` with ``server_default=sa.false()``/``sa.true()``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "INDEXED_TEXT_LENGTH",
    "MYSQL_TABLE_KWARGS",
    "NAMING_CONVENTION",
    "UtcDateTime",
    "id_type",
    "indexed_string",
    "metadata",
]

NAMING_CONVENTION: Final[dict[str, str]] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The one MetaData of all live table definitions (core and features).
metadata: Final = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: Maximum length of any text column that is part of an index or unique constraint.
INDEXED_TEXT_LENGTH: Final = 191

#: Table options for every table (ignored by SQLite). Both prefixes: SQLAlchemy reads
#: ``mysql_*`` for ``mysql+`` URLs and ``mariadb_*`` for ``mariadb+`` URLs.
MYSQL_TABLE_KWARGS: Final[dict[str, Any]] = {
    f"{prefix}_{key}": value
    for prefix in ("mysql", "mariadb")
    for key, value in (("engine", "InnoDB"), ("charset", "utf8mb4"), ("collate", "utf8mb4_bin"))
}


def indexed_string(length: int = INDEXED_TEXT_LENGTH) -> sa.String:
    """A ``String`` short enough to be indexed on MySQL with utf8mb4."""
    if not 0 < length <= INDEXED_TEXT_LENGTH:
        raise ValueError(f"indexed text is at most {INDEXED_TEXT_LENGTH} characters")
    return sa.String(length)


def id_type() -> TypeEngine[int]:
    """Surrogate key / foreign key type: BIGINT, but INTEGER on SQLite (rowid)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes stored as naive UTC ``DATETIME``.

    Neither SQLite nor MySQL's ``DATETIME`` keep a time zone; converting to UTC on the
    way in and attaching UTC on the way out gives the same values on every backend.
    On MySQL the column is ``DATETIME(6)`` so microseconds survive the round trip.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)

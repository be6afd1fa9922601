"""Column types and table options shared by every migration, core and features alike.

Migrations must stay frozen in time, so they never import the live table definitions; what
they share is only this small set of DDL building blocks. Treat it as append-only: never change
what an existing name produces (a migration already applied would then differ from a fresh
one); add a new name instead.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

#: InnoDB, utf8mb4 and a binary collation (prepared JIDs compare byte for byte) on MySQL/MariaDB.
TABLE_KWARGS: dict[str, Any] = {
    f"{prefix}_{key}": value
    for prefix in ("mysql", "mariadb")
    for key, value in (("engine", "InnoDB"), ("charset", "utf8mb4"), ("collate", "utf8mb4_bin"))
}


def id_type() -> sa.types.TypeEngine[int]:
    """BIGINT row ids (INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utc_datetime() -> sa.types.TypeEngine[Any]:
    """A timestamp with microseconds on MySQL/MariaDB (their DATETIME drops them otherwise)."""
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

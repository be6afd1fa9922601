"""Storage: the async database engine, shared metadata, migrations and core repositories.

- :mod:`xmppd.storage.engine` -- :class:`~xmppd.storage.engine.Database`, one
  ``AsyncEngine`` per server (SQLite via aiosqlite by default, MariaDB/MySQL via
  aiomysql).
- :mod:`xmppd.storage.metadata` -- the one ``MetaData`` (deterministic constraint
  names) and the column-type conventions every feature's tables follow.
- :mod:`xmppd.storage.migrations` -- Alembic, configured in code, one version
  location per feature package.
- :mod:`xmppd.storage.accounts` -- the accounts repository (Protocol, SQL, memory).

Importing this package has no side effects.
"""

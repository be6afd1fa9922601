"""Alembic environment for xmppd (loaded by Alembic, never imported by xmppd itself).

The configuration is built in code by :func:`xmppd.storage.migrations.alembic_config`.
:func:`xmppd.storage.migrations.upgrade` passes a live connection in
``config.attributes["connection"]`` (and an ``on_version_apply`` callback); without one,
the synchronous URL in ``sqlalchemy.url`` is used, or SQL is printed in offline mode.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context

from xmppd.storage.metadata import metadata as xmppd_metadata

config = context.config


def _target_metadata() -> sa.MetaData:
    # Only for autogenerate during development; upgrades never look at it, except for
    # the naming convention that ops without explicit constraint names inherit.
    target = config.attributes.get("target_metadata")
    if target is not None:
        return target  # type: ignore[no-any-return]
    import xmppd.storage.accounts  # noqa: F401  (registers the core tables)

    return xmppd_metadata


def _options(dialect_name: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "target_metadata": _target_metadata(),
        # SQLite cannot ALTER most things: autogenerate batch (copy-and-move) ops.
        "render_as_batch": dialect_name == "sqlite",
        "compare_type": True,
    }
    callback = config.attributes.get("on_version_apply")
    if callback is not None:
        options["on_version_apply"] = callback
    return options


def run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("offline migrations need sqlalchemy.url (see alembic_config)")
    context.configure(
        url=url, literal_binds=True, **_options(sa.engine.make_url(url).get_backend_name())
    )
    with context.begin_transaction():
        context.run_migrations()


def run_with(connection: sa.Connection) -> None:
    context.configure(connection=connection, **_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url (see alembic_config)")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            run_with(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

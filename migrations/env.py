"""Alembic environment. Run through `ecg_app.store.migrate` (or `ecg-app db ...`), which passes an open
connection in `config.attributes["connection"]`; a plain `sqlalchemy.url` option works too."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from ecg_app.store.db import create_engine_for
from ecg_app.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_online(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    engine = create_engine_for(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as connection:
            _run_online(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

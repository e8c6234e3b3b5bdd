"""Alembic helpers. The Config is built in code, so migrations run from any working directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from ecg_app.config import MIGRATIONS_DIR
from ecg_app.store.db import create_engine_for

# PostgreSQL advisory lock held while migrating, so app processes starting together against one database
# take turns: the first upgrades, the others then find the schema at head. (Any fixed 64-bit number.)
MIGRATION_LOCK_KEY = 0x6563_6761_7070  # "ecgapp"


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic Config pointing at the project's `migrations/` folder (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@contextmanager
def _connection(database: str | Engine) -> Iterator[Connection]:
    """A connection from the given engine, or from a temporary engine (with our pragmas) for a URL."""
    engine = database if isinstance(database, Engine) else create_engine_for(database)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        if engine is not database:
            engine.dispose()


def _run(database: str | Engine, action: Callable[[Config], None]) -> None:
    with _connection(database) as connection:
        if connection.dialect.name == "postgresql":  # released when this transaction ends
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config = alembic_config()
        config.attributes["connection"] = connection  # env.py uses it instead of opening its own
        action(config)


def upgrade_to_head(database: str | Engine) -> None:
    """Bring the schema up to date; called by the app and the CLI on start (a no-op when current)."""
    upgrade(database, "head")


def upgrade(database: str | Engine, revision: str = "head") -> None:
    _run(database, lambda config: command.upgrade(config, revision))


def downgrade(database: str | Engine, revision: str = "-1") -> None:
    _run(database, lambda config: command.downgrade(config, revision))


def current_revision(database: str | Engine) -> str | None:
    """The revision the database is at, or None for an empty (never migrated) database."""
    with _connection(database) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()

"""Versioned schema migrations (Alembic), applied once per database, whoever starts first.

``hashmatch serve --workers N`` migrates in the parent before it starts any worker, and
``hashmatch migrate`` is the one-off step for deployments; but two instances starting together
on one database must not race either, so a migration runs inside the store's write transaction:
SQLite's write lock (``BEGIN IMMEDIATE``) or the PostgreSQL advisory lock every writer takes.
The second instance waits, then finds the schema at its head and does nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from hashmatch.store.database import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    config = alembic_config()
    with database.write_transaction() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

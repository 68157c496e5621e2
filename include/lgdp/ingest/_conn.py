"""The raw psycopg connection behind a SQLAlchemy session or connection (same transaction)."""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

ConnLike = Session | Connection | psycopg.Connection


def raw_connection(conn: Any) -> psycopg.Connection:
    """The psycopg 3 connection of ``conn``, sharing the caller's transaction.

    A ``Session`` is flushed first, so rows it has pending (a version just recorded) are visible
    to statements sent on the raw connection.
    """
    if isinstance(conn, psycopg.Connection):
        return conn
    if isinstance(conn, Session):
        conn.flush()
        conn = conn.connection()
    if isinstance(conn, Connection):
        raw = conn.connection.driver_connection
        if isinstance(raw, psycopg.Connection):
            return raw
        raise TypeError("the ledger must be reached through psycopg 3 (postgresql+psycopg:// URLs)")
    raise TypeError(f"expected a SQLAlchemy Session or Connection or a psycopg Connection, not {type(conn).__name__}")

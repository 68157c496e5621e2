"""Reference tables shipped with the specs, in PostgreSQL for query rules to read.

Each ``return_specs/shared/reference/<name>.yaml`` becomes ``lgdp_reference."<name>"``, typed as
its columns say (the same types as staging). The table's comment holds a hash of its declaration
and rows: when the file changes, the table is rebuilt in the same transaction, under an advisory
lock, so a rule never reads a half-written table and two workers never rebuild it at once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from psycopg import sql

from lgdp.ingest._conn import raw_connection
from lgdp.ingest.staging import PG_TYPES
from lgdp.specs.model import ReferenceTable
from lgdp.validate.checks import REFERENCE_SCHEMA

# pg_advisory_xact_lock(classid, objid): reference table DDL ("LGDR").
REF_LOCK_CLASS = 0x4C474452


def table_hash(table: ReferenceTable) -> str:
    return hashlib.sha256(json.dumps(table.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def ensure_reference_tables(conn: Any, reference: Any) -> list[str]:
    """Create or refresh every reference table; returns the names (re)built. Runs in the caller's transaction."""
    raw = raw_connection(conn)
    built: list[str] = []
    tables: dict[str, ReferenceTable] = dict(getattr(reference, "tables", {}) or {})
    if not tables:
        return built
    raw.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(REFERENCE_SCHEMA)))
    for name, table in sorted(tables.items()):
        digest = table_hash(table)
        ident = sql.Identifier(REFERENCE_SCHEMA, name)
        current = raw.execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class')", (ident.as_string(raw),)
        ).fetchone()[0]
        if current == digest:
            continue
        raw.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (REF_LOCK_CLASS, name))
        current = raw.execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class')", (ident.as_string(raw),)
        ).fetchone()[0]
        if current == digest:
            continue
        raw.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        cols = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(PG_TYPES[c.type])) for c in table.columns
        )
        raw.execute(sql.SQL("CREATE TABLE {} ({})").format(ident, cols))
        if table.rows:
            with raw.cursor() as cur, cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN").format(
                    ident, sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)
                )
            ) as copy:
                for row in table.rows:
                    copy.write_row([None if v is None else str(v) for v in row])
        raw.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(ident, sql.Literal(digest)))
        built.append(name)
    return built


__all__ = ["ensure_reference_tables", "table_hash"]

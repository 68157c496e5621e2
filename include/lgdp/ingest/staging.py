"""Per-return staging tables in ``lgdp_staging``, derived from the spec (the one source of truth).

``lgdp_staging."<return_id>"`` holds every loaded row of every version of every council's
submission for that return::

    _submission_version_id bigint   -- lgdp.submission_versions.id
    _council_code          text     -- the council whose submission it is (from the ledger)
    _period                text     -- the period label, e.g. 2025-26
    _row_number            integer  -- the row's number in the council's file (header = row 1)
    <one column per spec item, in spec order, named as the item>
    PRIMARY KEY (_submission_version_id, _row_number)
    BRIN index on (_council_code, _period)
    PARTITION BY LIST (_submission_version_id)

Each version's rows are one partition, ``lgdp_staging_versions."<return_id>_v<version_id>"``,
made by ``lgdp.ingest.load``: a plain table filled by one COPY and then attached, so the primary
key of a version is built once, sorted, instead of by a million index inserts (about 0.3 s
instead of about 1 s per million rows, ``docs/benchmarks.md``). The uniqueness of
(version, row number) is the same constraint as before; a duplicate fails the load. Readers
use the parent table only (the partitions are in their own schema so that ``lgdp_staging`` lists
one table per return), and a query on one version reads one partition. Dropping the parent
drops its partitions. Tables created before partitioning (plain tables) keep working: loads
COPY into them as they always did.

The council/period index is BRIN (block ranges), not a B-tree: each version's rows are loaded by
one COPY and so lie in contiguous blocks, which BRIN finds at almost no cost per loaded row; a
B-tree added about 1.3 s per million rows to every load (``docs/benchmarks.md``).

The metadata columns start with an underscore because item names never do (they are slugs
starting with a letter): every spec has an item ``council_code`` (what the file says, which
validation compares with the submitting council), and an item could be called ``period``.
Rules are SQL over item names, so items keep their own names.

Item types map to PostgreSQL as string/code → text, integer → bigint, decimal → numeric,
date → date, boolean → boolean. A newer spec version that adds items adds columns
(``ADD COLUMN IF NOT EXISTS``); columns are never dropped, so older versions' rows stay whole.
A column whose type no longer matches the spec is refused (``StagingSchemaError``): changing an
item's type needs a deliberate migration of the data already loaded.

Schema changes are rare, so the catalogue is read first without any lock and DDL runs only when
something is missing, under a transaction-scoped advisory lock (two loads creating the same
table at once would otherwise collide in the catalogue).
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from lgdp.ingest._conn import raw_connection
from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import ItemType

SCHEMA = "lgdp_staging"
PARTITION_SCHEMA = "lgdp_staging_versions"
META_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_submission_version_id", "bigint"),
    ("_council_code", "text"),
    ("_period", "text"),
    ("_row_number", "integer"),
)
PG_TYPES: dict[ItemType, str] = {
    ItemType.string: "text",
    ItemType.code: "text",
    ItemType.integer: "bigint",
    ItemType.decimal: "numeric",
    ItemType.date: "date",
    ItemType.boolean: "boolean",
}
# pg_advisory_xact_lock(classid, objid): this class id marks staging DDL ("LGDS" in ASCII).
DDL_LOCK_CLASS = 0x4C474453


class StagingSchemaError(RuntimeError):
    """The staging table cannot hold the spec's items as they are now."""


def staging_table(loaded: LoadedSpec) -> sql.Composed:
    """The quoted name ``lgdp_staging."<return_id>"``."""
    return sql.Identifier(SCHEMA, loaded.staging_name)


def staging_columns(loaded: LoadedSpec) -> list[tuple[str, str]]:
    """(column, PostgreSQL type) of the staging table, in order: metadata then the spec's items."""
    names = {m for m, _ in META_COLUMNS}
    out = list(META_COLUMNS)
    for item in loaded.items:
        if item.name in names:
            raise StagingSchemaError(f"item {item.name!r} clashes with a staging column of the same name")
        out.append((item.name, PG_TYPES[item.type]))
    return out


def partition_table(loaded: LoadedSpec, version_id: int) -> sql.Composed:
    """The quoted name of a version's partition, ``lgdp_staging_versions."<return_id>_v<version_id>"``."""
    return sql.Identifier(PARTITION_SCHEMA, f"{loaded.staging_name}_v{int(version_id)}")


def is_partitioned(conn: Any, loaded: LoadedSpec) -> bool:
    """Whether the return's staging table is partitioned by version (False for a plain or missing one)."""
    raw = raw_connection(conn)
    row = raw.execute(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (staging_table(loaded).as_string(raw),)
    ).fetchone()
    return row is not None and row[0] == "p"


def create_table_sql(loaded: LoadedSpec) -> list[sql.Composed]:
    """The DDL creating the staging table, partitioned by version, and its index (each ``IF NOT EXISTS``)."""
    table = staging_table(loaded)
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pgtype)) for name, pgtype in staging_columns(loaded)
    )
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(PARTITION_SCHEMA)),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {table} ({cols}, "
            "CONSTRAINT {pk} PRIMARY KEY (_submission_version_id, _row_number)) "
            "PARTITION BY LIST (_submission_version_id)"
        ).format(table=table, cols=cols, pk=sql.Identifier(f"pk_{loaded.staging_name}")),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {ix} ON {table} USING brin (_council_code, _period) WITH (autosummarize = on)"
        ).format(
            ix=sql.Identifier(f"ix_{loaded.staging_name}_council_period"), table=table
        ),
    ]


def existing_columns(conn: Any, return_id: str) -> dict[str, str] | None:
    """Column -> type of the staging table as it is in the database; None if it does not exist."""
    raw = raw_connection(conn)
    rows = raw.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (sql.Identifier(SCHEMA, return_id).as_string(raw),),
    ).fetchall()
    return {name: pgtype for name, pgtype in rows} or None


def _missing(loaded: LoadedSpec, have: dict[str, str] | None) -> list[tuple[str, str]]:
    wanted = staging_columns(loaded)
    if have is None:
        return wanted
    wrong = [f"{n} is {have[n]}, the spec says {t}" for n, t in wanted if n in have and have[n] != t]
    if wrong:
        raise StagingSchemaError(
            f"staging table for {loaded.id!r} does not match spec version {loaded.spec.version}: " + "; ".join(wrong)
        )
    return [(n, t) for n, t in wanted if n not in have]


def ensure_staging_table(conn: Any, loaded: LoadedSpec) -> list[str]:
    """Create the return's staging table, or add the columns of items a newer spec added.

    ``conn`` is a SQLAlchemy Session or Connection, or a psycopg Connection; the DDL runs in its
    transaction (PostgreSQL DDL is transactional). Returns the names of the columns created
    (every column for a new table, none when nothing changed).
    """
    raw = raw_connection(conn)
    if not _missing(loaded, existing_columns(raw, loaded.staging_name)):
        return []
    raw.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (DDL_LOCK_CLASS, loaded.staging_name))
    have = existing_columns(raw, loaded.staging_name)  # again, under the lock
    missing = _missing(loaded, have)
    if have is None:
        for stmt in create_table_sql(loaded):
            raw.execute(stmt)
    else:
        table = staging_table(loaded)
        for name, pgtype in missing:
            raw.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    table, sql.Identifier(name), sql.SQL(pgtype)
                )
            )
    return [name for name, _ in missing]


__all__ = [
    "META_COLUMNS",
    "PARTITION_SCHEMA",
    "PG_TYPES",
    "SCHEMA",
    "StagingSchemaError",
    "create_table_sql",
    "ensure_staging_table",
    "existing_columns",
    "is_partitioned",
    "partition_table",
    "staging_columns",
    "staging_table",
]

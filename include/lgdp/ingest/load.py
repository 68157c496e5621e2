"""Load a parsed submission version into its return's staging table: one transaction, COPY.

``load_version`` streams the Arrow table to PostgreSQL with ``COPY ... FROM STDIN (FORMAT binary)``
(``lgdp.ingest.pgbinary`` encodes each record batch, with the version, council, period and
row-number columns in front, while a writer thread sends the previous one on the caller's
connection; CSV text was measured too and is about twice as slow on the server: see
``docs/benchmarks.md``).

Where the rows go. A staging table partitioned by version (``lgdp.ingest.staging``) gets a new
partition per version: a plain table, created with a CHECK on its version id, filled by
``COPY ... FREEZE`` with no index to maintain, then attached, which builds its primary key and
BRIN index in one sorted pass each and needs no scan for the partition bound (the CHECK proves
it). The version, council and period, the same on every row, come from column defaults of the
new partition during the COPY (dropped before attaching). ``FREEZE`` writes the rows already frozen (no later hint-bit or anti-wraparound rewrite);
PostgreSQL allows it only for a table created in the same subtransaction, and its one caveat is
that a REPEATABLE READ reader whose snapshot is older than our commit could see the rows once
committed, which no reader of staging relies on (validation runs after the load). Attaching takes
a SHARE UPDATE EXCLUSIVE lock on the parent until the caller commits: reads and other loads' COPY
carry on, two loads of the same return attach one after the other. A version whose partition
already exists (``replace=True``) and a plain (pre-partitioning) staging table get a COPY into
the table itself, as before.

Transaction. Everything runs inside the caller's transaction (a Session, a Connection from
``engine.begin()``, or a psycopg connection), inside a savepoint: a failure part-way (a duplicate
row number, a value the column refuses, a dropped connection) leaves no row, partition or table of
the version behind and the caller's transaction usable, for instance to record the failure. The
rows become visible when the caller commits, together with whatever else it recorded.

Idempotency. A transaction-scoped advisory lock on the version id serialises loads of the same
version (a retry running beside a zombie task waits for it). If the version already has rows,
nothing is loaded and their count is returned: a version's file is immutable, so its rows are the
same. ``replace=True`` deletes them and loads again in the same transaction (for a parser fix).
The primary key (version, row number) still refuses a row loaded twice.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from lgdp.ingest import pgbinary
from lgdp.ingest._conn import raw_connection
from lgdp.ingest.arrow import ROW_NUMBER
from lgdp.ingest.staging import (
    META_COLUMNS,
    ensure_staging_table,
    is_partitioned,
    partition_table,
    staging_columns,
    staging_table,
)
from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import ItemType

log = logging.getLogger(__name__)

# pg_advisory_xact_lock(classid, objid): this class id marks staging loads ("LGDL" in ASCII).
LOAD_LOCK_CLASS = 0x4C47444C
BATCH_ROWS = 65_536


def _prepared(loaded: LoadedSpec, table: pa.Table) -> pa.Table:
    """The item columns and row numbers, in staging order, with types PostgreSQL reads exactly."""
    missing = [it.name for it in loaded.items if it.name not in table.column_names]
    if ROW_NUMBER not in table.column_names:
        missing.append(ROW_NUMBER)
    if missing:
        raise ValueError(f"the parsed table for {loaded.id!r} has no column(s): {', '.join(missing)}")
    cols: list[pa.ChunkedArray] = [table.column(ROW_NUMBER).cast(pa.int32())]
    for it in loaded.items:
        col = table.column(it.name)
        if it.type == ItemType.integer and not pa.types.is_integer(col.type):
            col = col.cast(pa.int64())  # safe cast: 3.0 → 3, 3.5 raises
        elif it.type == ItemType.date and not pa.types.is_date(col.type):
            col = col.cast(pa.date32())
        elif it.type in (ItemType.string, ItemType.code) and pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        elif it.type == ItemType.decimal and pa.types.is_floating(col.type):
            col = pc.if_else(pc.is_finite(col), col, None)  # NaN/inf have no place in numeric
        cols.append(col)
    return pa.table(cols, names=["_row_number", *(it.name for it in loaded.items)])


def _copy_sql(loaded: LoadedSpec, target: sql.Composable | None = None, *, partition: bool = False) -> sql.Composed:
    """COPY of every staging column; into a new partition (``partition``), FREEZE and without the
    version, council and period, which the partition's column defaults fill in."""
    meta = [name for name, _ in META_COLUMNS]
    names = (meta[3:] if partition else meta) + [it.name for it in loaded.items]
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary{})").format(
        target if target is not None else staging_table(loaded),
        sql.SQL(", ").join(sql.Identifier(n) for n in names),
        sql.SQL(", FREEZE") if partition else sql.SQL(""),
    )


def _tuples(data: pa.Table, loaded: LoadedSpec, version_id: int, council_code: str, period: str, *, constants: bool = True):
    """Binary COPY tuples per record batch, with the version, council and period in front (``constants``)."""
    prefix = b""
    if constants:
        prefix = pgbinary.constant_fields([(version_id, "bigint"), (council_code, "text"), (period, "text")])
    types = [pgtype for _, pgtype in staging_columns(loaded)][3:]
    n_fields = len(types) + (3 if constants else 0)
    for batch in data.to_batches(max_chunksize=BATCH_ROWS):
        yield pgbinary.encode_tuples(prefix, n_fields, list(zip(batch.columns, types)))


def loaded_rows(conn: Any, loaded: LoadedSpec, version_id: int) -> int:
    """How many rows of the version are in the staging table (0 if the table does not exist)."""
    raw = raw_connection(conn)
    if raw.execute("SELECT to_regclass(%s)", (staging_table(loaded).as_string(raw),)).fetchone()[0] is None:
        return 0
    return raw.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE _submission_version_id = %s").format(staging_table(loaded)),
        (version_id,),
    ).fetchone()[0]


def load_version(
    conn: Any,
    loaded: LoadedSpec,
    version_id: int,
    council_code: str,
    period: str,
    table: pa.Table,
    *,
    replace: bool = False,
) -> int:
    """Load a version's parsed rows into ``lgdp_staging."<return_id>"``; returns its row count.

    ``conn``: a SQLAlchemy Session or Connection (in a transaction) or a psycopg Connection; the
    load shares its transaction (see the module docstring for the savepoint, the lock and what a
    re-run does). ``table``: one column per spec item plus ``_row_number``
    (``lgdp.parse.ParseResult.table``).
    """
    data = _prepared(loaded, table)
    raw = raw_connection(conn)
    if raw.autocommit:  # no caller's transaction to share: make one
        with raw.transaction():
            return _load(raw, loaded, version_id, council_code, period, data, replace)
    return _load(raw, loaded, version_id, council_code, period, data, replace)


def _load(raw, loaded: LoadedSpec, version_id: int, council_code: str, period: str, data: pa.Table, replace: bool) -> int:
    table = staging_table(loaded)
    # Any statement starts the caller's (implicit) transaction, so the block below is a savepoint.
    raw.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOAD_LOCK_CLASS, version_id))
    with raw.transaction():
        ensure_staging_table(raw, loaded)
        existing = loaded_rows(raw, loaded, version_id)
        if existing and not replace:
            log.info("version %s: %d rows already in staging; nothing loaded", version_id, existing)
            return existing
        if existing:
            raw.execute(sql.SQL("DELETE FROM {} WHERE _submission_version_id = %s").format(table), (version_id,))
        part = partition_table(loaded, version_id)
        new_partition = is_partitioned(raw, loaded) and (
            raw.execute("SELECT to_regclass(%s)", (part.as_string(raw),)).fetchone()[0] is None
        )
        constants = sql.SQL(", ").join(
            sql.SQL("ALTER COLUMN {} {}").format(sql.Identifier(name), sql.SQL("SET DEFAULT {}").format(sql.Literal(value)))
            for name, value in (("_submission_version_id", int(version_id)), ("_council_code", council_code), ("_period", period))
        )
        if new_partition:
            # The version, council and period are the same on every row: column defaults of the
            # new partition fill them in (36 bytes a row less to send and read), dropped after COPY.
            check = sql.Identifier(f"ck_{loaded.staging_name}_v{int(version_id)}")
            raw.execute(
                sql.SQL("CREATE TABLE {part} (LIKE {table} INCLUDING DEFAULTS, "
                        "CONSTRAINT {check} CHECK (_submission_version_id = {v}))").format(
                    part=part, table=table, check=check, v=sql.Literal(int(version_id)))
            )
            raw.execute(sql.SQL("ALTER TABLE {} {}").format(part, constants))
        with raw.cursor() as cur:
            # A writer thread sends while this one encodes the next batch (numpy and Arrow release
            # the GIL), so on two cores the encoding hides behind the server's work.
            copy_sql = _copy_sql(loaded, part, partition=True) if new_partition else _copy_sql(loaded)
            with cur.copy(copy_sql, writer=QueuedLibpqWriter(cur)) as copy:
                copy.write(pgbinary.HEADER)
                for chunk in _tuples(data, loaded, version_id, council_code, period, constants=not new_partition):
                    copy.write(chunk)
                copy.write(pgbinary.TRAILER)
            count = cur.rowcount if cur.rowcount >= 0 else data.num_rows
        if new_partition:  # builds the partition's primary key (a duplicate row number fails here) and BRIN index
            raw.execute(sql.SQL("ALTER TABLE {} {}").format(part, sql.SQL(", ").join(
                sql.SQL("ALTER COLUMN {} DROP DEFAULT").format(sql.Identifier(name)) for name, _ in META_COLUMNS[:3])))
            raw.execute(sql.SQL("ALTER TABLE {table} ATTACH PARTITION {part} FOR VALUES IN ({v})").format(
                table=table, part=part, v=sql.Literal(int(version_id))))
    log.info("version %s: %d rows loaded into staging for %s", version_id, count, loaded.id)
    return count


def load_result(conn: Any, loaded: LoadedSpec, version_id: int, council_code: str, period: str, result: Any,
                *, replace: bool = False) -> int:
    """Load a parsed submission (``lgdp.parse.ParseResult``): its one table, or every table of a
    return of several tables (each into its own staging table, in the same transaction). Returns
    the number of rows loaded, over all tables."""
    if not loaded.multi:
        return load_version(conn, loaded, version_id, council_code, period, result.table, replace=replace)
    if result.tables is None:
        raise ValueError(f"the parsed submission of {loaded.id!r} does not have every table")
    return sum(
        load_version(conn, view, version_id, council_code, period, result.tables[view.dataset], replace=replace)
        for view in loaded.tables
    )


def loaded_rows_all(conn: Any, loaded: LoadedSpec, version_id: int) -> int:
    """Rows of the version over every table of the return."""
    return sum(loaded_rows(conn, view, version_id) for view in loaded.tables)


__all__ = ["BATCH_ROWS", "LOAD_LOCK_CLASS", "load_result", "load_version", "loaded_rows", "loaded_rows_all"]

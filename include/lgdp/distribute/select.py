"""What a requester may receive: the accepted version of each council, only the entitled columns.

Accepted data is the rows of each provider council's accepted submission version (the newest
version with status ``accepted`` of a submission whose status is ``accepted``). Councils without
one are *missing* and named in the manifest. The rows are read with one ``COPY ... TO STDOUT``
per accepted version (one partition each) and parsed by Arrow, without building a Python object
per value. The server does not sort (a million-row ``ORDER BY`` spills to disk): each version's
rows come with their file row number, and Arrow puts them in file order if they are not already.
Only the requester's ``columns`` are selected, so nothing they are not entitled to ever leaves
the database for them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.orm import Session

from lgdp.ingest._conn import raw_connection
from lgdp.ingest.staging import staging_table
from lgdp.ledger.models import (
    CollectionPeriod,
    ExpectedSubmission,
    SubmissionStatus,
    SubmissionVersion,
    VersionStatus,
)
from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import Distribution, ItemType


@dataclass(frozen=True)
class AcceptedSet:
    """Which version of which council a delivery holds; ids and counts only."""

    return_id: str
    period: str
    providers: tuple[str, ...]
    versions: dict[str, int]  # council code -> accepted submission version id
    rows: dict[str, int]  # council code -> rows loaded in that version
    numbers: dict[str, int]  # council code -> that version's number (1, 2, ...) as councils know it

    @property
    def councils(self) -> list[str]:
        return sorted(self.versions)

    @property
    def missing(self) -> list[str]:
        return sorted(set(self.providers) - set(self.versions))

    @property
    def complete(self) -> bool:
        return not self.missing


def accepted_set(session: Session, loaded: LoadedSpec, period: str) -> AcceptedSet:
    """The accepted version of each provider council for ``period`` (the ledger's view, now)."""
    providers = tuple(c.code for c in loaded.providers)
    found = session.execute(
        select(ExpectedSubmission.council_code, SubmissionVersion.id, SubmissionVersion.version, SubmissionVersion.rows_loaded)
        .join(CollectionPeriod, CollectionPeriod.id == ExpectedSubmission.period_id)
        .join(SubmissionVersion, SubmissionVersion.submission_id == ExpectedSubmission.id)
        .where(
            CollectionPeriod.return_id == loaded.id,
            CollectionPeriod.period == period,
            ExpectedSubmission.status == SubmissionStatus.accepted,
            SubmissionVersion.status == VersionStatus.accepted,
        )
        .order_by(ExpectedSubmission.council_code, SubmissionVersion.version)
    ).all()
    versions: dict[str, int] = {}
    rows: dict[str, int] = {}
    numbers: dict[str, int] = {}
    for council, version_id, number, loaded_rows in found:  # newest accepted version wins
        if council in providers:
            versions[council] = int(version_id)
            rows[council] = int(loaded_rows or 0)
            numbers[council] = int(number)
    return AcceptedSet(loaded.id, period, providers, versions, rows, numbers)


def validation_summary(session: Session, accepted: AcceptedSet) -> dict[str, object]:
    """Counts of the issues recorded on the delivered versions (codes and counts, never values)."""
    from sqlalchemy import func

    from lgdp.ledger.models import SubmissionIssue

    ids = list(accepted.versions.values())
    by_code: dict[str, int] = {}
    totals = {"errors": 0, "queries": 0, "queries_explained": 0}
    if ids:
        found = session.execute(
            select(
                SubmissionIssue.code,
                SubmissionIssue.severity,
                func.count(),
                func.count(SubmissionIssue.explanation),
            )
            .where(SubmissionIssue.version_id.in_(ids))
            .group_by(SubmissionIssue.code, SubmissionIssue.severity)
        ).all()
        for code, severity, n, explained in found:
            by_code[code] = by_code.get(code, 0) + int(n)
            if severity == "error":
                totals["errors"] += int(n)
            else:
                totals["queries"] += int(n)
                totals["queries_explained"] += int(explained)
    return {
        "councils_validated": len(ids),
        "outcome": "every included council's submission passed the spec's checks (accepted)",
        **totals,
        "issues_by_code": dict(sorted(by_code.items())),
    }


def arrow_type(item_type: ItemType) -> pa.DataType:
    """How an item is read from the staging COPY. Decimals stay text (exact, as the council wrote
    them after normalisation); ``formats`` casts them for Parquet."""
    return {
        ItemType.integer: pa.int64(),
        ItemType.date: pa.date32(),
        ItemType.boolean: pa.bool_(),
    }.get(item_type, pa.string())


def _schema(loaded: LoadedSpec, dist: Distribution) -> pa.Schema:
    return pa.schema([(c, arrow_type(loaded.item(c).type)) for c in dist.columns])


def read_version(conn: Any, loaded: LoadedSpec, version_id: int, schema: pa.Schema) -> pa.Table:
    """One accepted version's rows (the columns of ``schema``), in the council's file row order.

    PostgreSQL's CSV writes NULL as an empty unquoted field and an empty string as ``""``; Arrow
    is told the difference (``quoted_strings_can_be_null=False``), so nulls stay nulls.
    """
    columns = list(schema.names)
    raw = raw_connection(conn)
    query = sql.SQL(
        "COPY (SELECT {cols}, _row_number FROM {table} WHERE _submission_version_id = {id}) "
        "TO STDOUT (FORMAT csv, HEADER false)"
    ).format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        table=staging_table(loaded),
        id=sql.Literal(int(version_id)),
    )
    buf = io.BytesIO()
    with raw.cursor().copy(query) as copy:
        for chunk in copy:
            buf.write(chunk)
    if buf.tell() == 0:
        return schema.empty_table()
    buf.seek(0)
    types = {f.name: f.type for f in schema}
    table = pacsv.read_csv(
        buf,
        read_options=pacsv.ReadOptions(column_names=[*columns, "_row_number"], block_size=8 << 20),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={**types, "_row_number": pa.int64()},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
            true_values=["t"],
            false_values=["f"],
        ),
    )
    order = table.column("_row_number")
    n = len(order)
    if n > 1 and not pc.all(pc.greater(order.slice(1), order.slice(0, n - 1))).as_py():
        table = table.take(pc.sort_indices(order))
    return table.drop_columns(["_row_number"]).cast(schema)


def accepted_batches(conn: Any, loaded: LoadedSpec, accepted: AcceptedSet, dist: Distribution) -> Iterator[pa.Table]:
    """The requester's columns of every accepted row, one table per council, in council order."""
    schema = _schema(loaded, dist)
    for council in accepted.councils:
        yield read_version(conn, loaded, accepted.versions[council], schema)


def read_accepted(conn: Any, loaded: LoadedSpec, accepted: AcceptedSet, dist: Distribution) -> pa.Table:
    """The requester's columns of every accepted row, ordered by council and file row number."""
    tables = list(accepted_batches(conn, loaded, accepted, dist))
    return pa.concat_tables(tables) if tables else _schema(loaded, dist).empty_table()


__all__ = [
    "AcceptedSet",
    "accepted_batches",
    "accepted_set",
    "arrow_type",
    "read_accepted",
    "read_version",
    "validation_summary",
]

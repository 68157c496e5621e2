"""One requester's delivery files from the accepted rows: pseudonymise, suppress, neutralise, write.

Pure computation over an Arrow table (no database, no storage, no Airflow), in a fixed order:
pseudonyms first (they replace identifiers before anything else sees them), then suppression,
then formula neutralisation of the text outputs. Files are named
``<return>_<period>.<format>``; they live in a folder per delivery version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pyarrow as pa

from lgdp.distribute.formats import neutralise, to_csv, to_parquet, to_xlsx, to_xml
from lgdp.distribute.pseudonymise import pseudonymise
from lgdp.distribute.suppress import MARKER as SUPPRESSION_MARKER
from lgdp.distribute.suppress import Suppressed, suppress
from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import Distribution, ItemType


@dataclass(frozen=True)
class FileRecord:
    """One delivered file as the manifest lists it."""

    name: str
    format: str
    size: int
    sha256: str
    rows: int | None = None  # a return of several tables: this file's rows (one table's)
    table: str | None = None  # a return of several tables: the table the file holds


@dataclass(frozen=True)
class Built:
    files: dict[str, bytes]  # file name -> bytes, in the spec's format order
    formats: dict[str, str]  # file name -> format
    rows: int
    suppression: dict[str, object] | None = None
    columns: list[str] = field(default_factory=list)

    @property
    def records(self) -> list[FileRecord]:
        return [
            FileRecord(name, self.formats[name], len(data), hashlib.sha256(data).hexdigest())
            for name, data in self.files.items()
        ]


def file_name(return_id: str, period: str, fmt: str) -> str:
    return f"{return_id}_{period}.{fmt}"


def text_columns(loaded: LoadedSpec, dist: Distribution) -> list[str]:
    """The columns a spreadsheet could read as a formula: text items not replaced by the platform."""
    replaced = set(dist.pseudonymise) | set(dist.suppression.items if dist.suppression else ())
    return [
        c for c in dist.columns
        if c not in replaced and loaded.item(c).type in (ItemType.string, ItemType.code)
    ]


def decimal_columns(loaded: LoadedSpec, dist: Distribution) -> list[str]:
    return [c for c in dist.columns if loaded.item(c).type == ItemType.decimal]


DELIVERED_TYPES = {
    ItemType.string: "text",
    ItemType.code: "text",
    ItemType.integer: "integer",
    ItemType.decimal: "decimal",
    ItemType.date: "date",
    ItemType.boolean: "boolean",
}
# How to read each delivered type with pandas (``docs/distribution.md`` shows the code): dates
# are read as text and converted with ``pd.to_datetime(..., format="%Y-%m-%d")``.
PANDAS_DTYPES = {"text": "string", "integer": "Int64", "decimal": "Float64", "date": "string", "boolean": "boolean"}


def column_types(loaded: LoadedSpec, dist: Distribution) -> list[dict[str, object]]:
    """Each delivered column's type, for ``manifest.json``: ``text`` for pseudonyms and suppressed
    counts (they hold hex or the marker), else the item's type as delivered."""
    suppressed = set(dist.suppression.items) if dist.suppression else set()
    out: list[dict[str, object]] = []
    for c in dist.columns:
        it = loaded.item(c)
        kind = "text" if c in dist.pseudonymise or c in suppressed else DELIVERED_TYPES[it.type]
        entry: dict[str, object] = {"name": c, "type": kind, "item_type": it.type.value, "pandas_dtype": PANDAS_DTYPES[kind]}
        if c in dist.pseudonymise:
            entry["note"] = "pseudonym"
        elif c in suppressed:
            entry["note"] = f"count, or {SUPPRESSION_MARKER} when suppressed"
        out.append(entry)
    return out


ISSUE_COLUMNS = (
    "council_code", "submission_version", "table", "row", "items", "code", "severity", "message", "explanation"
)
ISSUE_TEXT_COLUMNS = ("table", "items", "code", "severity", "message", "explanation")


def issues_file_name(return_id: str, period: str) -> str:
    return f"{return_id}_{period}_issues.csv"


def issues_table(
    loaded: LoadedSpec, dist: Distribution, numbers: dict[str, int], found: list[tuple]
) -> tuple[pa.Table, dict[str, dict[str, int]]]:
    """(the issues and explanations this requester receives, counts per council).

    ``found`` is ``ingest.explanations.issues_of_versions``'s rows. Entitled like the data: an
    issue is delivered when every item it names is one of the requester's columns and none is
    pseudonymised or suppressed for them (its message or explanation could give the value away);
    an issue about the whole submission (no item) is delivered. The value as the council wrote it
    is never delivered. Counts per council: ``issues``, ``queries``, ``explained``, ``withheld``.
    """
    suppressed = set(dist.suppression.items) if dist.suppression else set()
    allowed = set(dist.columns) - set(dist.pseudonymise) - suppressed
    if loaded.multi:
        # Issues name items of their own table (or table.item): an unqualified name is entitled only
        # when it is entitled in every table that has an item of that name (the safe side).
        for t in loaded.tables:
            for it in t.items:
                holders = [u.dataset for u in loaded.tables if any(j.name == it.name for j in u.items)]
                if all(f"{h}.{it.name}" in allowed for h in holders):
                    allowed.add(it.name)
    cols: dict[str, list[object]] = {c: [] for c in ISSUE_COLUMNS}
    per: dict[str, dict[str, int]] = {
        c: {"issues": 0, "queries": 0, "explained": 0, "withheld": 0} for c in sorted(numbers)
    }
    for council, table_name, row, item, code, severity, message, explanation in found:
        counts = per.setdefault(council, {"issues": 0, "queries": 0, "explained": 0, "withheld": 0})
        items = [x.strip() for x in item.split(",")] if item else []
        if table_name:  # a multi-table return's columns are ``table.item``
            items = [x if "." in x else f"{table_name}.{x}" for x in items]
        if not all(x in allowed for x in items):
            counts["withheld"] += 1
            continue
        counts["issues"] += 1
        if severity == "query":
            counts["queries"] += 1
            counts["explained"] += bool(explanation)
        for name, value in zip(
            ISSUE_COLUMNS, (council, numbers.get(council), table_name, row, item, code, severity, message, explanation)
        ):
            cols[name].append(value)
    types = {"submission_version": pa.int64(), "row": pa.int64()}
    table = pa.table({c: pa.array(v, types.get(c, pa.string())) for c, v in cols.items()})
    return neutralise(table, ISSUE_TEXT_COLUMNS), per


def prepare(table: pa.Table, dist: Distribution, key: bytes | None) -> tuple[pa.Table, int]:
    """(rows as every format delivers them before neutralisation, cells suppressed): pseudonyms
    replace identifiers first, then suppression. Row by row, so a delivery can be prepared a
    council at a time with the same result as all at once."""
    if dist.pseudonymise:
        if key is None:
            raise ValueError(f"requester {dist.requester} pseudonymises {dist.pseudonymise} but no key was given")
        table = pseudonymise(table, dist.pseudonymise, key)
    cells = 0
    if dist.suppression is not None:
        done = suppress(table, dist.suppression)
        table, cells = done.table, done.cells
    return table, cells


def suppression_summary(dist: Distribution, cells: int) -> dict[str, object] | None:
    return Suppressed(pa.table({}), cells).summary(dist.suppression) if dist.suppression is not None else None


def text_file(
    loaded: LoadedSpec, dist: Distribution, period: str, delivery_version: int, fmt: str, safe: pa.Table,
    raw: pa.Table | None = None,
) -> bytes:
    """A text format from the neutralised rows (``safe``); xlsx from the rows before neutralisation
    (``raw``): it writes text as text cells, which no spreadsheet runs, so needs no apostrophe."""
    if fmt == "csv":
        return to_csv(safe)
    if fmt == "xlsx":
        return to_xlsx(raw if raw is not None else safe, loaded.spec.dataset, decimal_columns(loaded, dist))
    return to_xml(
        safe,
        loaded.spec.dataset,
        {"return": loaded.id, "period": period, "delivery_version": str(delivery_version)},
    )


def build(
    loaded: LoadedSpec,
    dist: Distribution,
    period: str,
    delivery_version: int,
    table: pa.Table,
    key: bytes | None,
) -> Built:
    """The requester's files. ``key`` is the requester's pseudonym key (needed if it pseudonymises)."""
    table, cells = prepare(table, dist, key)
    texts = text_columns(loaded, dist)
    decimals = decimal_columns(loaded, dist)
    safe: pa.Table | None = None
    files: dict[str, bytes] = {}
    formats: dict[str, str] = {}
    for fmt in dist.formats:
        name = file_name(loaded.id, period, fmt)
        if fmt == "parquet":
            files[name] = to_parquet(table, decimals)
        else:
            if safe is None:
                safe = neutralise(table, texts)
            files[name] = text_file(loaded, dist, period, delivery_version, fmt, safe, raw=table)
        formats[name] = fmt
    return Built(files, formats, table.num_rows, suppression_summary(dist, cells), list(dist.columns))


__all__ = [
    "ISSUE_COLUMNS",
    "Built",
    "FileRecord",
    "build",
    "column_types",
    "issues_file_name",
    "issues_table",
    "decimal_columns",
    "file_name",
    "prepare",
    "suppression_summary",
    "text_columns",
    "text_file",
]

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


def text_file(loaded: LoadedSpec, dist: Distribution, period: str, delivery_version: int, fmt: str, safe: pa.Table) -> bytes:
    """A text format (xlsx or xml; csv is written by ``to_csv``) from the neutralised rows."""
    if fmt == "csv":
        return to_csv(safe)
    if fmt == "xlsx":
        return to_xlsx(safe, loaded.spec.dataset, decimal_columns(loaded, dist))
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
            files[name] = text_file(loaded, dist, period, delivery_version, fmt, safe)
        formats[name] = fmt
    return Built(files, formats, table.num_rows, suppression_summary(dist, cells), list(dist.columns))


__all__ = [
    "Built",
    "FileRecord",
    "build",
    "decimal_columns",
    "file_name",
    "prepare",
    "suppression_summary",
    "text_columns",
    "text_file",
]

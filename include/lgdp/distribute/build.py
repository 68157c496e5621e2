"""One requester's delivery files from the accepted rows: pseudonymise, suppress, neutralise, write.

Pure computation over an Arrow table (no database, no storage, no Airflow), in a fixed order:
pseudonyms first (they replace identifiers before anything else sees them), then suppression,
then formula neutralisation of the text outputs. Files are named
``<return>_<period>.<format>``; they live in a folder per delivery version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from lgdp.distribute.formats import neutralise, to_csv, to_parquet, to_xlsx, to_xml
from lgdp.distribute.pseudonymise import pseudonymise
from lgdp.distribute.suppress import suppress
from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import Distribution, ItemType


@dataclass(frozen=True)
class Built:
    files: dict[str, bytes]  # file name -> bytes, in the spec's format order
    formats: dict[str, str]  # file name -> format
    rows: int
    suppression: dict[str, object] | None = None
    columns: list[str] = field(default_factory=list)


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


def build(
    loaded: LoadedSpec,
    dist: Distribution,
    period: str,
    delivery_version: int,
    table: pa.Table,
    key: bytes | None,
) -> Built:
    """The requester's files. ``key`` is the requester's pseudonym key (needed if it pseudonymises)."""
    if dist.pseudonymise:
        if key is None:
            raise ValueError(f"requester {dist.requester} pseudonymises {dist.pseudonymise} but no key was given")
        table = pseudonymise(table, dist.pseudonymise, key)
    summary = None
    if dist.suppression is not None:
        done = suppress(table, dist.suppression)
        table, summary = done.table, done.summary(dist.suppression)
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
            if fmt == "csv":
                files[name] = to_csv(safe)
            elif fmt == "xlsx":
                files[name] = to_xlsx(safe, loaded.spec.dataset, decimals)
            else:
                files[name] = to_xml(
                    safe,
                    loaded.spec.dataset,
                    {"return": loaded.id, "period": period, "delivery_version": str(delivery_version)},
                )
        formats[name] = fmt
    return Built(files, formats, table.num_rows, summary, list(dist.columns))


__all__ = ["Built", "build", "decimal_columns", "file_name", "text_columns"]

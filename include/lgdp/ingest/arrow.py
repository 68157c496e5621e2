"""The Arrow shape of a parsed submission, as ``lgdp.parse`` produces it and ``load`` consumes it.

One typed column per spec item, in spec order (string/code → string, integer → int64,
decimal → decimal128 (or float64), date → date32, boolean → bool), plus ``_row_number``: the row's
number in the council's file (header = row 1, first data row = 2).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable, Mapping

import pyarrow as pa

from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import ItemType

ROW_NUMBER = "_row_number"
FIRST_DATA_ROW = 2
ARROW_TYPES: dict[ItemType, pa.DataType] = {
    ItemType.string: pa.string(),
    ItemType.code: pa.string(),
    ItemType.integer: pa.int64(),
    ItemType.decimal: pa.decimal128(38, 9),  # the default when no value shows the scale
    ItemType.date: pa.date32(),
    ItemType.boolean: pa.bool_(),
}


def _column(values: list[Any], itype: ItemType) -> pa.Array:
    if itype == ItemType.decimal and any(isinstance(v, Decimal) for v in values):
        return pa.array(values)  # pyarrow infers precision and scale from the Decimals
    return pa.array(values, type=ARROW_TYPES[itype])


def table_from_rows(
    loaded: LoadedSpec, rows: Iterable[Mapping[str, Any]], first_row_number: int = FIRST_DATA_ROW
) -> pa.Table:
    """Typed rows (dicts keyed by item name, as ``lgdp.synth`` makes them) as an Arrow table."""
    rows = list(rows)
    cols = {it.name: _column([r.get(it.name) for r in rows], it.type) for it in loaded.items}
    cols[ROW_NUMBER] = pa.array(range(first_row_number, first_row_number + len(rows)), type=pa.int64())
    return pa.table(cols)


__all__ = ["ARROW_TYPES", "FIRST_DATA_ROW", "ROW_NUMBER", "table_from_rows"]

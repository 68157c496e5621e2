"""The delivered files: CSV, Excel workbook, Parquet and XML, from one Arrow table. No I/O.

**Formula injection.** A text cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or
carriage return, which spreadsheets skip before such a character) is run as a formula when a
CSV or workbook is opened in a spreadsheet: a council's free text must never become a
requester's ``=HYPERLINK(...)``. In the CSV and XML outputs such values of text items get a
leading apostrophe (``'=1+1``), the OWASP-recommended neutralisation; the requester sees the
apostrophe, and the value is otherwise unchanged. Only text items are touched: numbers, dates,
decimals (``-12.50`` is a number, not a formula), pseudonyms (hex) and the suppression marker
cannot start a formula. In the xlsx output no apostrophe is needed: every text value is written
as a text cell, which a spreadsheet shows and never runs, so the value is exactly as accepted.
Parquet is typed data for programs, not for spreadsheets, and keeps values exactly as accepted.

The CSV is UTF-8 with a header row, RFC 4180 records (CRLF line ends; text values in double
quotes, a quote inside doubled), ISO dates, ``true``/``false``, and a blank for a missing value
(an empty text value is ``""``). Each column's type is in ``manifest.json`` (``column_types``).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from decimal import Decimal
from typing import Iterable, Mapping
from xml.sax.saxutils import escape, quoteattr

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMULA_START = r"^[=+\-@\t\r]"
CSV_EOL = "\r\n"  # RFC 4180
PARQUET_COMPRESSION = "zstd"
XLSX_MAX_ROWS = 1_048_576 - 1  # Excel's sheet limit, less the header row
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
    "xml": "application/xml",
}


class FormatError(ValueError):
    """The data cannot be written in the requested format (e.g. too many rows for a workbook)."""


def neutralise_column(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Text values that a spreadsheet would run as a formula, prefixed with an apostrophe."""
    risky = pc.fill_null(pc.match_substring_regex(column, FORMULA_START), False)
    if not pc.any(risky).as_py():
        return column
    return pc.if_else(risky, pc.binary_join_element_wise(pa.scalar("'"), column, ""), column)


def neutralise(table: pa.Table, text_columns: Iterable[str]) -> pa.Table:
    """``table`` with every column in ``text_columns`` neutralised (see the module docstring)."""
    for name in text_columns:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i), neutralise_column(table.column(name)))
    return table


def csv_options(header: bool = True) -> pacsv.WriteOptions:
    """How every delivered CSV is written (whole, or streamed a slice at a time)."""
    return pacsv.WriteOptions(include_header=header, quoting_style="needed", eol=CSV_EOL)


def to_csv(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, csv_options(True))
    return buf.getvalue()


def neutralised_sql(column: str) -> str:
    """SQL for one text column (a quoted identifier) with the neutralisation of
    ``neutralise_column``, for a CSV PostgreSQL writes itself (a council's accepted data)."""
    return f"CASE WHEN {column} ~ E'^[=+\\\\-@\\t\\r]' THEN '''' || {column} ELSE {column} END"


def _decimal_type(column: pa.ChunkedArray) -> pa.DataType | None:
    """The narrowest decimal holding every value exactly, or None if a value is not a plain decimal."""
    valid = pc.drop_null(column)
    if len(valid) == 0:
        return pa.decimal128(38, 0)
    if not pc.all(pc.match_substring_regex(valid, r"^-?\d+(\.\d+)?$")).as_py():
        return None
    frac = pc.utf8_length(pc.replace_substring_regex(valid, r"^-?\d+\.?", ""))
    scale = int(pc.max(frac).as_py() or 0)
    return pa.decimal128(38, scale) if scale <= 30 else None


def to_parquet(table: pa.Table, decimal_columns: Iterable[str] = ()) -> bytes:
    """Parquet (zstd), decimals as exact decimal columns (text kept if one does not fit)."""
    for name in decimal_columns:
        col = table.column(name)
        target = _decimal_type(col)
        if target is not None:
            i = table.schema.get_field_index(name)
            table = table.set_column(i, pa.field(name, target), pc.cast(col, target))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=PARQUET_COMPRESSION)
    return buf.getvalue()


def to_xlsx(table: pa.Table, sheet: str, decimal_columns: Iterable[str] = ()) -> bytes:
    """One worksheet named after the dataset, header row then the rows (write-only: constant memory).

    Give it the rows *before* neutralisation: text is written as text cells (never run as a
    formula by any spreadsheet), so no apostrophe is added."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    if table.num_rows > XLSX_MAX_ROWS:
        raise FormatError(
            f"{table.num_rows} rows do not fit one Excel worksheet (at most {XLSX_MAX_ROWS}): "
            "deliver this requester csv or parquet instead"
        )
    decimals = set(decimal_columns)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet[:31])
    ws.append(table.column_names)
    for batch in table.to_batches(max_chunksize=50_000):
        cols = [c.to_pylist() for c in batch.columns]
        is_decimal = [name in decimals for name in batch.schema.names]
        for values in zip(*cols):
            out: list[object] = []
            for v, dec in zip(values, is_decimal):
                if isinstance(v, dt.date):
                    cell = WriteOnlyCell(ws, value=v)
                    cell.number_format = "yyyy-mm-dd"
                    out.append(cell)
                elif dec and v is not None:
                    try:
                        out.append(Decimal(v))
                    except ArithmeticError:
                        out.append(_text_cell(ws, v))
                elif isinstance(v, str):
                    out.append(_text_cell(ws, v))
                else:
                    out.append(v)
            ws.append(out)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _text_cell(ws, value: str):
    """A text cell, whatever the text starts with (openpyxl would make ``=...`` a formula)."""
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(ws, value=value)
    cell.data_type = "s"
    return cell


def _xml_text(value: object) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dt.date):
        text = value.isoformat()
    else:
        text = str(value)
    return escape(_XML_ILLEGAL.sub("\ufffd", text))


def to_xml(table: pa.Table, root: str, attributes: Mapping[str, str]) -> bytes:
    """``<root ...>`` with one ``<record>`` per row, one element per non-blank value (the shape
    councils send XML in). Characters XML 1.0 cannot carry become U+FFFD."""
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in attributes.items())
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}{attrs}>\n']
    names = table.column_names
    for batch in table.to_batches(max_chunksize=50_000):
        cols = [c.to_pylist() for c in batch.columns]
        for values in zip(*cols):
            row = ["  <record>"]
            for name, v in zip(names, values):
                if v is not None and v != "":
                    row.append(f"<{name}>{_xml_text(v)}</{name}>")
            row.append("</record>\n")
            parts.append("".join(row))
    parts.append(f"</{root}>\n")
    return "".join(parts).encode("utf-8")


__all__ = [
    "CONTENT_TYPES",
    "CSV_EOL",
    "FORMULA_START",
    "FormatError",
    "PARQUET_COMPRESSION",
    "XLSX_MAX_ROWS",
    "neutralise",
    "neutralise_column",
    "neutralised_sql",
    "csv_options",
    "to_csv",
    "to_parquet",
    "to_xlsx",
    "to_xml",
]

"""Write synthetic rows as the files councils send: CSV, Excel workbook or XML.

The shapes are deliberately plain (the collection templates will be derived from the spec
later):

* CSV: UTF-8, a header row of item names, then one line per row. Blank = empty field, dates
  ``YYYY-MM-DD``, booleans ``true``/``false``, decimals as written (no exponent).
* XLSX: one sheet named after the spec's ``dataset``, header row of item names, one row per data
  row; dates are real Excel dates (shown ``yyyy-mm-dd``), numbers are numbers, blanks are empty.
* XML: ``<{root} return=".." council=".." period="..">`` (``root`` defaults to the spec's
  ``dataset``, e.g. ``episodes``) holding one ``<record>`` per row, each with one child element
  per item that has a value, named after the item (blank values are left out)::

      <?xml version="1.0" encoding="UTF-8"?>
      <services return="social_care_survey" council="S12000036" period="2025-26">
        <record><council_code>S12000036</council_code><client_id>SC0012345</client_id>...</record>
      </services>

Row numbers in ``Fault`` records follow the header convention of CSV and XLSX (first data row is
row 2); in XML the k-th ``record`` is row k + 1.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Iterable, Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import ResolvedItem
from lgdp.synth.core import Fault, SynthError

Target = str | Path | IO[Any]
FORMATS = ("csv", "xlsx", "xml")


def _names(items: Iterable[ResolvedItem | str]) -> list[str]:
    return [i if isinstance(i, str) else i.name for i in items]


def text_value(value: Any) -> str:
    """A value as text in CSV and XML."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _open_text(target: Target, newline: str | None = "") -> tuple[IO[str], bool]:
    if isinstance(target, (str, Path)):
        return open(target, "w", encoding="utf-8", newline=newline), True
    if isinstance(target, io.TextIOBase):
        return target, False  # type: ignore[return-value]
    return io.TextIOWrapper(target, encoding="utf-8", newline=newline, write_through=True), False  # type: ignore[arg-type]


def to_csv(rows: Iterable[Mapping[str, Any]], items: Sequence[ResolvedItem | str], target: Target) -> int:
    """Write rows as CSV; returns the number of data rows written."""
    names = _names(items)
    fh, close = _open_text(target)
    try:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(names)
        n = 0
        for row in rows:
            w.writerow([text_value(row.get(name)) for name in names])
            n += 1
        fh.flush()
        return n
    finally:
        if close:
            fh.close()


def to_xlsx(
    rows: Iterable[Mapping[str, Any]],
    items: Sequence[ResolvedItem | str],
    target: str | Path | IO[bytes],
    sheet_name: str = "data",
) -> int:
    """Write rows as a one-sheet workbook (streaming, so large files stay small in memory)."""
    return to_xlsx_tables({sheet_name: rows}, {sheet_name: items}, target)


def _record(indent: str, row: Mapping[str, Any], names: Sequence[str]) -> str:
    """One ``<record>`` line: an element per item with a value (a blank value is left out)."""
    parts = [f"{indent}<record>"]
    for name in names:
        v = row.get(name)
        if v is not None and v != "":
            parts.append(f"<{name}>{escape(text_value(v))}</{name}>")
    parts.append("</record>\n")
    return "".join(parts)


def to_xml(
    rows: Iterable[Mapping[str, Any]],
    items: Sequence[ResolvedItem | str],
    target: Target,
    root: str = "records",
    attributes: Mapping[str, str] | None = None,
) -> int:
    """Write rows as XML: ``<root ...>`` with one ``<record>`` per row (see the module docstring)."""
    names = _names(items)
    fh, close = _open_text(target, newline=None)
    try:
        attrs = "".join(f" {k}={quoteattr(v)}" for k, v in (attributes or {}).items())
        fh.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}{attrs}>\n')
        n = 0
        for row in rows:
            fh.write(_record("  ", row, names))
            n += 1
        fh.write(f"</{root}>\n")
        fh.flush()
        return n
    finally:
        if close:
            fh.close()


def write_rows(
    loaded: LoadedSpec,
    rows: Iterable[Mapping[str, Any]],
    fmt: str,
    target: Target,
    council_code: str = "",
    period_label: str = "",
) -> int:
    """Write rows of ``loaded`` in ``fmt`` (csv, xlsx or xml) with the spec's item order."""
    items = list(loaded.items)
    if fmt == "csv":
        return to_csv(rows, items, target)
    if fmt == "xlsx":
        return to_xlsx(rows, items, target, sheet_name=loaded.spec.dataset)  # type: ignore[arg-type]
    if fmt == "xml":
        attrs = {"return": loaded.id, "council": council_code, "period": period_label}
        return to_xml(rows, items, target, root=loaded.spec.dataset, attributes=attrs)
    raise SynthError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def to_xlsx_tables(tables: Mapping[str, Iterable[Mapping[str, Any]]], items: Mapping[str, Sequence[ResolvedItem | str]],
                   target: str | Path | IO[bytes]) -> int:
    """Write several tables as one workbook, one sheet per table (streaming)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    wb = Workbook(write_only=True)
    n = 0
    for name, rows in tables.items():
        names = _names(items[name])
        ws = wb.create_sheet(name[:31])
        ws.append(names)
        for row in rows:
            out: list[Any] = []
            for col in names:
                v = row.get(col)
                if isinstance(v, dt.date):
                    cell = WriteOnlyCell(ws, value=v)
                    cell.number_format = "yyyy-mm-dd"
                    out.append(cell)
                else:
                    out.append(v)
            ws.append(out)
            n += 1
    wb.save(target)
    return n


def to_csv_zip(tables: Mapping[str, Iterable[Mapping[str, Any]]], items: Mapping[str, Sequence[ResolvedItem | str]],
               target: str | Path | IO[bytes]) -> int:
    """Write several tables as one zip holding ``<table>.csv`` per table."""
    import zipfile

    n = 0
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, rows in tables.items():
            buf = io.StringIO()
            n += to_csv(rows, items[name], buf)
            zf.writestr(f"{name}.csv", buf.getvalue().encode("utf-8"))
    return n


def write_tables(loaded: LoadedSpec, tables: Mapping[str, Iterable[Mapping[str, Any]]], fmt: str, target: Any) -> int:
    """Write a multi-table submission: xlsx (one sheet per table) or csv (a zip of one CSV per table)."""
    items = {t.dataset: list(t.items) for t in loaded.tables}
    if fmt == "xlsx":
        return to_xlsx_tables(tables, items, target)
    if fmt == "csv":
        return to_csv_zip(tables, items, target)
    if fmt == "xml":
        return to_xml_tables(loaded, tables, target)
    raise SynthError(f"format {fmt!r} is not offered for a return of several tables: use xlsx, csv or xml")


def to_xml_tables(loaded: LoadedSpec, tables: Mapping[str, Iterable[Mapping[str, Any]]], target: Any,
                  council_code: str = "", period_label: str = "") -> int:
    """``<id return= council= period=>`` with one element per table holding its ``<record>`` rows."""
    fh, close = _open_text(target, newline=None)
    n = 0
    try:
        attrs = {"return": loaded.id, "council": council_code, "period": period_label}
        fh.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<{loaded.id}'
                 + "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items()) + ">\n")
        for view in loaded.tables:
            names = [it.name for it in view.items]
            fh.write(f"  <{view.dataset}>\n")
            for row in tables[view.dataset]:
                fh.write(_record("    ", row, names))
                n += 1
            fh.write(f"  </{view.dataset}>\n")
        fh.write(f"</{loaded.id}>\n")
        fh.flush()
        return n
    finally:
        if close:
            fh.close()
        elif isinstance(fh, io.TextIOWrapper) and not isinstance(target, io.TextIOBase):
            fh.detach()  # the caller's binary stream stays open


def write_sample(
    spec: LoadedSpec | str,
    council: str,
    period: str,
    n: int | None,
    fmt: str | None,
    path: str | Path,
    seed: int = 0,
    faults: Mapping[str, int] | None = None,
) -> list[Fault]:
    """Generate a sample return and write it to ``path``; returns the faults put in it.

    ``spec`` is a loaded spec or a return id (looked up in the register). ``n`` None means the
    generator's default (every key of an aggregate return, otherwise 100 rows). ``fmt`` None
    means the spec's first accepted format. Rows are streamed, so a million rows is fine.
    """
    from lgdp.synth.registry import generator_for

    if isinstance(spec, str):
        from lgdp.specs.load import load_register

        spec = load_register().get(spec)
    fmt = fmt or spec.spec.formats[0]
    if fmt not in FORMATS:
        raise SynthError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if spec.multi:
        result = generator_for(spec).generate(council, period, n, seed, faults)
        write_tables(spec, result.tables, fmt, path)
        return result.faults
    stream = generator_for(spec).stream(council, period, n, seed, faults)
    write_rows(spec, stream, fmt, path, council, period)
    return stream.faults

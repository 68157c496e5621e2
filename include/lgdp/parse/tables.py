"""Reading a submission of a return with several tables: one sheet, or one CSV file, per table.

* xlsx: each table is read from the sheet named after it (``children``, ``episodes``...; names
  compared as headings are: ``Episodes`` and ``EPISODES`` match), with the same reader, header
  mapping, typing and limits as a one-table return. The guidance and code-list sheets of the
  template are ignored; any other sheet is ``TBL-002``; a table without its sheet is ``TBL-001``.
* xml: ``<id return= council= period=>`` holding one element per table (``<episodes>``), each
  with its ``<record>`` elements, validated against the return's generated XML Schema table by table.
* csv: a zip holding one CSV file per table, named after the table (``episodes.csv``), read
  safely (the same entry-count, size and expansion limits as a workbook). A single CSV file for
  a return of several tables is ``TBL-003`` (it says how to send them together).

Each table's issues carry the table's name and the council's own row numbers in that sheet or
file. ``parse_tables`` never raises for bad input, like ``parse_submission``.
"""

from __future__ import annotations

import dataclasses
import io
import time
import zipfile
from typing import Any

from lgdp.issues import Issue
from lgdp.parse.codes import issue
from lgdp.parse.core import EXTENSIONS, NOT_DATA_SHEETS, ParseResult, parse_submission, unsafe_name
from lgdp.parse.headers import normalise
from lgdp.parse.limits import MB, Limits
from lgdp.parse.readers import sniff
from lgdp.specs.load import LoadedSpec

PLATFORM_SHEETS = {"_lgdp"}


def _with_table(found: list[Issue], table: str | None) -> list[Issue]:
    return [dataclasses.replace(i, table=table) if table and i.table is None else i for i in found]


def _words(loaded: LoadedSpec) -> dict[str, str]:
    names = [t.dataset for t in loaded.tables]
    return {"count": str(len(names)), "tables": ", ".join(names), "files": ", ".join(f"{n}.csv" for n in names)}


def _missing(table: str, where: str, kind: str, words: dict[str, str]) -> Issue:
    """TBL-001 for a table the submission does not have, naming the table."""
    found = issue("TBL-001", table=table, where=where, kind=kind, count=words["count"], tables=words["tables"])
    return dataclasses.replace(found, table=table)


def _sheet_names(data: bytes) -> list[str] | None:
    try:
        from python_calamine import CalamineWorkbook

        wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
        return [m.name for m in wb.sheets_metadata]
    except Exception:  # noqa: BLE001 - the per-table reader says what is wrong with the file
        return None


def _is_csv_bundle(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
    except Exception:  # noqa: BLE001
        return False
    return "[Content_Types].xml" not in names and any(n.lower().endswith((".csv", ".txt", ".tsv")) for n in names)


def _combine(loaded: LoadedSpec, results: dict[str, ParseResult], extra: list[Issue], fmt: str | None,
             started: float) -> ParseResult:
    issues: list[Issue] = list(extra)
    for name, r in results.items():
        issues += _with_table(r.issues, name)
    readable = all(r.readable for r in results.values()) and bool(results)
    tables = {name: r.table for name, r in results.items() if r.table is not None}
    complete = len(tables) == len(loaded.tables) and not any(i.severity == "error" and i.code.startswith("TBL-") for i in extra)
    return ParseResult(
        table=tables[loaded.tables[0].dataset] if complete else None,
        issues=issues,
        readable=readable,
        format=fmt,
        rows=sum(r.rows for r in results.values()),
        details={"tables": {name: {"rows": r.rows, **{k: v for k, v in r.details.items() if k in ("sheet", "encoding", "delimiter")}}
                            for name, r in results.items()},
                 "seconds": round(time.monotonic() - started, 3)},
        tables=tables if complete else None,
    )


def parse_tables(
    loaded: LoadedSpec,
    filename: str,
    data: bytes,
    *,
    council_code: str | None = None,
    limits: Limits | None = None,
) -> ParseResult:
    """Read a submission of a multi-table return; ``result.tables`` maps each table to its typed rows
    (None unless every table was read), ``result.table`` is the first table's (for callers that only
    ask whether the file could be read)."""
    limits = limits or Limits.from_env()
    started = time.monotonic()
    words = _words(loaded)
    why = unsafe_name(filename)
    if why or len(data) > limits.max_file_bytes or not data:
        # the one-table reader gives the same messages for these
        first = parse_submission(loaded.tables[0], filename, data, council_code=council_code, limits=limits, others=())
        return _combine(loaded, {}, first.issues, first.format, started)
    kind = sniff(data)
    if kind == "zip" and _is_csv_bundle(data) and "csv" in loaded.spec.formats:
        return _parse_bundle(loaded, filename, data, council_code, limits, started)
    if kind == "xml" and "xml" in loaded.spec.formats:
        return _parse_xml(loaded, filename, data, council_code, limits, started)
    if kind == "text":
        stem = filename.rsplit(".", 1)[0]
        found = issue("TBL-003", **words)
        if normalise(stem) in {normalise(t.dataset) for t in loaded.tables}:
            found = dataclasses.replace(found, table=next(t.dataset for t in loaded.tables if normalise(t.dataset) == normalise(stem)))
        return _combine(loaded, {}, [found], "csv", started)
    results: dict[str, ParseResult] = {}
    extra: list[Issue] = []
    if kind == "zip":
        # the package is checked once (zip bombs, macros, encryption) before any sheet is listed or read
        from lgdp.parse.readers import Context, Stop, inspect_zip

        from lgdp.parse.core import _accepted

        ctx = Context(limits, started + limits.parse_timeout_s, _accepted(loaded), loaded.spec.governance.contact_email,
                      loaded.tables[0].dataset)
        try:
            inspect_zip(data, ctx)
        except Stop as stop:
            return _combine(loaded, {}, [stop.issue], "xlsx", started)
    sheets = _sheet_names(data) if kind == "zip" else None
    if sheets is not None:
        wanted = {normalise(t.dataset) for t in loaded.tables}
        for name in sheets:
            n = normalise(name)
            if n in wanted or n in NOT_DATA_SHEETS or name in PLATFORM_SHEETS or n in PLATFORM_SHEETS:
                continue
            extra.append(issue("TBL-002", kind="sheet", name=name[:60], tables=words["tables"]))
        present = {normalise(s) for s in sheets}
        for t in loaded.tables:
            if normalise(t.dataset) not in present:
                extra.append(_missing(t.dataset, "sheet", "sheet", words))
                continue
            results[t.dataset] = parse_submission(t, filename, data, council_code=council_code, limits=limits, others=())
        if not results:
            return _combine(loaded, {}, extra, "xlsx", started)
        return _combine(loaded, results, extra, "xlsx", started)
    # not a workbook we can list (damaged, another format): the one-table reader says why, once
    first = parse_submission(loaded.tables[0], filename, data, council_code=council_code, limits=limits, others=())
    return _combine(loaded, {}, first.issues, first.format, started)


def _parse_xml(loaded: LoadedSpec, filename: str, data: bytes, council_code: str | None, limits: Limits,
               started: float) -> ParseResult:
    """``<id return= council= period=>`` with one element per table: each table's element becomes a
    document of its own (``<episodes return= ...><record>...``), read and validated against that
    table's XML Schema by the one-table reader, so its issues and row numbers are the same."""
    from xml.etree.ElementTree import ParseError, tostring

    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as DET

    words = _words(loaded)
    if b"<!DOCTYPE" in data[:1 << 16].upper() or b"<!ENTITY" in data.upper():
        return _combine(loaded, {}, [issue("FILE-007")], "xml", started)
    try:
        root = DET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        return _combine(loaded, {}, [issue("FILE-007")], "xml", started)
    except ParseError:
        # the one-table reader words it (line and column)
        first = parse_submission(loaded.tables[0], filename, data, council_code=council_code, limits=limits, others=())
        return _combine(loaded, {}, first.issues, "xml", started)

    def local(tag: object) -> str:
        return str(tag).rsplit("}", 1)[-1] if isinstance(tag, str) else ""

    if local(root.tag) != loaded.id:
        found = issue("XSD-001", detail=f"the outermost element must be <{loaded.id}> holding one element per table "
                                        f"({words['tables']}), not <{local(root.tag)}>")
        return _combine(loaded, {}, [found], "xml", started)
    extra: list[Issue] = []
    elements: dict[str, object] = {}
    wanted = {t.dataset for t in loaded.tables}
    for child in root:
        name = local(child.tag)
        if not name:
            continue
        if name in wanted and name not in elements:
            elements[name] = child
        else:
            extra.append(issue("TBL-002", kind="element", name=f"<{name[:50]}>", tables=words["tables"]))
    results: dict[str, ParseResult] = {}
    for t in loaded.tables:
        elem = elements.get(t.dataset)
        if elem is None:
            extra.append(_missing(t.dataset, "element", f"element <{t.dataset}>", words))
            continue
        elem.attrib.update({k: v for k, v in root.attrib.items() if k in ("return", "council", "period")})
        results[t.dataset] = parse_submission(t, f"{t.dataset}.xml", tostring(elem, encoding="utf-8"),
                                              council_code=council_code, limits=limits, others=())
    return _combine(loaded, results, extra, "xml", started)


def _parse_bundle(loaded: LoadedSpec, filename: str, data: bytes, council_code: str | None, limits: Limits,
                  started: float) -> ParseResult:
    words = _words(loaded)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in zf.infolist() if not i.is_dir()]
    except Exception:  # noqa: BLE001
        return _combine(loaded, {}, [issue("FILE-001", detail="the zip file is damaged", accepted="xlsx or a zip of CSV files")],
                        "csv", started)
    total = sum(i.file_size for i in infos)
    problem = None
    if len(infos) > limits.max_zip_entries:
        problem = f"it has {len(infos):,} files, more than the {limits.max_zip_entries:,} allowed"
    elif total > limits.max_uncompressed_bytes:
        problem = f"it expands to {total / MB:,.0f} MB, more than the {limits.max_uncompressed_mb:g} MB allowed"
    else:
        for i in infos:
            if i.file_size > MB and i.file_size > limits.max_compression_ratio * max(i.compress_size, 1):
                problem = f"one file expands {i.file_size / max(i.compress_size, 1):,.0f} times, more than allowed"
            if i.flag_bits & 0x1:
                problem = "it is password-protected"
    if problem:
        return _combine(loaded, {}, [issue("FILE-005", detail=problem)], "csv", started)
    by_table: dict[str, zipfile.ZipInfo] = {}
    extra: list[Issue] = []
    wanted = {normalise(t.dataset): t.dataset for t in loaded.tables}
    for info in infos:
        base = info.filename.rsplit("/", 1)[-1]
        if base.startswith(("._", "~$")) or info.filename.startswith("__MACOSX/"):
            continue
        stem, _, ext = base.rpartition(".")
        table = wanted.get(normalise(stem))
        if table is None or EXTENSIONS.get(ext.lower()) != "csv":
            extra.append(issue("TBL-002", kind="file", name=base[:60], tables=words["tables"]))
            continue
        by_table[table] = info
    results: dict[str, ParseResult] = {}
    for t in loaded.tables:
        info = by_table.get(t.dataset)
        if info is None:
            extra.append(_missing(t.dataset, "CSV file in the zip", f"file {t.dataset}.csv", words))
            continue
        member = zf.read(info)
        results[t.dataset] = parse_submission(t, f"{t.dataset}.csv", member, council_code=council_code, limits=limits, others=())
    return _combine(loaded, results, extra, "csv", started)


__all__ = ["parse_tables"]

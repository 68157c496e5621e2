"""Parsing clean and awkward-but-valid submissions: every format round-trips lgdp.synth's rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from decimal import Decimal

import openpyxl
import pyarrow as pa
import pytest

from lgdp import synth
from lgdp.issues import Issue
from lgdp.parse import CODES, Limits, parse_submission
from lgdp.parse.core import schema_for
from lgdp.parse.headers import map_headers, normalise
from lgdp.specs.load import load_register

COUNCIL = "S12000036"
PERIODS = {"annual": "2025-26", "quarterly": "2025-26-Q1", "monthly": "2025-07"}
REG = load_register()
SPECS = {s.id: s for s in REG.specs}


def any_format(loaded):
    """The spec as if it accepted every format (to test each reader on each return)."""
    return dataclasses.replace(loaded, spec=loaded.spec.model_copy(update={"formats": ["xlsx", "csv", "xml"]}))


def synth_rows(loaded, n=None, seed=1):
    return synth.rows(loaded, COUNCIL, PERIODS[loaded.spec.collection.frequency.value], n, seed=seed).rows


def file_bytes(loaded, rows, fmt) -> bytes:
    if fmt == "xlsx":
        buf = io.BytesIO()
        synth.write_rows(loaded, rows, fmt, buf, COUNCIL, "2025-26")
        return buf.getvalue()
    text = io.StringIO()
    synth.write_rows(loaded, rows, fmt, text, COUNCIL, "2025-26")
    return text.getvalue().encode("utf-8")


def expected(loaded, rows):
    return [{it.name: row.get(it.name) for it in loaded.items} for row in rows]


def values(result):
    return result.table.drop_columns(["_row_number"]).to_pylist()


def parse(loaded, name, data, **kw):
    return parse_submission(loaded, name, data, council_code=kw.pop("council_code", COUNCIL), **kw)


def codes(result) -> list[str]:
    return [i.code for i in result.issues]


# --------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "xml"])
@pytest.mark.parametrize("spec_id", sorted(SPECS))
def test_clean_round_trip(spec_id, fmt):
    loaded = any_format(SPECS[spec_id])
    rows = synth_rows(loaded)
    result = parse(loaded, f"{spec_id}.{fmt}", file_bytes(loaded, rows, fmt))
    assert result.issues == []
    assert result.readable and result.format == fmt and result.rows == len(rows)
    assert result.table.schema == schema_for(loaded)
    assert values(result) == expected(loaded, rows)
    assert result.table.column("_row_number").to_pylist() == list(range(2, len(rows) + 2))


@pytest.mark.parametrize("spec_id", sorted(SPECS))
def test_each_spec_in_its_own_format(spec_id):
    loaded = SPECS[spec_id]
    fmt = loaded.spec.formats[0]
    rows = synth_rows(loaded, seed=7)
    result = parse(loaded, f"return.{fmt}", file_bytes(loaded, rows, fmt))
    assert result.clean, result.issues
    assert values(result) == expected(loaded, rows)


def test_faulty_synth_rows_still_parse_cleanly():
    """Rule, code, range and pattern faults are validation's business, not the parser's."""
    loaded = SPECS["clas"]
    res = synth.rows(loaded, COUNCIL, "2025-26", 200, seed=3,
                     faults={"CLAS-E001": 2, "bad_code": 2, "out_of_range": 2, "missing_required": 2, "bad_pattern": 1})
    result = parse(loaded, "clas.xlsx", file_bytes(loaded, res.rows, "xlsx"))
    assert result.issues == []
    assert values(result) == expected(loaded, res.rows)


def test_types_of_the_table():
    loaded = SPECS["social_care_survey"]
    schema = schema_for(loaded)
    assert schema.field("date_of_birth").type == pa.date32()
    assert schema.field("lives_alone").type == pa.bool_()
    assert schema.field("hours_per_week").type == pa.decimal128(18, 6)
    assert schema.field("client_group").type == pa.string()
    assert schema.field("_row_number").type == pa.int64()
    assert SPECS["temporary_accommodation_monthly"] and schema_for(SPECS["temporary_accommodation_monthly"]).field("households").type == pa.int64()


# --------------------------------------------------------------------------------------------
# CSV: delimiters, encodings, blank lines, ragged rows

TA = SPECS["temporary_accommodation_monthly"]
TA_HEADER = ["council_code", "accommodation_type", "households", "households_with_children", "children", "uao_breaches"]


def ta_csv(delimiter=",", rows=None, header=None, newline="\n") -> str:
    header = header or TA_HEADER
    rows = rows or [[COUNCIL, "LA", "10", "4", "7", "0"], [COUNCIL, "BB", "3", "1", "2", "1"]]
    def cell(v):
        return f'"{v}"' if delimiter in v and not v.startswith('"') else v
    return newline.join(delimiter.join(cell(v) for v in r) for r in [header, *rows]) + newline


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters(delimiter):
    result = parse(TA, "ta.csv", ta_csv(delimiter).encode())
    assert result.clean, result.issues
    assert result.table.column("households").to_pylist() == [10, 3]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "utf-16"])
def test_encodings(encoding):
    loaded = any_format(SPECS["social_care_survey"])
    rows = synth_rows(loaded, 5)
    text = file_bytes(loaded, rows, "csv").decode()
    lines = text.split("\n")
    lines[1] = lines[1].replace(COUNCIL, COUNCIL, 1)
    data = text.replace("\n", "\r\n").encode(encoding)
    result = parse(loaded, "scs.csv", data)
    assert result.clean, result.issues
    assert values(result) == expected(loaded, rows)
    assert result.details["encoding"] == {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "cp1252": "utf-8", "utf-16": "utf-16"}[encoding]


def test_windows_1252_text_decodes_correctly():
    loaded = any_format(SPECS["clas"])
    rows = synth_rows(loaded, 3)
    rows[0]["child_id"] = "Zoë-Müller"  # not a valid id (pattern), but it must arrive intact
    data = file_bytes(loaded, rows, "csv").decode().encode("cp1252")
    result = parse(loaded, "clas.csv", data)
    assert result.details["encoding"] == "windows-1252"
    assert result.table.column("child_id").to_pylist()[0] == "Zoë-Müller"


def test_blank_lines_keep_row_numbers_and_quoted_newlines():
    text = ta_csv(rows=[[COUNCIL, "LA", "10", "4", "7", "0"], [], [COUNCIL, "BB", "x", "1", "2", "1"]])
    result = parse(TA, "ta.csv", text.encode())
    bad = [i for i in result.issues if i.code == "TYPE-001"]
    assert [(i.row, i.item, i.value) for i in bad] == [(4, "households", "x")]
    assert result.table.column("_row_number").to_pylist() == [2, 4]


def test_empty_trailing_rows_and_columns_are_ignored():
    text = ta_csv(header=TA_HEADER + [""], rows=[[COUNCIL, "LA", "10", "4", "7", "0", ""], [""] * 7, [""] * 7])
    result = parse(TA, "ta.csv", text.encode())
    assert result.clean, result.issues
    assert result.rows == 1


def test_short_rows_are_padded_long_rows_reported():
    text = "\n".join([",".join(TA_HEADER), f"{COUNCIL},LA,10,4,7", f"{COUNCIL},BB,3,1,2,1,extra"]) + "\n"
    result = parse(TA, "ta.csv", text.encode())
    assert [(i.code, i.row) for i in result.issues] == [("ROW-002", 3)]
    assert result.table.column("uao_breaches").to_pylist() == [None, 1]


def test_quoted_values_with_delimiters_and_newlines():
    text = ",".join(TA_HEADER) + f'\n"{COUNCIL}","LA","1,250","4","7","0"\n'
    result = parse(TA, "ta.csv", text.encode())
    assert result.clean, result.issues
    assert result.table.column("households").to_pylist() == [1250]


# --------------------------------------------------------------------------------------------
# Headers


def test_header_normalisation():
    assert normalise("  Child-ID ") == "child_id"
    assert normalise("Council (GSS code) *") == "council_gss_code"
    assert normalise("date_of_birth (required)") == "date_of_birth"


def test_headers_match_by_case_spacing_and_wording():
    header = ["COUNCIL CODE", "Type of temporary accommodation", "households", "\"Of which, households with children\"",
              " Children ", "uao-breaches"]
    result = parse(TA, "ta.csv", ta_csv(header=header).encode())
    assert result.clean, result.issues
    assert result.table.column("households_with_children").to_pylist() == [4, 1]


def test_header_problems():
    loaded = SPECS["clas"]
    hm = map_headers(loaded, ["council_code", "child_id", "Child identifier", "date_of_brith", "notes"])
    assert hm.duplicates == {"child_id": [1, 2]}
    assert "date_of_birth" in hm.missing_required and "scn" in hm.missing_optional
    assert [3, 4] == hm.unknown


def test_unknown_column_is_a_query_with_a_suggestion_and_missing_optional_is_fine():
    loaded = any_format(SPECS["clas"])
    rows = synth_rows(loaded, 4)
    text = file_bytes(loaded, rows, "csv").decode()
    lines = text.splitlines()
    # drop the optional scn column and rename disability (optional) to a misspelling
    header = lines[0].split(",")
    idx = header.index("scn")
    cut = [",".join(p for k, p in enumerate(line.split(",")) if k != idx) for line in lines]
    cut[0] = cut[0].replace("disability", "disabilty")
    result = parse(loaded, "clas.csv", ("\n".join(cut) + "\n").encode())
    assert codes(result) == ["HDR-002"]
    only = result.issues[0]
    assert only.severity == "query" and "Did you mean 'disability'?" in only.message
    assert result.table.column("scn").null_count == 4 and result.table.column("disability").null_count == 4


def test_missing_required_column_blocks_the_table():
    header = [h for h in TA_HEADER if h != "children"]
    rows = [[COUNCIL, "LA", "10", "4", "0"]]
    result = parse(TA, "ta.csv", ta_csv(header=header, rows=rows).encode())
    assert [(i.code, i.item) for i in result.issues] == [("HDR-001", "children")]
    assert result.table is None and result.readable


# --------------------------------------------------------------------------------------------
# Values


def ta_with(column, values):
    rows = [[COUNCIL, "LA", "10", "4", "7", "0"] for _ in values]
    k = TA_HEADER.index(column)
    for r, v in zip(rows, values):
        r[k] = v
    return parse(TA, "ta.csv", ta_csv(rows=rows).encode())


def test_integers():
    result = ta_with("households", ["12", " 3 ", "1,200", "12.0", "-4", "1.5", "ten", "1e3", ""])
    assert result.table.column("households").to_pylist() == [12, 3, 1200, 12, -4, None, None, None, None]
    bad = [(i.row, i.value) for i in result.issues]
    assert bad == [(7, "1.5"), (8, "ten"), (9, "1e3")]
    assert all(i.code == "TYPE-001" and "whole number" in i.message for i in result.issues)


def test_decimals_and_booleans_and_dates_via_csv():
    loaded = any_format(SPECS["social_care_survey"])
    rows = synth_rows(loaded, 8)
    text = file_bytes(loaded, rows, "csv").decode().splitlines()
    header = text[0].split(",")
    def setcol(name, vals):
        k = header.index(name)
        for i, v in enumerate(vals, start=1):
            parts = next(__import__("csv").reader([text[i]]))
            parts[k] = v
            text[i] = ",".join(f'"{p}"' if "," in p else p for p in parts)
    setcol("hours_per_week", ["12.5", "1,250.25", ".5", "7", "1.5e1", "abc", "£12", "0.1234567"])
    setcol("lives_alone", ["Yes", "n", "TRUE", "0", "Y", "maybe", "", "false"])
    setcol("date_of_birth", ["31/03/1950", "1/2/1950", "1950-02-01T00:00:00", "1950-2-1", "01.02.1950",
                             "31/02/1950", "1950-02-01 10:30", "March 3rd 1950"])
    result = parse(loaded, "scs.csv", ("\n".join(text) + "\n").encode())
    t = result.table
    assert t.column("hours_per_week").to_pylist() == [Decimal("12.5"), Decimal("1250.25"), Decimal("0.5"), Decimal("7"),
                                                      Decimal("15"), None, None, Decimal("0.123457")]
    assert t.column("lives_alone").to_pylist() == [True, False, True, False, True, None, None, False]
    assert t.column("date_of_birth").to_pylist() == [dt.date(1950, 3, 31), dt.date(1950, 2, 1), dt.date(1950, 2, 1),
                                                     dt.date(1950, 2, 1), dt.date(1950, 2, 1), None, None, None]
    bad = sorted((i.item, i.row, i.value) for i in result.issues)
    assert bad == [("date_of_birth", 7, "31/02/1950"), ("date_of_birth", 8, "1950-02-01 10:30"),
                   ("date_of_birth", 9, "March 3rd 1950"), ("hours_per_week", 7, "abc"), ("hours_per_week", 8, "£12"),
                   ("lives_alone", 7, "maybe")]
    time_msg = next(i for i in result.issues if i.value == "1950-02-01 10:30").message
    assert "without a time" in time_msg and "DD/MM/YYYY" in time_msg


def workbook_bytes(header, rows, fmt_dates=True, sheet="episodes") -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(header)
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_excel_dates_serials_and_text_dates_in_a_workbook():
    loaded = SPECS["clas"]
    rows = synth_rows(loaded, 6)
    header = [it.name for it in loaded.items]
    out = []
    for k, row in enumerate(rows):
        vals = [row.get(n) for n in header]
        j = header.index("episode_start_date")
        d = row["episode_start_date"]
        serial = (d - dt.date(1899, 12, 30)).days
        vals[j] = [d, serial, float(serial), d.strftime("%d/%m/%Y"), d.isoformat(), dt.datetime.combine(d, dt.time())][k]
        out.append(vals)
    result = parse(loaded, "clas.xlsx", workbook_bytes(header, out))
    assert result.clean, result.issues
    assert result.table.column("episode_start_date").to_pylist() == [r["episode_start_date"] for r in rows]


def test_excel_serial_in_a_csv_is_not_a_date():
    loaded = any_format(SPECS["clas"])
    rows = synth_rows(loaded, 2)
    text = file_bytes(loaded, rows, "csv").decode()
    text = text.replace(rows[0]["episode_start_date"].isoformat(), "45000", 1)
    result = parse(loaded, "clas.csv", text.encode())
    [found] = result.issues
    assert found.code == "TYPE-001" and found.row == 2 and "Excel number" in found.message


def test_too_many_bad_values_are_summed_up():
    result = parse_submission(TA, "ta.csv", ta_csv(rows=[[COUNCIL, "LA", "x", "4", "7", "0"]] * 30).encode(),
                              limits=Limits(max_cell_issues=5))
    assert len(result.issues) == 6
    assert "25 more values (from row 7)" in result.issues[-1].message


# --------------------------------------------------------------------------------------------
# Identity


def test_other_councils_rows_are_reported_once_per_council():
    rows = [[COUNCIL, "LA", "1", "0", "0", "0"], ["S12000005", "HA", "1", "0", "0", "0"], ["S12000005", "BB", "1", "0", "0", "0"],
            ["XX", "PSL", "1", "0", "0", "0"]]
    result = parse(TA, "ta.csv", ta_csv(rows=rows).encode())
    [found] = result.issues
    assert found.code == "ID-001" and found.row == 3 and found.value == "S12000005"
    assert "2 rows (the first is row 3) name S12000005 (Clackmannanshire)" in found.message
    assert "City of Edinburgh" in found.message


def test_no_council_given_no_council_check():
    rows = [["S12000005", "HA", "1", "0", "0", "0"]]
    assert parse_submission(TA, "ta.csv", ta_csv(rows=rows).encode()).clean


def test_file_for_a_different_return_by_headers():
    fin = any_format(SPECS["la_finance_quarterly"])
    data = file_bytes(fin, synth_rows(fin), "xlsx")
    result = parse(SPECS["clas"], "clas.xlsx", data)
    assert codes(result) == ["ID-002"]
    assert "Local Authority Quarterly Revenue Monitoring" in result.issues[0].message
    assert result.table is None


def test_file_for_a_different_return_by_xml_attribute():
    scs = any_format(SPECS["social_care_survey"])
    other = any_format(SPECS["clas"])
    data = file_bytes(other, synth_rows(other, 3), "xml")
    result = parse(scs, "scs.xml", data)
    assert "ID-002" in codes(result)


# --------------------------------------------------------------------------------------------
# Limits and codes


def test_limits_from_env():
    lim = Limits.from_env({"LGDP_MAX_FILE_MB": "5", "LGDP_MAX_ROWS": "100", "LGDP_PARSE_TIMEOUT_S": "oops",
                           "LGDP_MAX_UNCOMPRESSED_MB": "-1"})
    assert lim.max_file_mb == 5 and lim.max_rows == 100
    assert lim.parse_timeout_s == Limits().parse_timeout_s and lim.max_uncompressed_mb == Limits().max_uncompressed_mb


def test_every_code_is_documented(repo_root):
    doc = (repo_root / "docs" / "files.md").read_text()
    for code, d in CODES.items():
        assert f"`{code}`" in doc, code
        assert d.severity in ("error", "query")


def test_issue_shape():
    result = ta_with("households", ["x"])
    [found] = result.issues
    assert isinstance(found, Issue) and found.as_dict()["row"] == 2


def test_extension_that_does_not_match_the_content_is_a_query():
    loaded = any_format(SPECS["clas"])
    data = file_bytes(loaded, synth_rows(loaded, 3), "xlsx")
    result = parse(loaded, "clas.csv", data)
    assert [(i.code, i.severity) for i in result.issues] == [("FILE-013", "query")]
    assert result.format == "xlsx" and result.rows == 3


def test_integers_with_a_plus_sign_thousands_and_trailing_zero_decimals():
    import pyarrow as pa

    from lgdp.parse.coerce import to_integer

    assert to_integer(pa.array(["+4", "-3", "1,200", "12.0", "x", None])).to_pylist() == [4, -3, 1200, 12, None, None]


# --------------------------------------------------------------------------------------------
# The two workbook readers (columnar fastexcel, cell-by-cell python-calamine) give one result


def _workbook(build) -> bytes:
    from openpyxl.styles import Font

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "episodes"
    build(ws, Font)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _put(ws, top_left: str, rows: list[list]) -> None:
    from openpyxl.utils.cell import coordinate_from_string, column_index_from_string

    col, row = coordinate_from_string(top_left)
    c0 = column_index_from_string(col)
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            if v is not None:
                ws.cell(row=row + i, column=c0 + j, value=v)


D = dt.datetime
AWKWARD_WORKBOOKS = {
    # name: (build, whether the columnar reader is expected to be used)
    "plain": (lambda ws, F: _put(ws, "A1", [["a", "when", "n"], ["x", D(2020, 1, 2), 1], ["y", D(2021, 3, 4), 2.0]]), True),
    "offset with styled empty cells above": (
        lambda ws, F: (setattr(ws["C2"], "font", F(bold=True)),
                       _put(ws, "B3", [["a", "b"], ["x", 1.5], [None, None], ["z", -0.25]])), True),
    "fractions and large numbers": (
        lambda ws, F: _put(ws, "A1", [["n", "m"], [0.30000000000000004, 1e16], [1 / 3, -12345678901234.5], [2.5, 7]]), True),
    "booleans, blanks and spaces": (
        lambda ws, F: _put(ws, "A1", [["flag", "empty", "text"], [True, None, "  padded  "], [False, None, " "],
                                      [None, None, "naïve ✓"]]), True),
    "merged cells and formulas": (
        lambda ws, F: (_put(ws, "A1", [["a", "b", "c"], ["x", 1, "=B2*2"], ["y", 2, "=B3*2"]]), ws.merge_cells("A2:A3")), True),
    "many merged ranges, out of order": (
        lambda ws, F: (_put(ws, "A1", [["a", "b", "c"]] + [[f"x{i}", i, i * 2] for i in range(120)]),
                       [ws.merge_cells(f"B{r}:C{r}") for r in range(120, 2, -2)]), True),
    "text that looks like null": (lambda ws, F: _put(ws, "A1", [["a", "b"], ["NA", "null"], ["N/A", "x"]]), True),
    "dates mixed with text": (lambda ws, F: _put(ws, "A1", [["when"], [D(2020, 1, 2)], ["N/A"], ["31/03/2025"]]), False),
    "numbers mixed with text": (lambda ws, F: _put(ws, "A1", [["n"], [1], ["two"], [3.5]]), False),
    "a time of day": (lambda ws, F: _put(ws, "A1", [["when"], [D(2020, 1, 2, 10, 30)], [D(2020, 1, 3)]]), False),
    "duplicate headers": (lambda ws, F: _put(ws, "A1", [["a", "a", "a_1"], [1, 2, 3]]), False),
    "blank header over data": (lambda ws, F: _put(ws, "A1", [["a", None, "c"], [1, 2, 3]]), False),
    "numeric header": (lambda ws, F: _put(ws, "A1", [["a", 2025], [1, 2]]), False),
    "headers only": (lambda ws, F: _put(ws, "A1", [["a", "b"]]), None),
    "empty sheet": (lambda ws, F: None, None),
    "error cells": (lambda ws, F: _put(ws, "A1", [["a", "b"], ["x", "#N/A"], ["y", 2]]), None),
    "a value beyond the header's width": (lambda ws, F: _put(ws, "A1", [["a"], [1, None, "far"], [2]]), None),
}


@pytest.mark.parametrize("name", sorted(AWKWARD_WORKBOOKS))
def test_columnar_and_cell_by_cell_workbook_readers_agree(name, monkeypatch):
    import time

    from lgdp.parse import readers
    from lgdp.parse.coerce import blank_to_null

    build, columnar = AWKWARD_WORKBOOKS[name]
    data = _workbook(build)
    used: list[bool] = []
    real = readers._columnar_table

    def read(exact: bool):
        def columnar_table(*a, **k):
            out = None if exact else real(*a, **k)
            used.append(out is not None)
            return out

        monkeypatch.setattr(readers, "_columnar_table", columnar_table)
        ctx = readers.Context(Limits(), time.monotonic() + 60, "xlsx", "x@example.org", "episodes")
        try:
            r = readers.read_xlsx(data, ctx, lambda sheets: sheets[0] if sheets else None)
        except readers.Stop as stop:
            return ("stop", stop.issue)
        return (r.headers, [blank_to_null(c).to_pylist() for c in r.columns], r.row_numbers.to_pylist(),
                r.column_letters, r.issues, r.meta)

    fast = read(exact=False)
    fast_used = any(used)
    assert fast == read(exact=True)
    if columnar is not None:
        assert fast_used is columnar


def test_a_sheet_written_with_a_namespace_prefix_reads_the_same():
    """Some tools write <x:row>, <x:c>, <x:f>: the scan finds formulas, merges and rows there too."""
    import re
    import time
    import zipfile

    from lgdp.parse import readers

    build, _ = AWKWARD_WORKBOOKS["merged cells and formulas"]
    src = zipfile.ZipFile(io.BytesIO(_workbook(build)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                body = re.sub(rb"<(/?)([A-Za-z]\w*)([\s/>])", rb"<\1x:\2\3", body)
                body = body.replace(b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"',
                                    b'xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"')
            dst.writestr(info, body)
    ctx = readers.Context(Limits(), time.monotonic() + 60, "xlsx", "x@example.org", "episodes")
    raw = readers.read_xlsx(out.getvalue(), ctx, lambda sheets: sheets[0])
    assert [(i.code, i.row) for i in raw.issues] == [("CELL-002", 2), ("CELL-001", 2), ("CELL-001", 3)]
    assert raw.row_numbers.to_pylist() == [2, 3] and raw.headers == ["a", "b", "c"]

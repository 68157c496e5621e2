"""A corpus of hostile and broken files, generated here: each ends in a catalogued issue with a
message a council officer can act on, quickly, and without an exception escaping."""

from __future__ import annotations

import dataclasses
import io
import random
import re
import struct
import time
import zipfile
from typing import Callable

import openpyxl
import pytest

from lgdp import synth
from lgdp.parse import CODES, Limits, parse_submission
from lgdp.specs.load import load_register

COUNCIL = "S12000036"
REG = load_register()
SPECS = {s.id: s for s in REG.specs}
CLAS = SPECS["clas"]
TA = SPECS["temporary_accommodation_monthly"]
SCS = SPECS["social_care_survey"]

# Words that must never reach a council officer: Python, library and parser jargon.
JARGON = re.compile(
    r"Traceback|Exception|Error\b|errno|\bNone\b|\bbytes\b|\bstr\b|\bint\b|pyarrow|arrow|calamine|openpyxl|xmlschema|"
    r"defused|zipfile|BadZip|codec|utf-8 codec|0x[0-9a-f]{2}|\{|\}|\\x", re.I)


def clas_rows(n=20, seed=1):
    return synth.rows(CLAS, COUNCIL, "2025-26", n, seed=seed).rows


def clas_xlsx(rows=None) -> bytes:
    buf = io.BytesIO()
    synth.write_rows(CLAS, rows if rows is not None else clas_rows(), "xlsx", buf, COUNCIL, "2025-26")
    return buf.getvalue()


def scs_xml(rows=None) -> str:
    buf = io.StringIO()
    rows = rows if rows is not None else synth.rows(SCS, COUNCIL, "2025-26", 5, seed=1).rows
    synth.write_rows(SCS, rows, "xml", buf, COUNCIL, "2025-26")
    return buf.getvalue()


def ta_csv_text(council=COUNCIL) -> str:
    buf = io.StringIO()
    rows = synth.rows(TA, council, "2025-07", None, seed=1).rows
    synth.write_rows(TA, rows, "csv", buf, council, "2025-07")
    return buf.getvalue()


def rezip(data: bytes, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None, level=6) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as dst:
        for info in src.infolist():
            body = (replace or {}).get(info.filename, src.read(info.filename))
            dst.writestr(info.filename, body)
        for name, body in (add or {}).items():
            dst.writestr(name, body)
    return out.getvalue()


def ole2(streams: list[str]) -> bytes:
    """A minimal compound-file header with directory names (enough for detection)."""
    head = bytes.fromhex("d0cf11e0a1b11ae1") + b"\x00" * 16 + struct.pack("<HH", 0x3E, 3) + b"\x00" * 478
    body = b"".join(name.encode("utf-16-le").ljust(64, b"\x00") for name in streams)
    return head + body + b"\x00" * 1024


def openpyxl_book(fill: Callable) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "episodes"
    ws.append([it.name for it in CLAS.items])
    for row in clas_rows(5):
        ws.append([row.get(it.name) for it in CLAS.items])
    fill(ws)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def bomb(limit_ratio=True) -> bytes:
    """A valid workbook whose sheet part expands enormously (zeros compress ~1000:1)."""
    base = clas_xlsx(clas_rows(3))
    name = next(n for n in zipfile.ZipFile(io.BytesIO(base)).namelist() if n.startswith("xl/worksheets/sheet"))
    huge = b"<worksheet>" + b" " * (60_000_000 if limit_ratio else 30_000_000) + b"</worksheet>"
    return rezip(base, replace={name: huge}, level=9)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<services><record><client_id>&lol9;</client_id></record></services>
"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE services [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<services return="social_care_survey"><record><client_id>&xxe;</client_id></record></services>
"""


def with_cell(ws_fill):
    """A factory for a small CLAS workbook changed by ``ws_fill(worksheet)``."""
    return lambda: openpyxl_book(ws_fill)


def _formula(ws):
    ws["L3"] = "=1+1"
    ws["L4"] = "=SUM(L2:L3)"


def _merge(ws):
    ws.merge_cells("E3:F3")


def _duplicate_headers():
    text = ta_csv_text().splitlines()
    text[0] = text[0].replace("children,uao_breaches", "Children,uao_breaches").replace("households,", "households,households,", 1)
    out = [text[0]] + [line.replace(",", ",0,", 2).replace(",0,", ",", 1) for line in text[1:]]
    return ("\n".join(out) + "\n").encode()


def _headers_only_xlsx():
    return clas_xlsx([])


def _dates_as_text():
    return openpyxl_book(lambda ws: ws.__setitem__("H3", "3rd March 2020"))


def _serials_in_csv():
    loaded = dataclasses.replace(CLAS, spec=CLAS.spec.model_copy(update={"formats": ["csv"]}))
    rows = clas_rows(3)
    buf = io.StringIO()
    synth.write_rows(loaded, rows, "csv", buf, COUNCIL, "2025-26")
    return buf.getvalue().replace(rows[1]["episode_start_date"].isoformat(), "44927").encode(), loaded


def _slow_csv():
    text = ta_csv_text()
    head, *body = text.splitlines()
    return ("\n".join([head] + (body + [""]) * 40_000) + "\n").encode()


CLAS_CSV = dataclasses.replace(CLAS, spec=CLAS.spec.model_copy(update={"formats": ["csv"]}))

# name -> (spec, filename, bytes factory, expected code, readable?, limits or None, council)
CASES: dict[str, tuple] = {
    "corrupt zip (truncated workbook)": (CLAS, "clas.xlsx", lambda: clas_xlsx()[:3000], "FILE-001", False),
    "zip header then garbage": (CLAS, "clas.xlsx", lambda: b"PK\x03\x04" + random.Random(1).randbytes(5000), "FILE-001", False),
    "password-protected workbook": (CLAS, "clas.xlsx", lambda: ole2(["Root Entry", "EncryptionInfo", "EncryptedPackage"]), "FILE-004", False),
    "old .xls workbook": (CLAS, "clas.xls", lambda: ole2(["Root Entry", "Workbook", "SummaryInformation"]), "FILE-012", False),
    "macro-enabled xlsm": (CLAS, "clas.xlsm", lambda: rezip(clas_xlsx(), add={"xl/vbaProject.bin": b"\x00" * 512}), "FILE-003", False),
    "macro content type only": (CLAS, "clas.xlsx", lambda: rezip(clas_xlsx(), replace={"[Content_Types].xml": zipfile.ZipFile(io.BytesIO(clas_xlsx())).read("[Content_Types].xml").replace(b"sheet.main+xml", b"sheet.macroEnabled.main+xml")}), "FILE-003", False),
    "zip bomb (expansion ratio)": (CLAS, "clas.xlsx", bomb, "FILE-005", False),
    "zip bomb (total size)": (CLAS, "clas.xlsx", lambda: bomb(False), "FILE-005", False, Limits(max_uncompressed_mb=10, max_compression_ratio=1e9)),
    "XML billion laughs": (SCS, "scs.xml", lambda: BILLION_LAUGHS.encode(), "FILE-007", False),
    "XML external entity": (SCS, "scs.xml", lambda: XXE.encode(), "FILE-007", False),
    "file over the size limit": (TA, "ta.csv", lambda: ta_csv_text().encode() + b"," * 51_000_000, "FILE-002", False),
    "empty file": (CLAS, "clas.xlsx", lambda: b"", "FILE-006", False),
    "only whitespace": (TA, "ta.csv", lambda: b"  \r\n\r\n  ", "FILE-006", False),
    "headers only (csv)": (TA, "ta.csv", lambda: ta_csv_text().splitlines()[0].encode() + b"\r\n", "HDR-004", True),
    "headers only (xlsx)": (CLAS, "clas.xlsx", _headers_only_xlsx, "HDR-004", True),
    "no records (xml)": (SCS, "scs.xml", lambda: scs_xml([]).encode(), "HDR-004", True),
    "duplicate headers": (TA, "ta.csv", _duplicate_headers, "HDR-003", True),
    "merged cells": (CLAS, "clas.xlsx", with_cell(_merge), "CELL-002", True),
    "formulas": (CLAS, "clas.xlsx", with_cell(_formula), "CELL-001", True),
    "dates as free text": (CLAS, "clas.xlsx", _dates_as_text, "TYPE-001", True),
    "dates as Excel serials in a CSV": (CLAS_CSV, "clas.csv", lambda: _serials_in_csv()[0], "TYPE-001", True),
    "a word in a number column (xlsx)": (CLAS, "clas.xlsx", with_cell(lambda ws: ws.__setitem__("K5", "three")), "TYPE-001", True),
    "text 'N/A' in a date column (xlsx)": (CLAS, "clas.xlsx", with_cell(lambda ws: ws.__setitem__("H6", "N/A")), "TYPE-001", True),
    "a time of day in a date": (CLAS, "clas.xlsx", with_cell(lambda ws: ws.__setitem__("H4", __import__("datetime").datetime(2020, 3, 1, 14, 30))), "TYPE-001", True),
    "wrong encoding (UTF-16 without BOM)": (TA, "ta.csv", lambda: ta_csv_text().encode("utf-16-le"), "FILE-011", False),
    "neither UTF-8 nor Windows-1252": (TA, "ta.csv", lambda: ta_csv_text().encode() + b"\x81\x8d\x8f\x90\x9d\n", "FILE-011", False),
    "file named ../../x.csv": (TA, "../../x.csv", lambda: ta_csv_text().encode(), "FILE-010", False),
    "file name with a control character": (TA, "x\x00.csv", lambda: ta_csv_text().encode(), "FILE-010", False),
    "another council's file in this folder": (TA, "ta.csv", lambda: ta_csv_text("S12000005").encode(), "ID-001", True),
    "file for a different return": (TA, "ta.csv", lambda: _other_return_csv(), "ID-002", True),
    "PDF named .xlsx": (CLAS, "clas.xlsx", lambda: b"%PDF-1.7\n" + b"0" * 500, "FILE-008", False),
    "web page named .csv": (TA, "ta.csv", lambda: b"<!DOCTYPE html><html><body>Sign in</body></html>", "FILE-008", False),
    "Word document named .xlsx": (CLAS, "clas.xlsx", lambda: _word_doc(), "FILE-008", False),
    "CSV sent for an Excel-only return": (CLAS, "clas.csv", lambda: ta_csv_text().encode(), "FILE-008", False),
    "XML not well-formed": (SCS, "scs.xml", lambda: scs_xml().replace("</record>", "", 1).encode(), "FILE-001", False),
    "XML with an element not in the schema": (SCS, "scs.xml", lambda: scs_xml().replace("<record>", "<record><favourite_colour>blue</favourite_colour>", 1).encode(), "XSD-001", True),
    "ragged CSV row": (TA, "ta.csv", lambda: (ta_csv_text() + f"{COUNCIL},LA,1,0,0,0,oops,more\n").encode(), "ROW-002", True),
    "too many rows": (TA, "ta.csv", lambda: ta_csv_text().encode(), "ROW-001", False, Limits(max_rows=3)),
    "too many rows (xlsx)": (CLAS, "clas.xlsx", lambda: clas_xlsx(), "ROW-001", False, Limits(max_rows=5)),
    "took too long to read": (TA, "ta.csv", _slow_csv, "FILE-009", False, Limits(parse_timeout_s=0.05)),
    "missing required column": (TA, "ta.csv", lambda: "\n".join(",".join(line.split(",")[:-1]) for line in ta_csv_text().splitlines()).encode(), "HDR-001", True),
    "values under a blank heading": (TA, "ta.csv", lambda: "\n".join(line + ("," if i == 0 else ",note") for i, line in enumerate(ta_csv_text().splitlines())).encode(), "HDR-005", True),
    "only a guidance sheet": (CLAS, "clas.xlsx", with_cell(lambda ws: setattr(ws, "title", "Guidance")), "FILE-014", False),
}


def _other_return_csv() -> bytes:
    fin = dataclasses.replace(SPECS["la_finance_quarterly"], spec=SPECS["la_finance_quarterly"].spec.model_copy(update={"formats": ["csv"]}))
    buf = io.StringIO()
    synth.write_rows(fin, synth.rows(fin, COUNCIL, "2025-26-Q1", None, seed=1).rows, "csv", buf, COUNCIL, "2025-26-Q1")
    return buf.getvalue().encode()


def _word_doc() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<document/>")
    return out.getvalue()


def test_corpus_is_big_enough():
    assert len(CASES) >= 22


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_file(name):
    spec, filename, make, code, readable, *rest = CASES[name]
    limits = rest[0] if rest else None
    data = make()
    started = time.monotonic()
    result = parse_submission(spec, filename, data, council_code=COUNCIL, limits=limits)
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"{name} took {elapsed:.1f} s"
    found = [i.code for i in result.issues]
    assert code in found, f"{name}: expected {code}, got {result.issues}"
    assert result.readable is readable, result.issues
    if not readable:
        assert result.table is None
    for i in result.issues:
        assert i.code in CODES
        assert i.severity == CODES[i.code].severity
        assert not JARGON.search(i.message), f"{name}: jargon in {i.message!r}"
        assert len(i.message) > 30 and (i.message[0].isupper() or i.message[0] in "'0123456789")
    main = next(i for i in result.issues if i.code == code)
    assert main.severity == "error"


def test_mutated_workbooks_never_raise():
    """Random damage to a valid workbook: always a result, never an exception."""
    base = clas_xlsx(clas_rows(10))
    rnd = random.Random(42)
    for _ in range(40):
        data = bytearray(base)
        for _ in range(rnd.randint(1, 20)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        result = parse_submission(CLAS, "clas.xlsx", bytes(data), council_code=COUNCIL)
        assert result.readable or result.issues


def test_mutated_xml_and_csv_never_raise():
    rnd = random.Random(7)
    for spec, name, base in ((SCS, "scs.xml", scs_xml().encode()), (TA, "ta.csv", ta_csv_text().encode())):
        for _ in range(40):
            data = bytearray(base)
            for _ in range(rnd.randint(1, 10)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
            result = parse_submission(spec, name, bytes(data), council_code=COUNCIL)
            assert result.readable or result.issues
            assert all(i.code in CODES or i.code.startswith("ID") for i in result.issues)


def test_the_file_name_is_never_opened(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("not this one")
    result = parse_submission(TA, "x.csv", ta_csv_text().encode(), council_code=COUNCIL)
    assert result.clean

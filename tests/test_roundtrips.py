"""What councils and requesters actually open: spreadsheet round trips that lose nothing.

Each trap is reproduced through a real spreadsheet application: LibreOffice Calc, headless
(``soffice``, Debian's ``libreoffice-calc-nogui``, installed by ``make install``). Typing is
LibreOffice's own: a Basic macro in a private profile selects each cell and sends it the text
through ``.uno:EnterString``, the command the keyboard's Enter runs, so a cell's number format
decides what becomes of ``021144581`` exactly as it does for an officer at the keyboard (the
other cells of a data file are pre-filled, as pasted from the council's own system; only the
cells that matter are typed). Files are
re-saved through LibreOffice's filters (xlsx, ods, xls) and rendered to PDF (checked with
poppler's ``pdftotext``). Each test run uses its own LibreOffice profile, so parallel runs do
not collide. PostgreSQL is the real test ledger (``tests/conftest.py``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
EDINBURGH, GLASGOW = "S12000036", "S12000049"
XLSX_FILTER = "Calc MS Excel 2007 XML"
FILTERS = {"xlsx": XLSX_FILTER, "ods": "calc8", "xls": "MS Excel 97"}

MACRO = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE script:module PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "module.dtd">
<script:module xmlns:script="http://openoffice.org/2000/script" script:name="Module1" script:language="StarBasic">
Sub TypeCells(job As String)
  Dim n As Integer, ln As String, src As String, dst As String, filt As String
  Dim args(0) As New com.sun.star.beans.PropertyValue
  Dim a(0) As New com.sun.star.beans.PropertyValue
  Dim sargs(1) As New com.sun.star.beans.PropertyValue
  On Error GoTo Failed
  n = FreeFile
  Open job For Input As #n
  Line Input #n, src
  Line Input #n, dst
  Line Input #n, filt
  args(0).Name = &quot;Hidden&quot;
  args(0).Value = True
  doc = StarDesktop.loadComponentFromURL(ConvertToURL(src), &quot;_blank&quot;, 0, args())
  ctrl = doc.getCurrentController()
  helper = createUnoService(&quot;com.sun.star.frame.DispatchHelper&quot;)
  Do While Not EOF(n)
    Line Input #n, ln
    If ln &lt;&gt; &quot;&quot; Then
      parts = Split(ln, Chr(9))
      sh = doc.Sheets.getByName(parts(0))
      ctrl.setActiveSheet(sh)
      ctrl.select(sh.getCellRangeByName(parts(1)))
      a(0).Name = &quot;StringName&quot;
      a(0).Value = parts(2)
      helper.executeDispatch(ctrl.getFrame(), &quot;.uno:EnterString&quot;, &quot;&quot;, 0, a())
    End If
  Loop
  Close #n
  doc.calculateAll()
  sargs(0).Name = &quot;FilterName&quot;
  sargs(0).Value = filt
  sargs(1).Name = &quot;Overwrite&quot;
  sargs(1).Value = True
  doc.storeToURL(ConvertToURL(dst), sargs())
  m = FreeFile
  Open dst &amp; &quot;.done&quot; For Output As #m
  Print #m, &quot;stored&quot;
  Close #m
  Wait 300
  doc.close(True)
  Exit Sub
Failed:
  m = FreeFile
  Open dst &amp; &quot;.error&quot; For Output As #m
  Print #m, &quot;Error &quot; &amp; Err &amp; &quot; at line &quot; &amp; Erl &amp; &quot;: &quot; &amp; Error$
  Close #m
End Sub
</script:module>
"""


class LibreOffice:
    """``soffice --headless`` with a profile of its own (``-env:UserInstallation``)."""

    def __init__(self, profile: Path, work: Path) -> None:
        self.exe = shutil.which("soffice") or "/usr/bin/soffice"
        self.profile = profile
        self.work = work
        self._run("--terminate_after_init")
        module = profile / "user" / "basic" / "Standard" / "Module1.xba"
        assert module.exists(), "LibreOffice did not create its profile"
        module.write_text(MACRO)
        # No autocomplete, autosave, recovery or spell checking: nothing runs in the background
        # while the macro types (typing is EnterString's, not the keyboard's, either way).
        settings = profile / "user" / "registrymodifications.xcu"
        xcu = settings.read_text(encoding="utf-8")
        items = "".join(
            f'<item oor:path="{path}"><prop oor:name="{name}" oor:op="fuse"><value>false</value></prop></item>'
            for path, name in (
                ("/org.openoffice.Office.Calc/Input", "AutoInput"),
                ("/org.openoffice.Office.Recovery/AutoSave", "Enabled"),
                ("/org.openoffice.Office.Recovery/RecoveryInfo", "Enabled"),
                ("/org.openoffice.Office.Linguistic/SpellChecking", "IsSpellAuto"),
            )
        )
        settings.write_text(xcu.replace("</oor:items>", items + "</oor:items>"), encoding="utf-8")
        self._n = 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """One soffice run. LibreOffice 7.4 headless now and then aborts in a timer (signal 6,
        ``SvpSalInstance::CheckTimeout``) on a busy machine; the run is repeated then (it is
        idempotent: the input is untouched and the output overwritten)."""
        for attempt in range(3):
            done = subprocess.run(
                [self.exe, f"-env:UserInstallation={self.profile.as_uri()}", "--headless", "--norestore", *args],
                capture_output=True, timeout=180,
            )
            if done.returncode == 0 or not check:
                break
        if check:
            done.check_returncode()
        return done

    def _file(self, data: bytes, ext: str) -> Path:
        self._n += 1
        path = self.work / f"in{self._n}.{ext}"
        path.write_bytes(data)
        return path

    def convert(self, data: bytes, ext: str, to: str) -> bytes:
        """``data`` (a file of type ``ext``) opened and saved as ``to`` (pdf, ods, xls, xlsx, csv...)."""
        src = self._file(data, ext)
        out = self.work / f"out{self._n}"
        self._run("--convert-to", to, "--outdir", str(out), str(src))
        [made] = list(out.iterdir())
        return made.read_bytes()

    def type_into(self, data: bytes, ext: str, cells: list[tuple[str, str, str]], save_as: str = "xlsx") -> bytes:
        """Open ``data``, type each ``(sheet, cell, text)`` as an officer would, save as ``save_as``."""
        src = self._file(data, ext)
        dst = self.work / f"typed{self._n}.{save_as}"
        job = self.work / f"job{self._n}.txt"
        lines = [str(src), str(dst), FILTERS[save_as]] + ["\t".join(c) for c in cells]
        assert not any("\n" in line for line in lines)
        job.write_text("\n".join(lines) + "\n", encoding="utf-8")
        stored = Path(str(dst) + ".done")  # written by the macro once the file is saved
        for attempt in range(3):
            done = self._run(f'macro:///Standard.Module1.TypeCells("{job}")', check=False)
            if stored.exists():
                break  # saved: an abort while LibreOffice shuts down afterwards does not matter
        error = Path(str(dst) + ".error")
        assert not error.exists(), error.read_text() if error.exists() else ""
        assert stored.exists(), done.stderr.decode(errors="replace")[-2000:]
        return dst.read_bytes()


@pytest.fixture(scope="module")
def calc(tmp_path_factory) -> LibreOffice:
    return LibreOffice(tmp_path_factory.mktemp("lo-profile"), tmp_path_factory.mktemp("lo-work"))


@pytest.fixture
def specs(tmp_path, monkeypatch):
    """CLAS for Edinburgh and Glasgow, its current period open for 500 days (deliveries are built
    for requesters defined in the test, to a local folder)."""
    folder = tmp_path / "specs"
    shutil.copytree(ROOT / "return_specs" / "shared", folder / "shared")
    text_ = (ROOT / "tests" / "specs_one_table" / "clas.yaml").read_text()
    text_ = text_.replace("providers: all", f"providers: [{EDINBURGH}, {GLASGOW}]")
    text_ = re.sub(r"closes_days_after_opening: \d+", "closes_days_after_opening: 500", text_)
    text_ = text_[: text_.index("\ndistribution:")] + "\n"
    (folder / "clas.yaml").write_text(text_)
    monkeypatch.setenv("LGDP_SPECS_DIR", str(folder))
    monkeypatch.setenv("LGDP_DELIVERY_DIR", str(tmp_path / "deliveries"))
    return folder


def _clas():
    from lgdp.specs.load import load_register

    return load_register().get("clas")


def _open_current(loaded) -> str:
    from lgdp.ledger.db import session
    from lgdp.ledger.register import open_period
    from lgdp.periods import period_opening_at

    period = period_opening_at(loaded.spec.collection, dt.datetime.now(dt.timezone.utc))
    with session() as s, s.begin():
        open_period(s, loaded, period)
    return period.label


def _ref(name: str, etag: str = "1", item: str | None = None) -> dict:
    return {"id": item or f"item-{name}-{etag}", "name": name, "etag": etag, "last_modified": None, "last_modified_by": None}


def _rows(loaded, council: str, label: str, n: int = 5, seed: int = 1) -> list[dict]:
    from lgdp.synth import rows as synth_rows

    return synth_rows(loaded, council, label, n, seed=seed).rows


def _xlsx(loaded, rows: list[dict], council: str, label: str) -> bytes:
    from lgdp.synth import write_rows

    class Keep(io.BytesIO):
        def close(self) -> None:
            pass

    buf = Keep()
    write_rows(loaded, rows, "xlsx", buf, council, label)
    return buf.getvalue()


def _prefill(loaded, workbook: bytes, rows: list[dict], typed: dict[tuple[int, str], str]) -> tuple[bytes, list[tuple[str, str, str]]]:
    """(the workbook with ``rows`` already in it, as pasted from the council's own system, the
    cells ``typed`` that the officer then types in Calc). Only the cells that matter are typed:
    every LibreOffice run is a few seconds, and short runs keep it steady on a busy machine."""
    from openpyxl import load_workbook
    from openpyxl.utils import get_column_letter

    sheet = loaded.spec.dataset
    wb = load_workbook(io.BytesIO(workbook))
    ws = wb[sheet]
    cells = []
    for r, row in enumerate(rows, start=2):
        for j, it in enumerate(loaded.items, start=1):
            ref = f"{get_column_letter(j)}{r}"
            if (r, it.name) in typed:
                cells.append((sheet, ref, typed[(r, it.name)]))
            elif row.get(it.name) is not None:
                ws[ref] = row[it.name]
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue(), cells


def _typing(loaded, workbook: bytes, rows: list[dict], typed: dict[tuple[int, str], str]) -> tuple[bytes, str, list]:
    data, cells = _prefill(loaded, workbook, rows, typed)
    return data, "xlsx", cells


def _versions(council: str) -> list[tuple]:
    from lgdp.ledger.db import engine

    with engine().connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT v.version, v.status::text FROM lgdp.submission_versions v "
                    "JOIN lgdp.expected_submissions e ON e.id = v.submission_id WHERE e.council_code = :c ORDER BY v.version"
                ),
                {"c": council},
            )
        ]


def _submission_status(council: str) -> str:
    from lgdp.ledger.db import engine

    with engine().connect() as conn:
        return conn.execute(
            text("SELECT status::text FROM lgdp.expected_submissions WHERE council_code = :c"), {"c": council}
        ).scalar_one()


# ---------------------------------------------------------------------------------------------
# Leading zeros


def test_template_text_and_code_columns_are_text_and_stay_text_through_libreoffice(specs, calc):
    from openpyxl import load_workbook

    from lgdp.collect.template import template_files
    from lgdp.specs.model import ItemType

    loaded = _clas()
    [(name, data)] = template_files(loaded, "2025-26", "31 July 2026").items()
    resaved = calc.convert(data, "xlsx", "xlsx")  # opened and saved again by LibreOffice
    for wb in (load_workbook(io.BytesIO(data)), load_workbook(io.BytesIO(resaved))):
        ws = wb[loaded.spec.dataset]
        formats = {}  # column number -> number format (LibreOffice groups equal neighbours: min..max)
        for dim in ws.column_dimensions.values():
            for j in range(dim.min or 0, (dim.max or 0) + 1):
                formats[j] = dim.number_format
        for j, it in enumerate(loaded.items, start=1):
            if it.type in (ItemType.string, ItemType.code):
                assert formats.get(j) == "@", (it.name, formats.get(j))


def test_a_scn_typed_into_the_template_keeps_its_leading_zero_and_a_general_cell_gets_a_message_that_says_why(
    specs, calc, clean_ledger
):
    from openpyxl import load_workbook

    from lgdp.collect.process import process_file
    from lgdp.collect.template import template_files

    loaded = _clas()
    label = _open_current(loaded)
    rows = _rows(loaded, EDINBURGH, label, 3)
    [template] = template_files(loaded, label, "31 July 2026").values()
    sheet = loaded.spec.dataset
    typed = {(2, "scn"): "021144581"}

    # The template as sent: the SCN column is Text, so what the officer types is kept.
    filled = calc.type_into(*_typing(loaded, template, rows, typed))
    assert load_workbook(io.BytesIO(filled))[sheet]["C2"].value == "021144581"
    outcome = process_file(loaded, label, EDINBURGH, _ref("clas.xlsx"), filled)
    assert outcome.status == "accepted", [i.message for i in outcome.issues]
    from lgdp.ledger.db import engine

    with engine().connect() as conn:
        assert "021144581" in [r[0] for r in conn.execute(text('SELECT scn FROM lgdp_staging.clas'))]

    # A workbook whose columns are General (an old template, or the officer's own sheet): Calc makes
    # the SCN the number 21144581, and the pattern check says a leading zero was probably lost.
    wb = load_workbook(io.BytesIO(template))
    for dim in wb[sheet].column_dimensions.values():
        dim.number_format = "General"
    plain = io.BytesIO()
    wb.save(plain)
    rows = _rows(loaded, GLASGOW, label, 3)  # (Edinburgh's return is accepted: another council's file)
    general = calc.type_into(*_typing(loaded, plain.getvalue(), rows, typed))
    assert load_workbook(io.BytesIO(general))[sheet]["C2"].value == 21144581
    outcome = process_file(loaded, label, GLASGOW, _ref("clas.xlsx", "2"), general)
    [fmt] = [i for i in outcome.issues if i.code == "FMT-scn"]
    assert fmt.row == 2 and "'21144581'" in fmt.message
    assert "a leading zero was probably lost" in fmt.message and "Format the column as Text" in fmt.message


def test_the_leading_zero_note_is_only_for_a_value_one_digit_short_of_an_all_digit_pattern(specs):
    from lgdp.validate.checks import check_by_code, leading_zero_note

    by_code = check_by_code(_clas())
    scn, child = by_code["FMT-scn"], by_code["FMT-child_id"]
    assert leading_zero_note(scn, "21144581")
    assert not leading_zero_note(scn, "2114458")  # two digits short: not a lost zero
    assert not leading_zero_note(scn, "A1144581")
    assert not leading_zero_note(child, "1234")  # matches already: no such failure
    assert not leading_zero_note(by_code["REQ-child_id"], "21144581")


# ---------------------------------------------------------------------------------------------
# Every issue in one round


def test_two_formula_cells_do_not_hide_the_rule_errors_and_queries_of_the_same_file(specs, calc, clean_ledger):
    from lgdp.collect.process import process_file
    from lgdp.collect.template import template_files

    loaded = _clas()
    label = _open_current(loaded)
    rows = _rows(loaded, EDINBURGH, label, 5)
    rows[2].update(legal_reason="PO", placement_type="HOME")  # row 4: CLAS-Q002 (a query)
    rows[3].update(reason_ceased=None)  # row 5: an end date with no reason, CLAS-E004 (an error)
    if rows[3].get("episode_end_date") is None:
        rows[3]["episode_end_date"] = rows[3]["episode_start_date"] + dt.timedelta(days=30)
    [template] = template_files(loaded, label, "31 July 2026").values()
    formulas = {(2, "number_of_placements"): "=1+1", (3, "number_of_placements"): "=2*1"}
    filled = calc.type_into(*_typing(loaded, template, rows, formulas))

    outcome = process_file(loaded, label, EDINBURGH, _ref("clas.xlsx"), filled)
    codes = sorted((i.code, i.row) for i in outcome.issues)
    assert ("CELL-001", 2) in codes and ("CELL-001", 3) in codes
    assert ("CLAS-Q002", 4) in codes and ("CLAS-E004", 5) in codes, codes
    assert outcome.status == "rejected" and outcome.queries >= 1


# ---------------------------------------------------------------------------------------------
# The feedback workbook


def _queried_version(loaded, label: str):
    """Edinburgh's version 1 with one query (CLAS-Q002 on row 2), through the collection step."""
    from lgdp.collect.process import process_file

    rows = _rows(loaded, EDINBURGH, label, 4)
    rows[0].update(legal_reason="PO", placement_type="HOME")
    outcome = process_file(loaded, label, EDINBURGH, _ref("clas.xlsx"), _xlsx(loaded, rows, EDINBURGH, label))
    assert outcome.status == "queries" and [i.code for i in outcome.issues] == ["CLAS-Q002"], outcome.issues
    return outcome


def _feedback(loaded, label: str, version_id: int) -> bytes:
    from lgdp.collect.feedback import build_workbook
    from lgdp.collect.respond import version_feedback

    meta, issues, _ = version_feedback(loaded, label, EDINBURGH, version_id)
    return build_workbook(meta, issues)


@pytest.mark.parametrize("fmt", ["ods", "xls"])
def test_a_feedback_workbook_saved_as_ods_or_xls_is_answered_and_changes_nothing(specs, calc, clean_ledger, fmt):
    from lgdp.collect.process import process_upload

    loaded = _clas()
    label = _open_current(loaded)
    first = _queried_version(loaded, label)
    workbook = _feedback(loaded, label, first.version_id)
    explain = [("Issues", "G2", "Placed at home under a Permanence Order, as the court allowed.")]

    other = calc.type_into(workbook, "xlsx", explain, save_as=fmt)
    outcome = process_upload(loaded, label, EDINBURGH, _ref(f"feedback_v1.{fmt}", item="fb"), other)
    assert outcome.kind == "explanations" and outcome.status == "queries"
    assert "save as" in outcome.note.lower() and ".xlsx" in outcome.note and "Nothing has changed" in outcome.note
    assert _versions(EDINBURGH) == [(1, "queries")]  # no data version made of it
    assert _submission_status(EDINBURGH) == "queries"
    # Under a name of its own, it is still recognised by its hidden sheet.
    again = process_upload(loaded, label, EDINBURGH, _ref(f"our answers.{fmt}", item="fb2"), other)
    assert again.kind == "explanations" and _versions(EDINBURGH) == [(1, "queries")]

    # Saved as .xlsx (by LibreOffice too), the same explanations are taken, not refused as stale.
    xlsx = calc.type_into(workbook, "xlsx", explain, save_as="xlsx")
    done = process_upload(loaded, label, EDINBURGH, _ref("feedback_v1.xlsx", item="fb3"), xlsx)
    assert done.kind == "explanations" and done.status == "accepted", done.note
    assert _versions(EDINBURGH) == [(1, "accepted")] and _submission_status(EDINBURGH) == "accepted"


def test_a_formula_typed_as_an_explanation_is_not_an_explanation_and_its_row_is_named(specs, calc):
    from openpyxl import load_workbook

    from lgdp.collect.feedback import FeedbackIssue, FeedbackMeta, build_workbook, read_returned

    meta = FeedbackMeta("clas", "CLAS", "2025-26", EDINBURGH, "City of Edinburgh", 1, 7, "clas.xlsx", "queries")
    issues = [
        FeedbackIssue("CLAS-Q002", "query", "Permanence Order at home.", 4, "legal_reason, placement_type", None),
        FeedbackIssue("CLAS-Q001", "query", "Reason without end date.", 6, "episode_end_date, reason_ceased", None),
    ]
    workbook = build_workbook(meta, issues)
    answer = "=see email of 3 May"

    # In the workbook as sent, the Explanation column is Text: what is typed stays the officer's text.
    typed = calc.type_into(workbook, "xlsx", [("Issues", "G2", answer), ("Issues", "G3", "Court order.")])
    assert read_returned(typed).explanations == {
        ("CLAS-Q002", 4, "legal_reason, placement_type"): answer,
        ("CLAS-Q001", 6, "episode_end_date, reason_ceased"): "Court order.",
    }

    # In a General cell (a workbook from before, or a cell reformatted), Calc makes it a formula
    # and stores an error value: that is not an explanation, and the council is told which row.
    wb = load_workbook(io.BytesIO(workbook))
    wb["Issues"].column_dimensions["G"].number_format = "General"
    for row in wb["Issues"].iter_rows(min_row=2):
        row[6].number_format = "General"
    plain = io.BytesIO()
    wb.save(plain)
    typed = calc.type_into(plain.getvalue(), "xlsx", [("Issues", "G2", answer), ("Issues", "G3", "Court order.")])
    back = read_returned(typed)
    assert back.explanations == {("CLAS-Q001", 6, "episode_end_date, reason_ceased"): "Court order."}
    assert back.retype == [(2, 4, "legal_reason, placement_type")]
    assert "row 2 (your file's row 4, legal_reason, placement_type)" in back.retype_note
    assert "formula or an error value" in back.retype_note and "plain text" in back.retype_note
    # The same cell saved as .ods and back keeps only the error value: still not an explanation.
    via_ods = calc.convert(calc.convert(typed, "xlsx", "ods"), "ods", "xlsx")
    assert read_returned(via_ods).retype == [(2, 4, "legal_reason, placement_type")]


def _pdf_lines(pdf: bytes, tmp: Path) -> list[list[dict]]:
    """Per page, each text line's box and words (``pdftotext -bbox-layout``)."""
    src = tmp / "feedback.pdf"
    src.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-bbox-layout", str(src), "-"], capture_output=True, check=True, timeout=60).stdout
    ns = {"x": "http://www.w3.org/1999/xhtml"}
    root = ET.fromstring(out)
    pages = []
    for page in root.iter("{http://www.w3.org/1999/xhtml}page"):
        lines = []
        for line in page.iter("{http://www.w3.org/1999/xhtml}line"):
            words = [w.text or "" for w in line.findall("x:word", ns)]
            box = {k: float(line.get(k)) for k in ("xMin", "yMin", "xMax", "yMax")}
            word_boxes = [{k: float(w.get(k)) for k in ("xMin", "yMin", "xMax", "yMax")} for w in line.findall("x:word", ns)]
            lines.append({**box, "text": " ".join(words), "words": word_boxes})
        pages.append(lines)
    return pages


def _overlapping(lines: list[dict]) -> list[tuple[str, str]]:
    """Pairs of lines printed over each other: their boxes share area (beyond rounding)."""
    found = []
    for i, a in enumerate(lines):
        for b in lines[i + 1 :]:
            for wa in a["words"]:
                for wb in b["words"]:
                    dx = min(wa["xMax"], wb["xMax"]) - max(wa["xMin"], wb["xMin"])
                    dy = min(wa["yMax"], wb["yMax"]) - max(wa["yMin"], wb["yMin"])
                    if dx > 1 and dy > 2:
                        found.append((a["text"], b["text"]))
    return found


def test_the_feedback_workbook_prints_readably_from_libreoffice(calc, tmp_path):
    from lgdp.collect.feedback import FeedbackIssue, FeedbackMeta, build_workbook

    long = ("The child was 18 or older when the episode started; only children under 18 can become looked "
            "after. Check the date of birth and the start date against the case file, and correct whichever "
            "is wrong before you upload the file again. ") * 2
    meta = FeedbackMeta("clas", "Children Looked After in Scotland (CLAS)", "2025-26", EDINBURGH, "City of Edinburgh",
                        3, 9, "clas final (2).xlsx", "rejected", "Friday 31 July 2026", "Scottish Government (clas@example.org)")
    issues = [
        FeedbackIssue("CLAS-E003", "error", long, 10 + k, "date_of_birth, episode_start_date", "2001-02-03") for k in range(6)
    ] + [
        FeedbackIssue("CLAS-Q002", "query", "A child on a Permanence Order is recorded as placed at home with parents. "
                      "Please confirm or correct.", 40, "legal_reason, placement_type", "PO, HOME"),
        FeedbackIssue("FMT-scn", "error", "Scottish Candidate Number: '21144581' is not in the expected form (for "
                      "example 604876475). Correct the value. It is one digit short: a leading zero was probably "
                      "lost (a spreadsheet turns 012345 typed in a General cell into the number 12345).", 41, "scn", "21144581"),
    ]
    pdf = calc.convert(build_workbook(meta, issues), "xlsx", "pdf")
    pages = _pdf_lines(pdf, tmp_path)
    assert pages and all(not _overlapping(lines) for lines in pages), [_overlapping(p)[:3] for p in pages]
    everything = " ".join(line["text"] for page in pages for line in page)
    # Nothing clipped away: the whole of a long message and of the Summary's advice is printed.
    assert everything.count("correct whichever is wrong before you upload the file again.") == (6 + 1) * 2
    assert "upload the corrected file to your folder." in everything
    # Messages stay in their column: nothing printed right of the Message column's edge on the
    # Issues pages, where the Explanation column starts.
    for lines in pages:
        heads = [w for line in lines if "Explanation (queries only)" in line["text"] for w in line["words"]]
        if not heads:
            continue
        edge = min(w["xMin"] for w in heads)
        header_y = heads[0]["yMax"]
        body = [w for line in lines for w in line["words"] if w["yMin"] > header_y]
        assert body and all(w["xMax"] <= edge + 0.5 for w in body), "a message spills into the Explanation column"


# ---------------------------------------------------------------------------------------------
# What goes back to the council and on to requesters


def test_accepted_data_sent_back_to_the_council_is_neutralised_against_formulas(specs, clean_ledger):
    import csv

    from lgdp.collect.process import process_file
    from lgdp.collect.respond import accepted_csv

    loaded = _clas()
    label = _open_current(loaded)
    rows = _rows(loaded, EDINBURGH, label, 3)
    rows[0]["child_id"] = "-A1"  # allowed by the pattern; a spreadsheet reads it as the formula -A1
    rows[1]["child_id"] = "-B2-C3"
    outcome = process_file(loaded, label, EDINBURGH, _ref("clas.xlsx"), _xlsx(loaded, rows, EDINBURGH, label))
    assert outcome.status == "accepted", [i.message for i in outcome.issues]
    back = list(csv.DictReader(io.StringIO(accepted_csv(loaded, outcome.version_id).decode())))
    assert [r["child_id"] for r in back[:2]] == ["'-A1", "'-B2-C3"]
    assert back[2]["child_id"] == rows[2]["child_id"]  # others untouched
    assert back[0]["number_of_placements"] == str(rows[0]["number_of_placements"])  # numbers untouched


def test_an_xlsx_delivery_shows_formula_like_text_as_text_without_an_apostrophe(specs, calc):
    import pyarrow as pa
    from openpyxl import load_workbook

    from lgdp.distribute.build import build
    from lgdp.specs.model import Distribution

    loaded = _clas()
    dist = Distribution(
        requester="test_requester", name="Test", contact_email="t@example.org",
        destination={"type": "local", "path": "t"}, formats=["xlsx", "csv"],
        columns=["council_code", "child_id", "number_of_placements"],
    )
    values = ['=HYPERLINK("http://evil.example.org","x")', "+1", "-2+3", "@SUM(A1)", "ok"]
    table = pa.table({"council_code": [EDINBURGH] * 5, "child_id": values, "number_of_placements": [-1, 1, 2, 3, 4]})
    built = build(loaded, dist, "2025-26", 1, table, None)
    xlsx = built.files["clas_2025-26.xlsx"]
    ws = load_workbook(io.BytesIO(xlsx)).active
    assert [c.value for c in ws["B"][1:]] == values and all(c.data_type == "s" for c in ws["B"][1:])
    # LibreOffice opens it and saves it as CSV: the text as it was, nothing computed.
    shown = calc.convert(xlsx, "xlsx", "csv").decode()
    assert 'HYPERLINK(""http://evil.example.org"",""x"")' in shown and "'=" not in shown
    assert "\n" + EDINBURGH + ",-2+3,2" in shown.replace("\r\n", "\n")
    # The CSV keeps the apostrophe (a CSV cell has no type) and ends records with CRLF (RFC 4180).
    csv_ = built.files["clas_2025-26.csv"]
    assert b"'=HYPERLINK" in csv_ and csv_.count(b"\r\n") == 6 and csv_.replace(b"\r\n", b"").count(b"\n") == 0


def _explained_deliveries(loaded, label: str):
    """Edinburgh accepted after explaining a query; Glasgow accepted with none."""
    from lgdp.collect.process import process_file, process_upload

    first = _queried_version(loaded, label)
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(_feedback(loaded, label, first.version_id)))
    wb["Issues"]["G2"] = "Placed at home under a Permanence Order, as the court allowed."
    out = io.BytesIO()
    wb.save(out)
    done = process_upload(loaded, label, EDINBURGH, _ref("feedback_v1.xlsx", item="fb"), out.getvalue())
    assert done.status == "accepted", done.note
    rows = _rows(loaded, GLASGOW, label, 3, seed=2)
    rows[0]["scn"] = "012345678"
    rows[1]["scn"] = None
    gl = process_file(loaded, label, GLASGOW, _ref("clas.xlsx", item="gl"), _xlsx(loaded, rows, GLASGOW, label))
    assert gl.status == "accepted", [i.message for i in gl.issues]
    return rows


def _docs_reading_code() -> str:
    doc = (ROOT / "docs" / "distribution.md").read_text()
    section = doc[doc.index("### Reading a delivery with pandas") :]
    return section[section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)]


def test_requesters_get_each_councils_issues_and_explanations_entitled_like_the_data(specs, clean_ledger):
    import csv

    from lgdp.distribute.deliver import deliver
    from lgdp.distribute.publish import delivery_dir
    from lgdp.specs.model import Distribution

    loaded = _clas()
    label = _open_current(loaded)
    _explained_deliveries(loaded, label)
    common = dict(contact_email="t@example.org", formats=["csv"])
    rows_dist = Distribution(requester="statistics", name="Statistics", destination={"type": "local", "path": "stats"},
                             columns=[it.name for it in loaded.items], **common)
    narrow = Distribution(requester="benchmarking", name="Benchmarking", destination={"type": "local", "path": "bench"},
                          columns=["council_code", "sex", "legal_reason", "number_of_placements"], **common)
    for dist in (rows_dist, narrow):
        result = deliver(loaded, label, dist)
        assert result.published and f"clas_{label}_issues.csv" in result.files

    folder = delivery_dir() / "stats" / label / "v1"
    manifest = json.loads((folder / "manifest.json").read_text())
    [entry] = [f for f in manifest["files"] if f["content"] == "issues"]
    data = (folder / entry["name"]).read_bytes()
    import hashlib

    assert hashlib.sha256(data).hexdigest() == entry["sha256"] and entry["rows"] == 1
    [issue] = list(csv.DictReader(io.StringIO(data.decode())))
    assert issue["council_code"] == EDINBURGH and issue["submission_version"] == "1" and issue["row"] == "2"
    assert issue["code"] == "CLAS-Q002" and issue["severity"] == "query"
    assert issue["explanation"] == "Placed at home under a Permanence Order, as the court allowed."
    assert "value" not in issue
    by_council = {c["code"]: c for c in manifest["issues"]["by_council"]}
    assert by_council[EDINBURGH] == {"code": EDINBURGH, "issues": 1, "queries": 1, "explained": 1, "withheld": 0}
    assert by_council[GLASGOW]["issues"] == 0

    # The benchmarking requester has legal_reason but not placement_type: the issue names both, so
    # it is withheld (its explanation speaks of a column they do not receive).
    bench = delivery_dir() / "bench" / label / "v1"
    bench_manifest = json.loads((bench / "manifest.json").read_text())
    assert list(csv.DictReader(io.StringIO((bench / f"clas_{label}_issues.csv").read_text()))) == []
    assert {c["code"]: c["withheld"] for c in bench_manifest["issues"]["by_council"]}[EDINBURGH] == 1


def test_a_requester_reading_the_csv_with_the_documented_pandas_code_gets_the_right_types(specs, clean_ledger):
    import pandas as pd

    from lgdp.distribute.deliver import deliver
    from lgdp.distribute.publish import delivery_dir
    from lgdp.specs.model import Distribution

    loaded = _clas()
    label = _open_current(loaded)
    glasgow = _explained_deliveries(loaded, label)
    dist = Distribution(requester="statistics", name="Statistics", contact_email="t@example.org", formats=["csv"],
                        destination={"type": "local", "path": "stats"}, columns=[it.name for it in loaded.items])
    deliver(loaded, label, dist)
    folder = delivery_dir() / "stats" / label / "v1"
    manifest = json.loads((folder / "manifest.json").read_text())
    types = {c["name"]: c["type"] for c in manifest["column_types"]}
    assert types["scn"] == "text" and types["sex"] == "text" and types["date_of_birth"] == "date"
    assert types["number_of_placements"] == "integer"
    raw = (folder / f"clas_{label}.csv").read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n") == manifest["rows"] + 1  # RFC 4180 records

    code = _docs_reading_code()
    assert 'folder = Path("2025-26/v1")' in code
    scope: dict = {}
    exec(code.replace('folder = Path("2025-26/v1")', f"folder = Path({str(folder)!r})"), scope)  # noqa: S102
    df, issues = scope["df"], scope["issues"]
    assert len(df) == manifest["rows"] == 7
    assert str(df["scn"].dtype) == "string" and str(df["sex"].dtype) == "string"
    assert str(df["number_of_placements"].dtype) == "Int64"
    assert str(df["date_of_birth"].dtype).startswith("datetime64")
    gl = df[df["council_code"] == GLASGOW].reset_index(drop=True)
    assert gl.loc[0, "scn"] == "012345678" and pd.isna(gl.loc[1, "scn"])  # not 12345678.0
    assert gl.loc[0, "date_of_birth"] == pd.Timestamp(glasgow[0]["date_of_birth"])
    assert list(issues["code"]) == ["CLAS-Q002"] and issues.loc[0, "explanation"].startswith("Placed at home")


# ---------------------------------------------------------------------------------------------
# Spec messages


def test_no_spec_message_sends_councils_to_a_channel_the_platform_does_not_have():
    """Explanations go in the feedback workbook: no message may point to a covering email or letter."""
    import yaml

    channel = re.compile(r"covering (e-?mail|letter|note)|\b(by|in an?|in your) e-?mail\b|\bletter\b", re.I)
    found = []
    for path in sorted((ROOT / "return_specs").rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text())

        def walk(node, where):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k in ("message", "guidance", "wording") and isinstance(v, str) and channel.search(v):
                        found.append((path.name, where, v))
                    walk(v, f"{where}.{k}")
            elif isinstance(node, list):
                for n, v in enumerate(node):
                    walk(v, f"{where}[{n}]")

        walk(doc, path.stem)
    assert found == []
    fin = (ROOT / "return_specs" / "la_finance_quarterly.yaml").read_text()
    assert "Explanation column of the feedback workbook" in fin

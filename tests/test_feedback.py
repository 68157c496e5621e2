"""The feedback workbook and plausibility, as pure functions: no servers needed."""

from __future__ import annotations

import io

import pytest

from lgdp.collect.feedback import (
    FeedbackIssue,
    FeedbackMeta,
    FeedbackUnreadable,
    build_workbook,
    counts,
    looks_like_feedback,
    read_returned,
)
from lgdp.issues import Issue

META = FeedbackMeta(
    return_id="clas", return_title="Children Looked After", period="2025-26", council="S12000036",
    council_name="City of Edinburgh", version=2, version_id=41, filename="clas.xlsx", status="queries",
    due="Friday 31 July 2026", contact="Scottish Government (clas@example.org)",
)
ISSUES = [
    FeedbackIssue("CLAS-E012", "error", "End date is before start date.", 7, "episode_end", "2020-01-01"),
    FeedbackIssue("CLAS-Q003", "query", "Age at start over 17.", 9, "date_of_birth", "2001-02-03"),
    FeedbackIssue("PLAUS-ROWS", "query", "Rows up 40%.", None, None, "140 (was 100)"),
    FeedbackIssue("CODE-placement_type", "error", "'=HYPERLINK(\"x\")' is not a placement type.", 12, "placement_type", "=HYPERLINK(\"x\")"),
]


def _fill(data: bytes, answers: dict[tuple[str, int | None], str]) -> bytes:
    """What a council officer does in Excel: type in the Explanation column and save."""
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(data))
    ws = wb["Issues"]
    for row in ws.iter_rows(min_row=2):
        key = (row[3].value, row[0].value)
        if key in answers:
            row[6].value = answers[key]
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_workbook_round_trip_reads_explanations_by_code_row_and_item():
    data = build_workbook(META, ISSUES)
    assert looks_like_feedback(data)
    filled = _fill(data, {("CLAS-Q003", 9): "Care leaver aged 18 recorded correctly", ("PLAUS-ROWS", None): "New unit opened"})
    back = read_returned(filled)
    assert (back.return_id, back.period, back.council, back.version, back.version_id) == ("clas", "2025-26", "S12000036", 2, 41)
    assert back.explanations == {
        ("CLAS-Q003", 9, "date_of_birth"): "Care leaver aged 18 recorded correctly",
        ("PLAUS-ROWS", None, None): "New unit opened",
    }


def test_workbook_shows_a_formula_like_value_as_text():
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(build_workbook(META, ISSUES)))
    cells = [c for row in wb["Issues"].iter_rows() for c in row]
    # Written as a text cell (never run), so shown as the council typed it: no apostrophe added.
    [shown] = [c for c in cells if c.value == "=HYPERLINK(\"x\")"]
    assert shown.data_type == "s"
    assert all(c.data_type != "f" for c in cells)
    assert wb["Issues"].column_dimensions["G"].number_format == "@"  # what is typed there stays text
    assert wb["_lgdp"].sheet_state == "veryHidden"
    summary = [c.value for row in wb["Summary"].iter_rows() for c in row if c.value]
    assert "Queries to explain" in summary and "City of Edinburgh (S12000036)" in summary


def test_counts():
    c = counts([*ISSUES[:2], FeedbackIssue("X", "query", "m", 1, "a", "b", "because")])
    assert (c.errors, c.queries, c.explained, c.unexplained) == (1, 2, 1, 1)


def test_a_data_file_is_not_a_feedback_workbook(tmp_path):
    from lgdp.specs.load import load_register
    from lgdp.synth import write_sample

    loaded = load_register().get("clas")
    write_sample(loaded, "S12000036", "2025-26", 5, "xlsx", tmp_path / "clas.xlsx")
    assert not looks_like_feedback((tmp_path / "clas.xlsx").read_bytes())
    assert not looks_like_feedback(b"PK\x03\x04 not a zip")
    assert not looks_like_feedback(b"")


@pytest.mark.parametrize(
    "mangle, words",
    [
        (lambda d: d[: len(d) // 2], "could not be opened"),
        (lambda d: _drop_sheet(d, "Issues"), "lost its 'Issues' sheet"),
        (lambda d: _drop_column(d, "Explanation"), "no 'Explanation' column"),
        (lambda d: _pad(d, 450 * 1024 * 1024), "too large to read"),
    ],
)
def test_a_damaged_returned_workbook_gets_a_message_the_officer_can_act_on(mangle, words):
    with pytest.raises(FeedbackUnreadable, match=words):
        read_returned(mangle(build_workbook(META, ISSUES)))


def _pad(data: bytes, size: int) -> bytes:
    """The workbook with a hidden member that inflates to ``size`` bytes: a zip bomb in disguise."""
    import zipfile

    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("xl/media/padding.bin", "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(size // len(block)):
                member.write(block)
    return out.getvalue()


def _drop_sheet(data: bytes, name: str) -> bytes:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(data))
    del wb[name]
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _drop_column(data: bytes, header: str) -> bytes:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(data))
    ws = wb["Issues"]
    for cell in ws[1]:
        if str(cell.value).startswith(header):
            ws.delete_cols(cell.column)
            break
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_plausibility_queries_moves_beyond_the_tolerance_only():
    from lgdp.specs.load import load_register
    from lgdp.validate.plausibility import Figures, compare

    loaded = load_register().get("clas")  # rows 25%, number_of_placements 30%
    before = Figures(rows=100, totals={"number_of_placements": 200.0})
    assert compare(loaded, Figures(120, {"number_of_placements": 250.0}), before, "2024-25") == []
    found = compare(loaded, Figures(140, {"number_of_placements": 100.0}), before, "2024-25")
    assert [(i.code, i.severity, i.item) for i in found] == [
        ("PLAUS-ROWS", "query", None),
        ("PLAUS-number_of_placements", "query", "number_of_placements"),
    ]
    assert "140 rows against 100 in 2024-25 (up 40%" in found[0].message
    assert "down 50%" in found[1].message
    assert compare(loaded, Figures(140, {}), None, None) == []


def test_a_returned_workbook_is_recognised_in_any_spreadsheet_format_and_a_data_file_is_not(tmp_path):
    import zipfile

    from lgdp.collect.feedback import is_returned_feedback, returned_format
    from lgdp.specs.load import load_register
    from lgdp.synth import write_sample

    loaded = load_register().get("clas")
    write_sample(loaded, "S12000036", "2025-26", 5, "xlsx", tmp_path / "clas.xlsx")
    data = (tmp_path / "clas.xlsx").read_bytes()
    assert not is_returned_feedback("clas.xlsx", data) and not is_returned_feedback("feedback notes.xlsx", data)
    assert is_returned_feedback("clas.xlsx", build_workbook(META, ISSUES))
    assert returned_format("feedback_v2.csv", b"Row,Column\r\n") == "csv"  # the Issues sheet saved as CSV
    assert returned_format("Feedback_V2 (1).ods", b"") == "ods"

    def ods(members: dict[str, bytes]) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, body in members.items():
                zf.writestr(name, body)
        return out.getvalue()

    sheet = b'<office:document-content><table:table table:name="_lgdp"></table:table></office:document-content>'
    spreadsheet = b"application/vnd.oasis.opendocument.spreadsheet"
    assert returned_format("answers.ods", ods({"mimetype": spreadsheet, "content.xml": sheet})) == "ods"
    assert returned_format("answers.ods", ods({"mimetype": spreadsheet, "content.xml": b"<x/>"})) is None
    # A hostile "mimetype" member inflating to 64 MB is read 100 bytes at most.
    assert returned_format("data.ods", ods({"mimetype": b"\0" * (64 << 20), "content.xml": sheet})) is None
    xls = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600 + b"\x85\x00\x0d\x00" + b"\x05\x00_lgdp"
    assert returned_format("answers.xls", xls) == "xls"
    with pytest.raises(FeedbackUnreadable, match=r"save as|Save As"):
        read_returned(xls, "answers.xls")

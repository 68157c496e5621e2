"""The feedback workbook: what a council officer opens to see, fix and explain its issues.

One workbook per processed version, put in the council's ``_platform`` folder:

* ``Summary``: the outcome in words, counts by severity, what to do next, and the issues
  grouped by rule code;
* ``Issues``: one row per issue with the row (its number in the council's own file), the
  column, the value, the rule code, the severity, the message and an **Explanation** column;
* a very hidden ``_lgdp`` sheet naming the return, period, council and version, so a workbook
  the council uploads back is recognised and matched to the version it explains.

The council explains queries in the Explanation column and uploads the workbook to its folder.
Reading it back is as guarded as reading data: size and uncompressed-size limits, defusedxml
(openpyxl uses it when installed), and a message the officer can act on when it cannot be used.
Building and reading are pure (bytes in, bytes out): the operator does the I/O.
"""

from __future__ import annotations

import io
import math
import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from lgdp.issues import Issue

MARKER = "lgdp-feedback"
FORMAT = "1"
META_SHEET = "_lgdp"
ISSUES_SHEET = "Issues"
SUMMARY_SHEET = "Summary"
HEADERS = ("Row", "Column", "Value", "Rule code", "Severity", "Message", "Explanation")
WIDTHS = (8, 28, 24, 16, 10, 80, 60)
LINE_POINTS = 15.0  # one line of 11 pt text, with its leading, in points (Excel's and Calc's default row is 15)
TEXT_FORMAT = "@"  # a cell formatted as Text: what is typed in it stays text (a leading '=' too)
MAX_READ_BYTES = 50 * 1024 * 1024
MAX_READ_UNCOMPRESSED = 400 * 1024 * 1024


def max_rows() -> int:
    """Issues listed in one workbook (all are in the ledger); ``LGDP_FEEDBACK_MAX_ROWS`` overrides."""
    return int(os.environ.get("LGDP_FEEDBACK_MAX_ROWS", "100000"))


@dataclass(frozen=True)
class FeedbackIssue:
    """An issue as the council sees it, with its explanation if it has one."""

    code: str
    severity: str
    message: str
    row: int | None
    item: str | None
    value: str | None
    explanation: str | None = None
    table: str | None = None  # the sheet (table) of a return with several tables

    @classmethod
    def of(cls, issue: Issue, explanation: str | None = None) -> "FeedbackIssue":
        return cls(issue.code, issue.severity, issue.message, issue.row, issue.item, issue.value, explanation,
                   issue.table)

    @property
    def key(self) -> tuple[str, int | None, str | None]:
        return (self.code, self.row, self.item)


@dataclass(frozen=True)
class FeedbackMeta:
    return_id: str
    return_title: str
    period: str
    council: str
    council_name: str
    version: int
    version_id: int
    filename: str
    status: str  # accepted | rejected | queries
    due: str = ""
    contact: str = ""


@dataclass(frozen=True)
class Counts:
    errors: int
    queries: int
    explained: int

    @property
    def unexplained(self) -> int:
        return self.queries - self.explained


def counts(issues: Sequence[FeedbackIssue]) -> Counts:
    errors = sum(i.severity == "error" for i in issues)
    queries = [i for i in issues if i.severity == "query"]
    return Counts(errors, len(queries), sum(bool(i.explanation) for i in queries))


def by_rule(issues: Iterable[FeedbackIssue]) -> list[tuple[str, str, int, str]]:
    """(code, severity, count, an example message) per rule, errors first then most frequent."""
    n: Counter[tuple[str, str]] = Counter()
    example: dict[tuple[str, str], str] = {}
    for i in issues:
        n[(i.code, i.severity)] += 1
        example.setdefault((i.code, i.severity), i.message)
    order = sorted(n, key=lambda k: (k[1] != "error", -n[k], k[0]))
    return [(code, sev, n[(code, sev)], example[(code, sev)]) for code, sev in order]


def top_issues(issues: Sequence[FeedbackIssue], limit: int = 10) -> list[FeedbackIssue]:
    """The first issues to show in an email: errors first, unexplained queries next, by row."""
    ranked = sorted(
        issues, key=lambda i: (i.severity != "error", bool(i.explanation), i.row if i.row is not None else -1)
    )
    return ranked[:limit]


def outcome_words(status: str, c: Counts) -> tuple[str, str]:
    """(headline, what to do next) for the council officer."""
    if status == "accepted":
        if c.queries:
            return ("Accepted", f"Your return is accepted; all {c.queries} queries are explained. Nothing more to do.")
        return ("Accepted", "Your return is accepted. Nothing more to do.")
    if status == "rejected":
        return (
            "Not accepted: errors to fix",
            f"Fix the {c.errors} error(s) listed in the Issues sheet in your own file and upload the corrected "
            "file to your folder. Queries can be fixed too, or explained in the Explanation column.",
        )
    return (
        "Queries to explain",
        f"There are no errors, but {c.unexplained} of {c.queries} queries have no explanation. For each, either "
        "correct your file and upload it again, or write why the figure is right in the Explanation column of "
        "the Issues sheet and upload this workbook to your folder.",
    )


def build_workbook(meta: FeedbackMeta, issues: Sequence[FeedbackIssue]) -> bytes:
    """The feedback workbook for one version (write-only mode: a million issues stay cheap)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill

    c = counts(issues)
    headline, todo = outcome_words(meta.status, c)
    cap = max_rows()
    wb = Workbook(write_only=True)
    bold = Font(bold=True)

    wrap = Alignment(wrap_text=True, vertical="top", horizontal="left")
    top = Alignment(vertical="top", horizontal="left")
    summary = wb.create_sheet(SUMMARY_SHEET)
    for letter, width in zip("AB", SUMMARY_WIDTHS):
        summary.column_dimensions[letter].width = width
    _fit_to_page_width(summary)
    rows = iter(range(1, 10**9))  # the Summary's next row number (write-only: heights are set before the row)

    def cell(ws, value, **style):
        x = WriteOnlyCell(ws, value=value)
        for k, v in style.items():
            setattr(x, k, v)
        return x

    def text_cell(ws, value, **style):
        return cell(ws, value, **style) if not isinstance(value, str) else _text(cell(ws, value, **style))

    def styled(ws, **style):
        """A maker of cells sharing one style, worked out once (setting a style per cell costs more
        than the rest of the row: a hundred thousand issues stay cheap). Text is written as text."""
        proto = cell(ws, None, **style)

        def make(value):
            x = WriteOnlyCell(ws, value=value)
            x._style = proto._style
            if isinstance(value, str):
                x.data_type = "s"
            return x

        return make

    title = f"Feedback on your {meta.return_title} return"
    summary.row_dimensions[next(rows)].height = 2 * LINE_POINTS
    summary.append([text_cell(summary, title, font=Font(bold=True, size=14))])
    summary.append([])
    next(rows)
    for label, value in (
        ("Outcome", headline),
        ("What to do", todo),
        ("Return", f"{meta.return_title} ({meta.return_id})"),
        ("Period", meta.period),
        ("Council", f"{meta.council_name} ({meta.council})"),
        ("Your file", _safe_text(meta.filename)),
        ("Version", meta.version),
        ("Errors", c.errors),
        ("Queries", c.queries),
        ("Queries explained", c.explained),
        ("Due", meta.due),
        ("Questions to", meta.contact),
    ):
        row_height(summary, rows, [(value, SUMMARY_WIDTHS[1])])
        summary.append([cell(summary, label, font=bold, alignment=top), text_cell(summary, value, alignment=wrap)])
    if len(issues) > cap:
        note = (f"The Issues sheet lists the first {cap:,} of {len(issues):,} issues; fix these and the rest will be "
                "listed again when you upload the corrected file.")
        row_height(summary, rows, [(note, SUMMARY_WIDTHS[1])])
        summary.append([cell(summary, "Note", font=bold, alignment=top), text_cell(summary, note, alignment=wrap)])
    summary.append([])
    summary.append([cell(summary, "Issues by rule", font=Font(bold=True, size=12))])
    next(rows), next(rows), next(rows)
    # The rule table sits under the label/value pairs: rule code in A, then severity, count and an
    # example message in B (wide, wrapped), so nothing spills into empty cells to its right.
    summary.append([cell(summary, h, font=bold) for h in ("Rule code", "Example (severity, count)")])
    for code, sev, n, example in by_rule(issues):
        shown = f"{sev}, {n:,} row(s): {example}"
        row_height(summary, rows, [(code, SUMMARY_WIDTHS[0]), (shown, SUMMARY_WIDTHS[1])])
        summary.append([text_cell(summary, code, alignment=wrap), text_cell(summary, shown, alignment=wrap)])

    sheet = wb.create_sheet(ISSUES_SHEET)
    sheet.freeze_panes = "A2"
    # A return of several tables: a first column names the sheet each issue is in (issues come
    # grouped by sheet, then in the council's own row order of that sheet).
    tabled = any(i.table for i in issues)
    headers, widths = (("Sheet", *HEADERS), (14, *WIDTHS)) if tabled else (HEADERS, WIDTHS)
    last = chr(ord("A") + len(headers) - 1)
    for idx, width in enumerate(widths):
        letter = chr(ord("A") + idx)
        sheet.column_dimensions[letter].width = width
    # What is typed in the Explanation column stays text, even "=see email of 3 May".
    sheet.column_dimensions[last].number_format = TEXT_FORMAT
    _fit_to_page_width(sheet)
    shade = PatternFill("solid", fgColor="FFF2CC")
    header = [cell(sheet, h, font=bold, alignment=wrap) for h in headers]
    header[-1] = cell(sheet, headers[-1] + " (queries only)", font=bold, fill=shade, alignment=wrap)
    sheet.append(header)
    at_top, wrapped = styled(sheet, alignment=top), styled(sheet, alignment=wrap)
    explanation = styled(sheet, fill=shade, alignment=wrap, number_format=TEXT_FORMAT)
    for n, i in enumerate(issues[:cap], start=2):
        sized = row_height(sheet, iter([n]), [(i.item, WIDTHS[1]), (i.value, WIDTHS[2]), (i.message, WIDTHS[5]),
                                              (i.explanation, WIDTHS[6])], light=True)
        sheet.append([at_top(i.table)] * tabled + [
            at_top(i.row),
            wrapped(i.item),
            wrapped(i.value),
            at_top(i.code),
            at_top(i.severity),
            wrapped(i.message),
            explanation(i.explanation) if i.severity == "query" else None,
        ])
        if sized:
            dict.__delitem__(sheet.row_dimensions, n)  # written with the row: nothing kept per issue
    sheet.auto_filter.ref = f"A1:{last}{min(len(issues), cap) + 1}"

    hidden = wb.create_sheet(META_SHEET)
    hidden.sheet_state = "veryHidden"
    for key, value in (
        ("marker", MARKER),
        ("format", FORMAT),
        ("return", meta.return_id),
        ("period", meta.period),
        ("council", meta.council),
        ("version", str(meta.version)),
        ("version_id", str(meta.version_id)),
    ):
        hidden.append([key, value])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


SUMMARY_WIDTHS = (22, 100)


def _text(c):
    """A cell written as text whatever it starts with: a spreadsheet never runs a text cell, so a
    council's ``=HYPERLINK(...)`` is shown as it was typed, with no apostrophe added."""
    c.data_type = "s"
    return c


def _safe_text(value: str | None) -> str | None:
    """Kept for callers writing plain values; cells here are written as text (``_text``)."""
    return value


def text_lines(value: object, width: float) -> int:
    """Lines ``value`` wraps to in a column ``width`` characters wide (conservatively: 11 pt text
    averages fewer characters per width unit than this assumes, so a row is never too short)."""
    if value is None or value == "":
        return 1
    per_line = max(1, int(width * 0.85))
    return sum(max(1, math.ceil(len(part) / per_line)) for part in str(value).split("\n"))


def row_height(ws, rows, cells: Sequence[tuple[object, float]], light: bool = False) -> bool:
    """Set the height of the next row (from ``rows``) to fit its wrapped cells; True if set.

    ``light``: for a write-only sheet's row that is removed again right after it is appended (the
    Issues sheet). The worksheet writer reads a row's attributes with ``row_dimensions.get(n)``
    while appending it, so a plain mapping of them does; building a ``RowDimension`` per row would
    double the time a hundred thousand issues take."""
    n = next(rows)
    lines = max(text_lines(v, w) for v, w in cells)
    if lines <= 1:
        return False
    if light:
        dict.__setitem__(ws.row_dimensions, n, {"ht": f"{lines * LINE_POINTS + 2:g}", "customHeight": "1"})
    else:
        ws.row_dimensions[n].height = lines * LINE_POINTS + 2
    return True


def _fit_to_page_width(ws) -> None:
    """Printed (or made a PDF) landscape, every column on one page wide: wrapped rows stay readable."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True


class FeedbackUnreadable(Exception):
    """A returned feedback workbook that cannot be used; the message is for the council officer."""


@dataclass(frozen=True)
class ReturnedFeedback:
    return_id: str
    period: str
    council: str
    version: int
    version_id: int
    explanations: dict[tuple[str, int | None, str | None], str] = field(default_factory=dict)
    # Explanation cells that hold a formula or an error value (#VALUE!, #NAME?): not explanations.
    # Each is (the row of the Issues sheet, the row of the council's file, the column).
    retype: list[tuple[int, int | None, str | None]] = field(default_factory=list)

    @property
    def retype_note(self) -> str:
        """For the council: which Explanation cells to type again, or "" when there are none."""
        if not self.retype:
            return ""
        shown = ", ".join(
            f"row {sheet_row}" + (f" (your file's row {row}" + (f", {item})" if item else ")") if row is not None else "")
            for sheet_row, row, item in self.retype[:10]
        )
        more = f" and {len(self.retype) - 10} more" if len(self.retype) > 10 else ""
        return (
            f" The Explanation cell in {shown}{more} of the Issues sheet holds a formula or an error value "
            "(such as #VALUE! or #NAME?), not text, so it does not count as an explanation. Type the explanation "
            "again as plain text (do not start it with '='), save the workbook as .xlsx and upload it again."
        )


FEEDBACK_NAME = re.compile(r"^feedback_v\d+\b.*\.(xlsx|xlsm|xlsb|xls|ods|fods|csv)$", re.I)
OTHER_FORMATS = {
    "ods": "OpenDocument spreadsheet (.ods)",
    "fods": "flat OpenDocument spreadsheet (.fods)",
    "xls": "Excel 97-2003 workbook (.xls)",
    "xlsb": "Excel binary workbook (.xlsb)",
    "xlsm": "macro-enabled workbook (.xlsm)",
    "csv": "CSV file",
}


def _ods_has_meta_sheet(data: bytes) -> bool:
    """True for an OpenDocument spreadsheet (zip) with a ``_lgdp`` table; reads content.xml in
    pieces, at most ``MAX_READ_UNCOMPRESSED`` bytes of it."""
    needle = f'table:name="{META_SHEET}"'.encode()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            with zf.open("mimetype") as f:  # a few bytes only, whatever the member claims to hold
                if b"opendocument.spreadsheet" not in f.read(100):
                    return False
            with zf.open("content.xml") as f:
                seen, tail = 0, b""
                while seen < MAX_READ_UNCOMPRESSED:
                    block = f.read(1 << 20)
                    if not block:
                        return False
                    seen += len(block)
                    if needle in tail + block:
                        return True
                    tail = block[-len(needle):]
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError, NotImplementedError, ValueError, EOFError):
        return False
    return False


def _xls_has_meta_sheet(data: bytes) -> bool:
    """True for a legacy .xls (OLE2) whose sheet list names ``_lgdp`` (a BIFF8 BOUNDSHEET record
    holds the name as 8-bit or UTF-16 text after its length and a flags byte)."""
    if not data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return False
    name = META_SHEET.encode()
    return (bytes([len(name), 0]) + name) in data or (bytes([len(name), 1]) + META_SHEET.encode("utf-16-le")) in data


def returned_format(name: str, data: bytes) -> str | None:
    """A feedback workbook the council saved in another format than .xlsx: which one, else None.

    Recognised by its hidden ``_lgdp`` sheet (.ods, .xls) or by its name (``feedback_v<N>...``
    in any spreadsheet format: a CSV of the Issues sheet, say)."""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if len(data) <= MAX_READ_BYTES:
        if data.startswith(b"PK\x03\x04") and _ods_has_meta_sheet(data):
            return "ods"
        if _xls_has_meta_sheet(data):
            return "xls"
    if FEEDBACK_NAME.match(name.strip()) and ext != "xlsx":
        return ext
    return None


def is_returned_feedback(name: str, data: bytes) -> bool:
    """True for a feedback workbook the council uploaded back, in any spreadsheet format: it is
    never a new data version (an .xlsx is read; another format is answered with what to do)."""
    return looks_like_feedback(data) or returned_format(name, data) is not None


def looks_like_feedback(data: bytes) -> bool:
    """True for an xlsx that carries the platform's hidden ``_lgdp`` sheet (checked cheaply)."""
    if not data.startswith(b"PK\x03\x04") or len(data) > MAX_READ_BYTES:
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            info = zf.getinfo("xl/workbook.xml")
            if info.file_size > 1024 * 1024:
                return False
            return f'name="{META_SHEET}"'.encode() in zf.read(info)
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError, NotImplementedError, ValueError):
        return False


def read_returned(data: bytes, name: str = "") -> ReturnedFeedback:
    """The explanations in a feedback workbook a council uploaded back.

    Raises ``FeedbackUnreadable`` with a message the council officer can act on (a workbook saved
    as .ods or .xls: save it as .xlsx). An Explanation cell holding a formula or an error value is
    not an explanation: it is listed in ``retype``.
    """
    from openpyxl import load_workbook

    other = None if looks_like_feedback(data) else returned_format(name, data)
    if other is not None:
        words = OTHER_FORMATS.get(other, f".{other} file")
        raise FeedbackUnreadable(
            f"This is your feedback workbook saved as {'an' if words[0] in 'AEIOU' else 'a'} {words}, which the "
            "platform cannot read explanations from. Nothing has changed: your return's status and any "
            "explanations already recorded stay as they were. Open the file, choose File > Save As, pick "
            "'Excel 2007-365 (.xlsx)' (in Excel: 'Excel Workbook (*.xlsx)'), keep all the sheets, and upload "
            "the .xlsx to your folder."
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if sum(i.file_size for i in zf.infolist()) > MAX_READ_UNCOMPRESSED:
                raise FeedbackUnreadable("The feedback workbook is too large to read; upload the workbook we sent, "
                                         "with only the Explanation column filled in.")
        wb = load_workbook(io.BytesIO(data), read_only=True)  # formulas as formulas: see ``retype``
    except FeedbackUnreadable:
        raise
    except Exception:  # noqa: BLE001 - any failure to open is the same message to the council
        raise FeedbackUnreadable(
            "The feedback workbook could not be opened. Save it as an Excel workbook (.xlsx) without a password "
            "and upload it again."
        ) from None
    try:
        if META_SHEET not in wb.sheetnames or ISSUES_SHEET not in wb.sheetnames:
            raise FeedbackUnreadable(
                f"The feedback workbook has lost its '{ISSUES_SHEET}' sheet or its hidden details. Download the "
                "latest feedback workbook from the _platform folder, fill in the Explanation column and upload it."
            )
        meta = {str(r[0]): str(r[1]) for r in wb[META_SHEET].iter_rows(max_row=50, values_only=True) if r and r[0]}
        if meta.get("marker") != MARKER:
            raise FeedbackUnreadable("This does not look like a feedback workbook from the platform.")
        try:
            version, version_id = int(meta["version"]), int(meta["version_id"])
            ident = (meta["return"], meta["period"], meta["council"])
        except (KeyError, ValueError):
            raise FeedbackUnreadable("The feedback workbook's hidden details are damaged; use the one we sent.") from None
        rows = wb[ISSUES_SHEET].iter_rows()
        header = [str(c.value or "").strip().lower() for c in next(rows, ())]
        cols = {}
        for name in ("row", "column", "rule code", "explanation"):
            found = [n for n, h in enumerate(header) if h == name or h.startswith(name + " (")]
            if not found:
                raise FeedbackUnreadable(
                    f"The Issues sheet has no '{name.title()}' column. Keep the columns as we sent them and "
                    "write explanations in the Explanation column."
                )
            cols[name] = found[0]
        explanations: dict[tuple[str, int | None, str | None], str] = {}
        retype: list[tuple[int, int | None, str | None]] = []
        width = max(cols.values()) + 1
        for n, cells in enumerate(rows):
            if n > max_rows() + 10:
                break
            kinds = tuple(getattr(c, "data_type", None) for c in cells) + (None,) * (width - len(cells))
            r = tuple(_plain(c.value) for c in cells) + (None,) * (width - len(cells))
            text = r[cols["explanation"]]
            code = r[cols["rule code"]]
            if text is None or code is None or not str(text).strip():
                continue
            row = r[cols["row"]]
            try:
                row = int(row) if row not in (None, "") else None
            except (TypeError, ValueError):
                continue
            item = r[cols["column"]]
            item = str(item) if item not in (None, "") else None
            if kinds[cols["explanation"]] in ("f", "e") or _is_error_text(text):
                retype.append((n + 2, row, item))
                continue
            explanations[(str(code), row, item)] = str(text)
        return ReturnedFeedback(*ident, version, version_id, explanations, retype)
    finally:
        wb.close()


ERROR_VALUES = frozenset({"#VALUE!", "#NAME?", "#REF!", "#DIV/0!", "#N/A", "#NUM!", "#NULL!", "#SPILL!", "#CALC!",
                          "#GETTING_DATA", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!", "#PYTHON!"})


def _plain(value: object) -> object:
    """A cell's value as read back: formulas come as text starting with '=' (openpyxl gives some
    array formulas as objects: their text)."""
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else value


def _is_error_text(value: object) -> bool:
    """An error value kept as text (a sheet saved from another application): ``#VALUE!``,
    LibreOffice's ``Err:509``."""
    text = str(value).strip()
    return text.upper() in ERROR_VALUES or re.fullmatch(r"Err:\d{3}", text) is not None


def feedback_name(version: int) -> str:
    return f"feedback_v{version}.xlsx"


def accepted_name(version: int) -> str:
    return f"accepted_v{version}.csv"

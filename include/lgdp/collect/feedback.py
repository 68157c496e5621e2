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
import os
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

    @classmethod
    def of(cls, issue: Issue, explanation: str | None = None) -> "FeedbackIssue":
        return cls(issue.code, issue.severity, issue.message, issue.row, issue.item, issue.value, explanation)

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

    summary = wb.create_sheet(SUMMARY_SHEET)
    summary.column_dimensions["A"].width = 22
    summary.column_dimensions["B"].width = 100

    def cell(ws, value, **style):
        x = WriteOnlyCell(ws, value=value)
        for k, v in style.items():
            setattr(x, k, v)
        return x

    summary.append([cell(summary, f"Feedback on your {meta.return_title} return", font=Font(bold=True, size=14))])
    summary.append([])
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
        summary.append([cell(summary, label, font=bold), cell(summary, value, alignment=Alignment(wrap_text=True))])
    if len(issues) > cap:
        summary.append([
            cell(summary, "Note", font=bold),
            f"The Issues sheet lists the first {cap:,} of {len(issues):,} issues; fix these and the rest will be "
            "listed again when you upload the corrected file.",
        ])
    summary.append([])
    summary.append([cell(summary, "Issues by rule", font=Font(bold=True, size=12))])
    summary.append([cell(summary, h, font=bold) for h in ("Rule code", "Severity", "Count", "Example")])
    for code, sev, n, example in by_rule(issues):
        summary.append([code, sev, n, _safe_text(example)])

    sheet = wb.create_sheet(ISSUES_SHEET)
    sheet.freeze_panes = "A2"
    for idx, width in enumerate(WIDTHS):
        sheet.column_dimensions[chr(ord("A") + idx)].width = width
    shade = PatternFill("solid", fgColor="FFF2CC")
    header = [cell(sheet, h, font=bold) for h in HEADERS]
    header[-1] = cell(sheet, HEADERS[-1] + " (queries only)", font=bold, fill=shade)
    sheet.append(header)
    for i in issues[:cap]:
        sheet.append([
            i.row,
            _safe_text(i.item),
            _safe_text(i.value),
            i.code,
            i.severity,
            _safe_text(i.message),
            cell(sheet, i.explanation, fill=shade) if i.severity == "query" else None,
        ])
    sheet.auto_filter.ref = f"A1:G{min(len(issues), cap) + 1}"

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


def _safe_text(value: str | None) -> str | None:
    """A council's own value shown back as text, never as a formula Excel would run."""
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value


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


def read_returned(data: bytes) -> ReturnedFeedback:
    """The explanations in a feedback workbook a council uploaded back.

    Raises ``FeedbackUnreadable`` with a message the council officer can act on.
    """
    from openpyxl import load_workbook

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if sum(i.file_size for i in zf.infolist()) > MAX_READ_UNCOMPRESSED:
                raise FeedbackUnreadable("The feedback workbook is too large to read; upload the workbook we sent, "
                                         "with only the Explanation column filled in.")
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
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
        rows = wb[ISSUES_SHEET].iter_rows(values_only=True)
        header = [str(h or "").strip().lower() for h in next(rows, ())]
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
        width = max(cols.values()) + 1
        for n, r in enumerate(rows):
            if n > max_rows() + 10:
                break
            r = tuple(r) + (None,) * (width - len(r))
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
            explanations[(str(code), row, str(item) if item not in (None, "") else None)] = str(text)
        return ReturnedFeedback(*ident, version, version_id, explanations)
    finally:
        wb.close()


def feedback_name(version: int) -> str:
    return f"feedback_v{version}.xlsx"


def accepted_name(version: int) -> str:
    return f"accepted_v{version}.csv"

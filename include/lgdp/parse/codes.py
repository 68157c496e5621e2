"""The catalogue of structural issue codes: problems found while reading a file, before validation.

Each code has a fixed severity and a message template in plain words that tells a council
officer what is wrong and what to do. Codes are stable: once published, a code keeps its meaning
(retire a code rather than reuse it). The catalogue is documented in ``docs/files.md``; a test
checks that every code here appears there.

* ``FILE-*``: the file as a whole cannot be accepted (damaged, unsafe, too big, wrong format).
* ``HDR-*``: the header row (columns) does not fit the return.
* ``ROW-*``: the number or shape of rows.
* ``CELL-*``: spreadsheet features that hide or distort values (formulas, merged cells).
* ``TYPE-*``: a value that cannot be read as its item's type.
* ``ID-*``: the file belongs to another council or another return.
* ``XSD-*``: an XML file that does not match the return's XML Schema.
* ``TBL-*``: a return of several tables (sheets, CSV files) with a table missing or one too many.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter
from typing import Any

from lgdp.issues import Issue, Severity


@dataclass(frozen=True)
class CodeDef:
    code: str
    severity: Severity
    title: str
    template: str
    stops_reading: bool = False
    """True if the file cannot be read at all once this is found (``readable=False``)."""

    def fields(self) -> set[str]:
        return {f for _, f, _, _ in Formatter().parse(self.template) if f}

    def issue(self, *, row: int | None = None, item: str | None = None, value: str | None = None, **fields: Any) -> Issue:
        return Issue(self.code, self.severity, self.template.format(**fields), row=row, item=item, value=value)


_DEFS = [
    # -- the file as a whole --------------------------------------------------------------------
    CodeDef("FILE-001", "error", "Unreadable or damaged file",
            "The file could not be read: {detail}. Open it in the program that made it, save it again "
            "as {accepted} and upload the new copy.", True),
    CodeDef("FILE-002", "error", "File too large",
            "The file is {size_mb} MB, more than the {limit_mb} MB allowed. Remove anything that is not "
            "part of the return (other sheets, pictures, formatting) or contact {contact}.", True),
    CodeDef("FILE-003", "error", "Macro-enabled workbook",
            "The workbook contains macros, which cannot be accepted. In Excel use File > Save As and "
            "choose 'Excel Workbook (*.xlsx)', then upload that copy.", True),
    CodeDef("FILE-004", "error", "Password-protected or encrypted file",
            "The file is protected with a password, so it cannot be opened. Remove the password "
            "(in Excel: File > Info > Protect Workbook > Encrypt with Password, clear the box), save "
            "and upload it again.", True),
    CodeDef("FILE-005", "error", "Compressed content too large",
            "The workbook is too large once opened: {detail}. Remove empty formatted rows and columns, "
            "pictures and other sheets, save and upload it again.", True),
    CodeDef("FILE-006", "error", "Empty file",
            "The file is empty. Upload the completed return.", True),
    CodeDef("FILE-007", "error", "Unsafe XML",
            "The XML file contains a document type declaration or entity definitions (a <!DOCTYPE> or "
            "<!ENTITY> line), which are not accepted for security reasons. Remove that part and "
            "upload the file again.", True),
    CodeDef("FILE-008", "error", "File format not accepted",
            "This file is {found}, but this return accepts only {accepted}. Save it in the right "
            "format (the template shows the layout) and upload it again.", True),
    CodeDef("FILE-009", "error", "File took too long to read",
            "The file could not be read within {limit_s} seconds. Check that it holds only the "
            "return's data (no extra sheets or very large ranges of formatting) or contact {contact}.", True),
    CodeDef("FILE-010", "error", "Unsafe file name",
            "The file name {name} is not allowed: {detail}. Rename the file using letters, digits, "
            "spaces, hyphens and underscores with one extension such as .xlsx or .csv, and upload it "
            "again.", True),
    CodeDef("FILE-011", "error", "Text encoding not recognised",
            "The file is not text in a recognised encoding ({detail}). Save it as 'CSV UTF-8 (Comma "
            "delimited)' and upload it again.", True),
    CodeDef("FILE-012", "error", "Old Excel format",
            "The file is in the old Excel 97-2003 format (.xls). In Excel use File > Save As and "
            "choose 'Excel Workbook (*.xlsx)', then upload that copy.", True),
    CodeDef("FILE-013", "query", "File name does not match its content",
            "The file name ends in .{ext} but the file is {found}; it was read as {found}. Please "
            "name files by their type next time."),
    CodeDef("FILE-014", "error", "No sheet with data",
            "The workbook has no worksheet to read{detail}. Put the data on a sheet named "
            "'{sheet}' (as in the template) and upload it again.", True),
    # -- the header row -------------------------------------------------------------------------
    CodeDef("HDR-001", "error", "Missing required column",
            "The column '{name}' ({wording}) is missing. It is required: add it to the header row "
            "(row 1), using the template's heading, and fill it in."),
    CodeDef("HDR-002", "query", "Unknown column",
            "The column '{header}' is not part of this return and was ignored.{hint} Remove it, or "
            "rename it if it holds one of the return's items."),
    CodeDef("HDR-003", "error", "Duplicate column",
            "The column '{name}' appears more than once ({headers}). Keep one column for it and "
            "remove the others."),
    CodeDef("HDR-004", "error", "No data rows",
            "The file has a header row but no data rows. Fill in the return, one row per {record}, "
            "and upload it again. If you have nothing to report, contact {contact}."),
    CodeDef("HDR-005", "error", "Column without a heading",
            "Column {column} has values but no heading in row 1. Give it the heading of the item it "
            "holds (see the template), or delete the column."),
    # -- rows and cells -------------------------------------------------------------------------
    CodeDef("ROW-001", "error", "Too many rows",
            "The file has {rows} data rows, more than the {limit} allowed. Check that it holds only "
            "this return's data, or contact {contact}.", True),
    CodeDef("ROW-002", "error", "Row does not match the header",
            "This row has {found} values but the header row has {expected} columns. Check for an "
            "extra separator ({delimiter}) in a value; put values containing it in double quotes."),
    CodeDef("CELL-001", "error", "Formula instead of a value",
            "Cell {cell} holds a formula. Submit values only: copy the data and use Paste Special > "
            "Values, then save and upload again."),
    CodeDef("CELL-002", "error", "Merged cells",
            "Cells {cells} are merged. Unmerge them (Home > Merge & Center > Unmerge Cells) and give "
            "each row its own value."),
    # -- values ---------------------------------------------------------------------------------
    CodeDef("TYPE-001", "error", "Value cannot be read as the item's type",
            "{shown} in '{wording}' is not {what}. {expected}"),
    # -- identity -------------------------------------------------------------------------------
    CodeDef("ID-001", "error", "Rows for another council",
            "{detail} {other}, but this file was sent for {council}. Send only your council's "
            "data, from your own folder."),
    CodeDef("ID-002", "error", "File for a different return",
            "This file looks like the {other} return ({evidence}), not {this}. Upload it to the "
            "{other} folder, and send the {this} file here."),
    # -- several tables -------------------------------------------------------------------------
    CodeDef("TBL-001", "error", "Table missing",
            "The {table} table is missing: this return has {count} tables ({tables}), each on its own "
            "{where}. Add the {table} {kind} (the template shows its columns) and upload again."),
    CodeDef("TBL-002", "error", "Unexpected sheet or file",
            "The {kind} '{name}' is not one of this return's tables ({tables}). Rename it to the "
            "table it holds, or remove it, and upload again."),
    CodeDef("TBL-003", "error", "One table sent alone",
            "This return has {count} tables ({tables}). Send them together: the xlsx template with "
            "one sheet per table, or one zip file holding {files}.", True),
    # -- XML schema -----------------------------------------------------------------------------
    CodeDef("XSD-001", "error", "XML does not match the schema",
            "The XML does not match this return's schema (the .xsd file in your folder): {detail}. "
            "Correct the file and upload it again."),
]

CODES: dict[str, CodeDef] = {d.code: d for d in _DEFS}


def issue(code: str, *, row: int | None = None, item: str | None = None, value: str | None = None, **fields: Any) -> Issue:
    """An ``Issue`` for a catalogued code, its message filled from ``fields``."""
    return CODES[code].issue(row=row, item=item, value=value, **fields)


def stops_reading(code: str) -> bool:
    d = CODES.get(code)
    return bool(d and d.stops_reading)

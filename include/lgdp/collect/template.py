"""Collection templates derived from a spec: the files put in each council's folder at opening.

* xlsx returns: a workbook with the data sheet (named after the spec's ``dataset``; row 1 holds
  the item names, so the parser maps it exactly; each heading carries the item's wording as a
  comment; text and code columns are formatted as Text, so codes keep their leading zeros),
  dropdown lists for code items (from a hidden ``lists`` sheet), date, whole-number and
  decimal validation where the spec gives a type or range, and a ``Guidance`` sheet: the return's
  title, period, due date, contact, then one row per item (name, question, guidance, type,
  required, allowed values, range, unit).
* csv returns: a header-only CSV (item names) and the same guidance as a workbook.
* xml returns: the XML Schema (``<dataset>.xsd``, from ``xsd_for``, which the parser validates
  against too), a sample file with one record showing every element, and the guidance workbook.

``template_files(loaded, period_label, due_text)`` returns ``{file name: bytes}``.
"""

from __future__ import annotations

import io
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lgdp.specs.load import LoadedSpec
from lgdp.specs.model import ItemType, ResolvedItem

XSD_TYPES = {
    ItemType.string: "xs:string",
    ItemType.code: "xs:string",
    ItemType.integer: "xs:integer",
    ItemType.decimal: "xs:decimal",
    ItemType.date: "xs:date",
    ItemType.boolean: "xs:boolean",
}

TYPE_WORDS = {
    ItemType.string: "text",
    ItemType.code: "code from the list",
    ItemType.integer: "whole number",
    ItemType.decimal: "number",
    ItemType.date: "date (DD/MM/YYYY)",
    ItemType.boolean: "true or false",
}

TEXT_FORMAT = "@"  # the number format "Text": what is typed in the cell is kept as typed
TEXT_TYPES = (ItemType.string, ItemType.code)

SAMPLE_VALUES = {
    ItemType.string: "example",
    ItemType.integer: "0",
    ItemType.decimal: "0.0",
    ItemType.date: "2025-03-31",
    ItemType.boolean: "false",
}


def file_stem(loaded: LoadedSpec, period_label: str) -> str:
    return f"{loaded.id}_{period_label}"


def xsd_for(loaded: LoadedSpec) -> str:
    """The return's XML Schema: ``<dataset return= council= period=>`` holding ``<record>`` elements.

    Each record holds at most one element per item, in any order (``xs:all``), every one optional:
    a blank value is left out, and whether a required value is present is for validation to say.
    Dates are ``xs:date`` (YYYY-MM-DD), numbers ``xs:integer``/``xs:decimal``, booleans
    ``xs:boolean``; codes are text, with the allowed codes in the documentation (membership is a
    validation rule, so that a wrong code is reported with its row like any other).
    """
    spec = loaded.spec
    if loaded.multi:
        return _xsd_tables(loaded)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="unqualified">',
        "  <xs:annotation><xs:documentation>"
        + escape(f"{spec.title} (return {spec.id}, version {spec.version}). One <record> per row.")
        + "</xs:documentation></xs:annotation>",
        f"  <xs:element name={quoteattr(spec.dataset)}>",
        "    <xs:complexType>",
        "      <xs:sequence>",
        '        <xs:element name="record" type="record" minOccurs="0" maxOccurs="unbounded"/>',
        "      </xs:sequence>",
        '      <xs:attribute name="return" type="xs:string"/>',
        '      <xs:attribute name="council" type="xs:string"/>',
        '      <xs:attribute name="period" type="xs:string"/>',
        "    </xs:complexType>",
        "  </xs:element>",
    ]
    lines += _record_type("record", loaded)
    lines += ["</xs:schema>", ""]
    return "\n".join(lines)


def _record_type(name: str, loaded: LoadedSpec) -> list[str]:
    lines = [f"  <xs:complexType name={quoteattr(name)}>", "    <xs:all>"]
    for it in loaded.items:
        doc = it.wording + (f" Codes: {', '.join(c.code for c in it.codes)}." if it.codes else "")
        lines.append(
            f'      <xs:element name={quoteattr(it.name)} type="{XSD_TYPES[it.type]}" minOccurs="0">'
            f"<xs:annotation><xs:documentation>{escape(doc)}</xs:documentation></xs:annotation></xs:element>"
        )
    return lines + ["    </xs:all>", "  </xs:complexType>"]


def _xsd_tables(loaded: LoadedSpec) -> str:
    """A return of several tables: ``<id return= council= period=>`` holding one element per table
    (``<children>``, ``<episodes>``...), each holding its ``<record>`` elements."""
    spec = loaded.spec
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="unqualified">',
        "  <xs:annotation><xs:documentation>"
        + escape(f"{spec.title} (return {spec.id}, version {spec.version}). One element per table, "
                 "each with one <record> per row.")
        + "</xs:documentation></xs:annotation>",
        f"  <xs:element name={quoteattr(spec.id)}>",
        "    <xs:complexType>",
        "      <xs:sequence>",
    ]
    for view in loaded.tables:
        lines.append(f'        <xs:element name={quoteattr(view.dataset)} type={quoteattr(view.dataset + "_records")}/>')
    lines += [
        "      </xs:sequence>",
        '      <xs:attribute name="return" type="xs:string"/>',
        '      <xs:attribute name="council" type="xs:string"/>',
        '      <xs:attribute name="period" type="xs:string"/>',
        "    </xs:complexType>",
        "  </xs:element>",
    ]
    for view in loaded.tables:
        lines += [
            f"  <xs:complexType name={quoteattr(view.dataset + '_records')}>",
            "    <xs:sequence>",
            f'      <xs:element name="record" type={quoteattr(view.dataset + "_record")} minOccurs="0" maxOccurs="unbounded"/>',
            "    </xs:sequence>",
            "  </xs:complexType>",
        ]
        lines += _record_type(view.dataset + "_record", view)
    lines += ["</xs:schema>", ""]
    return "\n".join(lines)


def sample_xml(loaded: LoadedSpec, period_label: str) -> str:
    spec = loaded.spec
    if loaded.multi:
        parts = ['<?xml version="1.0" encoding="UTF-8"?>',
                 f"<!-- {escape(spec.title)}: one element per table, one <record> per row; leave out an element "
                 "when its value is blank. -->",
                 f'<{spec.id} return={quoteattr(spec.id)} council="S12000000" period={quoteattr(period_label)}>']
        for view in loaded.tables:
            parts += [f"  <{view.dataset}>", "    <record>"]
            for it in view.items:
                value = it.codes[0].code if it.codes else SAMPLE_VALUES.get(it.type, "")
                parts.append(f"      <{it.name}>{escape(value)}</{it.name}>  <!-- {escape(it.wording).replace('--', '-')} -->")
            parts += ["    </record>", f"  </{view.dataset}>"]
        return "\n".join(parts + [f"</{spec.id}>", ""])
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<!-- {escape(spec.title)}: one <record> per row; leave out an element when its value is blank. -->",
        f'<{spec.dataset} return={quoteattr(spec.id)} council="S12000000" period={quoteattr(period_label)}>',
        "  <record>",
    ]
    for it in loaded.items:
        value = it.codes[0].code if it.codes else SAMPLE_VALUES.get(it.type, "")
        note = escape(it.wording).replace("--", "-")
        parts.append(f"    <{it.name}>{escape(value)}</{it.name}>  <!-- {note} -->")
    parts += ["  </record>", f"</{spec.dataset}>", ""]
    return "\n".join(parts)


def _allowed(it: ResolvedItem) -> str:
    if it.codes:
        return "; ".join(f"{c.code} = {c.label}" for c in it.codes)
    parts = []
    if it.minimum is not None or it.maximum is not None:
        lo = "" if it.minimum is None else f"{it.minimum:g}"
        hi = "" if it.maximum is None else f"{it.maximum:g}"
        parts.append(f"from {lo} to {hi}" if lo and hi else (f"at least {lo}" if lo else f"at most {hi}"))
    if it.min_date or it.max_date:
        parts.append(" to ".join(d.strftime("%d/%m/%Y") if d else "" for d in (it.min_date, it.max_date)).strip())
    if it.max_length:
        parts.append(f"at most {it.max_length} characters")
    return "; ".join(parts)


def _guidance_sheet(ws: Any, loaded: LoadedSpec, period_label: str, due_text: str) -> None:
    from openpyxl.styles import Alignment, Font

    spec = loaded.spec
    ws.append([spec.title])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(["Period", period_label])
    ws.append(["Due", due_text])
    ws.append(["Questions to", spec.governance.contact_email])
    if loaded.multi:
        how = ("The return has one sheet per table: " + "; ".join(
            f"'{t.dataset}' ({_table_wording(loaded, t.dataset)})" for t in loaded.tables) + ". "
               "Use the same identifiers in every sheet (an episode's child must be on the children sheet). ")
    else:
        how = f"One row per {spec.dataset.rstrip('s').replace('_', ' ')} on the '{spec.dataset}' sheet. "
    ws.append(["How to fill in", how + "Keep the headings in row 1 as they are; enter values, not formulas; do not "
               "merge cells. Leave a cell blank when there is nothing to report."])
    ws.append([])
    header = ["Column", "Question", "Guidance", "Type", "Required", "Allowed values", "Unit"]
    if loaded.multi:
        header = ["Sheet", *header]
    ws.append(header)
    for c in ws[ws.max_row]:
        c.font = Font(bold=True)
    for t in loaded.tables:
        for it in t.items:
            row = [it.name, it.wording, it.guidance, TYPE_WORDS[it.type], "yes" if it.required else "no",
                   _allowed(it), it.unit or ""]
            ws.append([t.dataset, *row] if loaded.multi else row)
    if "csv" in spec.formats and any(it.type in TEXT_TYPES for it in loaded.items):
        ws.append([])
        ws.append(["Leading zeros", "A spreadsheet opening a CSV turns 021144581 into the number 21144581. "
                   "Import the CSV instead (Excel: Data > From Text/CSV; LibreOffice: set the column type in the "
                   "import dialog) and make the text and code columns Text, or save from your own system directly."])
        ws.cell(row=ws.max_row, column=1).font = Font(bold=True)
    widths = (14, 26, 40, 70, 18, 10, 50, 14) if loaded.multi else (26, 40, 70, 18, 10, 50, 14)
    for col, width in zip("ABCDEFGH", widths):
        ws.column_dimensions[col].width = width
    for row in ws.iter_rows(min_row=8):
        for c in row:
            c.alignment = Alignment(wrap_text=True, vertical="top")


def _save(wb: Any) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def workbook(loaded: LoadedSpec, period_label: str, due_text: str) -> bytes:
    """The xlsx template: one data sheet per table (one for a one-table return), then Guidance."""
    from openpyxl import Workbook

    wb = Workbook()
    first = wb.active
    state: dict[str, Any] = {"lists": None, "list_col": 0}
    sheets = [first] + [wb.create_sheet(view.dataset[:31]) for view in loaded.tables[1:]]
    for ws, view in zip(sheets, loaded.tables):
        _data_sheet(wb, ws, view, state)
    _guidance_sheet(wb.create_sheet("Guidance", len(loaded.tables)), loaded, period_label, due_text)
    return _save(wb)


def _table_wording(loaded: LoadedSpec, name: str) -> str:
    t = next(t for t in loaded.spec.tables if t.name == name)
    return (t.wording or f"one row per {name.rstrip('s').replace('_', ' ')}").rstrip(".")


def _data_sheet(wb: Any, ws: Any, loaded: LoadedSpec, state: dict[str, Any]) -> None:
    """One table's sheet: item names in row 1, wording as comments, validation, Text columns."""
    from openpyxl.comments import Comment
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    ws.title = loaded.dataset[:31]
    ws.append([it.name for it in loaded.items])
    ws.freeze_panes = "A2"
    fill = PatternFill("solid", fgColor="DDEBF7")
    lists = state["lists"]
    list_col = state["list_col"]
    last = 1_048_576
    for j, it in enumerate(loaded.items, start=1):
        letter = get_column_letter(j)
        cell = ws.cell(row=1, column=j)
        cell.font = Font(bold=True)
        cell.fill = fill
        cell.comment = Comment(f"{it.wording}{' (required)' if it.required else ''}\n{it.guidance}".strip(), "LGDP")
        ws.column_dimensions[letter].width = max(12, min(40, len(it.name) + 4))
        rng = f"{letter}2:{letter}{last}"
        dv = None
        if it.codes:
            if lists is None:
                lists = wb.create_sheet("lists")
                lists.sheet_state = "hidden"
            list_col += 1
            lcol = get_column_letter(list_col)
            lists.cell(row=1, column=list_col, value=it.name)
            for k, code in enumerate(it.codes, start=2):
                lists.cell(row=k, column=list_col, value=code.code)
            dv = DataValidation(type="list", formula1=f"lists!${lcol}$2:${lcol}${len(it.codes) + 1}", allow_blank=True)
            dv.error = f"Choose a code from the list for '{it.wording}' (see the Guidance sheet)."
        elif it.type == ItemType.date:
            lo = (it.min_date.toordinal() - 693594) if it.min_date else 1
            hi = (it.max_date.toordinal() - 693594) if it.max_date else 2958465
            dv = DataValidation(type="date", operator="between", formula1=str(lo), formula2=str(hi), allow_blank=True)
            dv.error = "Enter a date as DD/MM/YYYY."
        elif it.type in (ItemType.integer, ItemType.decimal):
            kind = "whole" if it.type == ItemType.integer else "decimal"
            lo = it.minimum if it.minimum is not None else -1e15
            hi = it.maximum if it.maximum is not None else 1e15
            dv = DataValidation(type=kind, operator="between", formula1=f"{lo:g}", formula2=f"{hi:g}", allow_blank=True)
            dv.error = f"Enter {'a whole number' if kind == 'whole' else 'a number'} between {lo:g} and {hi:g}."
        elif it.type == ItemType.boolean:
            dv = DataValidation(type="list", formula1='"true,false"', allow_blank=True)
            dv.error = "Enter true or false."
        if dv is not None:
            dv.errorTitle = it.wording[:32]
            dv.showErrorMessage = True
            dv.add(rng)
            ws.add_data_validation(dv)
        if it.type == ItemType.date:
            ws.column_dimensions[letter].number_format = "dd/mm/yyyy"
        elif it.type in TEXT_TYPES:
            # Text, so 021144581 typed or pasted stays 021144581 (a General cell makes it the number
            # 21144581, and the leading zero is gone before the platform sees the file).
            ws.column_dimensions[letter].number_format = TEXT_FORMAT
    state["lists"], state["list_col"] = lists, list_col


def guidance_workbook(loaded: LoadedSpec, period_label: str, due_text: str) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Guidance"
    _guidance_sheet(ws, loaded, period_label, due_text)
    return _save(wb)


def header_csv(loaded: LoadedSpec) -> bytes:
    return (",".join(it.name for it in loaded.items) + "\r\n").encode("utf-8")


def template_files(loaded: LoadedSpec, period_label: str, due_text: str) -> dict[str, bytes]:
    """The files to upload to each provider council's folder when a period opens."""
    stem = file_stem(loaded, period_label)
    formats = loaded.spec.formats
    out: dict[str, bytes] = {}
    if "xlsx" in formats:
        out[f"{stem}_template.xlsx"] = workbook(loaded, period_label, due_text)
    if "csv" in formats and loaded.multi:
        # one header-only CSV per table, zipped as councils send them back
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for view in loaded.tables:
                zf.writestr(f"{view.dataset}.csv", header_csv(view))
        out[f"{stem}_template_csv.zip"] = buf.getvalue()
    elif "csv" in formats:
        out[f"{stem}_template.csv"] = header_csv(loaded)
    if "xml" in formats:
        out[f"{loaded.spec.dataset or loaded.id}.xsd"] = xsd_for(loaded).encode("utf-8")
        out[f"{stem}_sample.xml"] = sample_xml(loaded, period_label).encode("utf-8")
    if "xlsx" not in formats:
        out[f"{stem}_guidance.xlsx"] = guidance_workbook(loaded, period_label, due_text)
    return out

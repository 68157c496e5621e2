"""Collection templates: derived from the spec, and a template filled in with valid rows parses clean."""

from __future__ import annotations

import dataclasses
import io
import zipfile

import openpyxl
import pytest
import xmlschema

from lgdp import synth
from lgdp.collect.template import template_files, xsd_for
from lgdp.parse import parse_submission
from lgdp.specs.load import load_register

COUNCIL = "S12000036"
PERIODS = {"annual": "2025-26", "quarterly": "2025-26-Q1", "monthly": "2025-07"}
SPECS = {s.id: s for s in load_register().specs}
DUE = "Friday 31 October 2025"


def period(loaded):
    return PERIODS[loaded.spec.collection.frequency.value]


def rows(loaded, n=None):
    return synth.rows(loaded, COUNCIL, period(loaded), n, seed=11).rows


@pytest.mark.parametrize("spec_id", sorted(SPECS))
def test_files_per_format(spec_id):
    loaded = SPECS[spec_id]
    files = template_files(loaded, period(loaded), DUE)
    stem = f"{spec_id}_{period(loaded)}"
    fmts = loaded.spec.formats
    assert (f"{stem}_template.xlsx" in files) == ("xlsx" in fmts)
    assert (f"{stem}_template.csv" in files) == ("csv" in fmts)
    assert (f"{loaded.spec.dataset}.xsd" in files) == ("xml" in fmts)
    if "xlsx" not in fmts:
        assert f"{stem}_guidance.xlsx" in files
    assert all(isinstance(v, bytes) and v for v in files.values())


@pytest.mark.parametrize("spec_id", sorted(SPECS))
def test_workbook_layout(spec_id):
    loaded = dataclasses.replace(SPECS[spec_id], spec=SPECS[spec_id].spec.model_copy(update={"formats": ["xlsx"]}))
    data = template_files(loaded, period(loaded), DUE)[f"{spec_id}_{period(loaded)}_template.xlsx"]
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames[:2] == [loaded.spec.dataset, "Guidance"]
    ws = wb[loaded.spec.dataset]
    assert [c.value for c in ws[1]] == [it.name for it in loaded.items]
    assert ws["A1"].comment is not None and loaded.items[0].wording in ws["A1"].comment.text
    code_items = [it for it in loaded.items if it.codes]
    lists = [dv for dv in ws.data_validations.dataValidation if dv.type == "list" and "lists!" in (dv.formula1 or "")]
    assert len(lists) == len(code_items)
    if code_items:
        assert wb["lists"].sheet_state == "hidden"
        first = code_items[0]
        col = [c.value for c in wb["lists"]["A"]]
        assert col[0] == first.name and col[1:] == [c.code for c in first.codes]
    types = {dv.type for dv in ws.data_validations.dataValidation}
    if any(it.type.value == "date" for it in loaded.items):
        assert "date" in types
    guide = wb["Guidance"]
    text = "\n".join(str(c.value) for row in guide.iter_rows() for c in row if c.value is not None)
    assert loaded.spec.title in text and DUE in text and loaded.spec.governance.contact_email in text
    for it in loaded.items:
        assert it.wording in text and it.name in text
        if it.codes:
            assert f"{it.codes[0].code} = {it.codes[0].label}" in text


@pytest.mark.parametrize("spec_id", sorted(SPECS))
def test_filled_template_parses_clean(spec_id):
    loaded = dataclasses.replace(SPECS[spec_id], spec=SPECS[spec_id].spec.model_copy(update={"formats": ["xlsx"]}))
    data = template_files(loaded, period(loaded), DUE)[f"{spec_id}_{period(loaded)}_template.xlsx"]
    wb = openpyxl.load_workbook(io.BytesIO(data))
    ws = wb[loaded.spec.dataset]
    filled = rows(loaded, 30 if spec_id in ("clas", "social_care_survey") else None)
    for row in filled:
        ws.append([row.get(it.name) for it in loaded.items])
    buf = io.BytesIO()
    wb.save(buf)
    result = parse_submission(loaded, "filled.xlsx", buf.getvalue(), council_code=COUNCIL)
    assert result.issues == []
    assert result.table.drop_columns(["_row_number"]).to_pylist() == [{it.name: r.get(it.name) for it in loaded.items} for r in filled]


def test_empty_template_is_headers_only():
    loaded = SPECS["clas"]
    data = template_files(loaded, "2025-26", DUE)["clas_2025-26_template.xlsx"]
    result = parse_submission(loaded, "clas.xlsx", data)
    assert [i.code for i in result.issues] == ["HDR-004"]


def test_template_has_no_macros_or_formulas():
    data = template_files(SPECS["clas"], "2025-26", DUE)["clas_2025-26_template.xlsx"]
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert not any("vba" in n.lower() for n in names)


def test_header_only_csv_then_filled():
    loaded = SPECS["temporary_accommodation_monthly"]
    files = template_files(loaded, "2025-07", DUE)
    header = files["temporary_accommodation_monthly_2025-07_template.csv"]
    assert header.decode().strip().split(",") == [it.name for it in loaded.items]
    assert [i.code for i in parse_submission(loaded, "ta.csv", header).issues] == ["HDR-004"]
    text = io.StringIO()
    synth.to_csv(rows(loaded), list(loaded.items), text)
    body = text.getvalue().split("\n", 1)[1].replace("\n", "\r\n")
    assert parse_submission(loaded, "ta.csv", header + body.encode(), council_code=COUNCIL).clean


def test_xsd_validates_synth_xml_and_sample():
    loaded = SPECS["social_care_survey"]
    files = template_files(loaded, "2025-26", DUE)
    xsd = files["services.xsd"].decode()
    assert xsd == xsd_for(loaded)
    schema = xmlschema.XMLSchema10(xsd)
    text = io.StringIO()
    synth.write_rows(loaded, rows(loaded, 20), "xml", text, COUNCIL, "2025-26")
    assert schema.is_valid(text.getvalue())
    sample = files["social_care_survey_2025-26_sample.xml"]
    assert schema.is_valid(sample.decode())
    result = parse_submission(loaded, "sample.xml", sample)
    assert result.clean, result.issues


def test_parser_uses_the_same_xsd():
    """An element the XSD does not allow is an XSD-001 issue with its row."""
    loaded = SPECS["social_care_survey"]
    text = io.StringIO()
    synth.write_rows(loaded, rows(loaded, 5), "xml", text, COUNCIL, "2025-26")
    records = text.getvalue().split("<record>")
    records[3] = "<care_plan>yes</care_plan>" + records[3]
    result = parse_submission(loaded, "scs.xml", "<record>".join(records).encode())
    [found] = result.issues
    assert found.code == "XSD-001" and found.row == 4 and "care_plan" in found.message


def test_text_and_code_columns_are_text_and_a_csv_return_warns_about_leading_zeros():
    from openpyxl import load_workbook
    from openpyxl.utils import get_column_letter

    from lgdp.collect.template import template_files
    from lgdp.specs.load import load_register
    from lgdp.specs.model import ItemType

    register = load_register()
    clas = register.get("clas")
    [data] = [v for k, v in template_files(clas, "2025-26", "31 July 2026").items() if k.endswith("_template.xlsx")]
    ws = load_workbook(io.BytesIO(data))[clas.spec.dataset]
    for j, it in enumerate(clas.items, start=1):
        fmt = ws.column_dimensions[get_column_letter(j)].number_format
        assert (fmt == "@") == (it.type in (ItemType.string, ItemType.code)), (it.name, fmt)
    csv_return = next(s for s in register.specs if "csv" in s.spec.formats and "xlsx" not in s.spec.formats)
    files = template_files(csv_return, "2025-26", "31 July 2026")
    [guide] = [v for k, v in files.items() if k.endswith("_guidance.xlsx")]
    text_ = " ".join(str(c.value) for row in load_workbook(io.BytesIO(guide))["Guidance"].iter_rows() for c in row if c.value)
    assert "Leading zeros" in text_ and "021144581" in text_

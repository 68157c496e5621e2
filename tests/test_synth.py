"""Synthetic data: determinism, clean rows valid item by item and rule by rule, exact faults.

The rule semantics are written here a second time, as Python predicates beside each rule code,
so the generator is checked against an independent reading of every rule (true = valid row, as
in the spec). ``test_synth_rules_pg.py`` checks the same rows against the spec's own SQL.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import time
import xml.etree.ElementTree as ET
from collections import Counter
from decimal import Decimal
from typing import Any, Callable

import pytest

from lgdp import synth
from lgdp.specs.load import LoadedSpec, load_register
from lgdp.synth.core import GENERIC_FAULTS, SpecGenerator, add_years

R = dict[str, Any]

# Rule code -> predicate, true for a valid row (the expression's value; NULL counts as not valid).
RULES: dict[str, dict[str, Callable[[R], bool]]] = {
    "clas": {
        "CLAS-E001": lambda r: r["episode_end_date"] is None or r["episode_end_date"] >= r["episode_start_date"],
        "CLAS-E002": lambda r: r["episode_start_date"] >= r["date_of_birth"],
        "CLAS-E003": lambda r: r["episode_start_date"] < add_years(r["date_of_birth"], 18),
        "CLAS-E004": lambda r: r["episode_end_date"] is None or r["reason_ceased"] is not None,
        "CLAS-Q001": lambda r: r["reason_ceased"] is None or r["episode_end_date"] is not None,
        "CLAS-Q002": lambda r: not (r["legal_reason"] == "PO" and r["placement_type"] == "HOME"),
    },
    "la_finance_quarterly": {
        "FIN-E001": lambda r: abs(r["net_expenditure"] - (r["gross_expenditure"] - r["income"])) <= Decimal("0.5"),
        "FIN-Q001": lambda r: r["income"] <= r["gross_expenditure"],
        "FIN-Q002": lambda r: r["staff_fte"] <= r["gross_expenditure"],
    },
    "temporary_accommodation_monthly": {
        "TA-E001": lambda r: r["households_with_children"] <= r["households"],
        "TA-E002": lambda r: r["uao_breaches"] <= r["households"],
        "TA-Q001": lambda r: r["children"] >= r["households_with_children"],
        "TA-Q002": lambda r: r["children"] <= 10 * r["households_with_children"],
    },
    "social_care_survey": {
        "SCS-E001": lambda r: r["service_end_date"] is None or r["service_end_date"] >= r["service_start_date"],
        "SCS-E002": lambda r: r["service_start_date"] >= r["date_of_birth"],
        "SCS-E003": lambda r: r["service_type"] not in ("HOME-CARE", "PA") or r["hours_per_week"] is not None,
        "SCS-Q001": lambda r: r["service_type"] != "CARE-HOME" or r["hours_per_week"] is None,
        "SCS-Q002": lambda r: r["service_type"] != "PA" or (r["sds_option"] or "") in ("1", "2"),
        "SCS-Q003": lambda r: r["hours_per_week"] is None or r["hours_per_week"] <= 84,
    },
}
PERIODS = {"annual": "2025-26", "quarterly": "2025-26-Q2", "monthly": "2025-07"}


@pytest.fixture(scope="module")
def register():
    reg = load_register()
    assert not reg.errors, reg.errors
    return reg


def approved() -> list[LoadedSpec]:
    return load_register().approved()


def period_of(spec: LoadedSpec) -> str:
    return PERIODS[spec.spec.collection.frequency.value]


def n_for(spec: LoadedSpec, wanted: int = 300) -> int:
    limit = synth.generator_for(spec).max_rows()
    return min(wanted, limit) if limit else wanted


def failing(spec_id: str, rows: list[R]) -> dict[str, set[int]]:
    """Rule code -> row numbers (first data row = 2) whose row breaks the rule."""
    return {code: {i + 2 for i, r in enumerate(rows) if not pred(r)} for code, pred in RULES[spec_id].items()}


def key_of(spec: LoadedSpec, row: R) -> tuple[Any, ...]:
    return tuple(row[k] for k in spec.spec.keys)


SPEC_IDS = [s.id for s in approved()]


@pytest.fixture(params=SPEC_IDS)
def spec(request, register) -> LoadedSpec:
    return register.get(request.param)


def test_every_approved_spec_has_its_own_generator_and_a_fault_per_rule(spec: LoadedSpec) -> None:
    gen = synth.generator_for(spec)
    assert type(gen) is not SpecGenerator, f"{spec.id} has no generator module in lgdp/synth/returns"
    codes = [r.code for r in spec.spec.rules]
    assert set(codes) <= set(gen.fault_names())
    assert set(RULES[spec.id]) == set(codes), "write a predicate in RULES for each rule of the spec"


def test_same_seed_same_rows_other_seed_other_rows(spec: LoadedSpec) -> None:
    council = spec.providers[0].code
    n = n_for(spec)
    faults = {synth.fault_names(spec)[-1]: 1, "missing_required": 1}
    a = synth.rows(spec, council, period_of(spec), n, seed=7, faults=faults)
    b = synth.rows(spec, council, period_of(spec), n, seed=7, faults=faults)
    c = synth.rows(spec, council, period_of(spec), n, seed=8, faults=faults)
    assert a.rows == b.rows and a.faults == b.faults
    assert a.rows != c.rows
    assert list(synth.iter_rows(spec, council, period_of(spec), n, seed=7, faults=faults)) == a.rows


def test_faults_change_only_their_own_rows(spec: LoadedSpec) -> None:
    council = spec.providers[-1].code
    n = n_for(spec)
    clean = synth.rows(spec, council, period_of(spec), n, seed=3)
    names = synth.fault_names(spec)
    faulty = synth.rows(spec, council, period_of(spec), n, seed=3, faults={k: 1 for k in names[: n - 1]})
    hit = {f.row_number for f in faulty.faults}
    assert len(hit) == len(faulty.faults)
    assert 2 not in hit, "the first data row stays clean"
    for i, (x, y) in enumerate(zip(clean.rows, faulty.rows)):
        if i + 2 not in hit:
            assert x == y
        else:
            assert x != y or any(f.kind == "duplicate_key" and f.row_number == i + 2 for f in faulty.faults)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_rows_pass_item_checks_keys_and_rules(spec: LoadedSpec, seed: int) -> None:
    for council in (spec.providers[0].code, spec.providers[-1].code):
        result = synth.rows(spec, council, period_of(spec), n_for(spec, 2000), seed=seed)
        assert result.faults == []
        for i, row in enumerate(result.rows):
            assert set(row) == {it.name for it in spec.items}
            assert synth.row_violations(spec, row) == [], (i + 2, row)
            assert row["council_code"] == council
        keys = Counter(key_of(spec, r) for r in result.rows)
        assert max(keys.values()) == 1
        assert all(not rows for rows in failing(spec.id, result.rows).values())


def test_clean_values_have_python_types(spec: LoadedSpec) -> None:
    expected = {"string": str, "code": str, "integer": int, "decimal": Decimal, "date": dt.date, "boolean": bool}
    result = synth.rows(spec, spec.providers[0].code, period_of(spec), n_for(spec, 500), seed=11)
    seen: set[str] = set()
    for row in result.rows:
        for it in spec.items:
            v = row[it.name]
            if v is not None:
                seen.add(it.name)
                assert type(v) is expected[it.type.value], (it.name, v)
    required = {it.name for it in spec.items if it.required}
    assert required <= seen


@pytest.mark.parametrize("seed", [0, 5])
def test_each_rule_fault_breaks_exactly_its_rule_on_the_recorded_rows(spec: LoadedSpec, seed: int) -> None:
    codes = [r.code for r in spec.spec.rules]
    per_rule = 1 if synth.generator_for(spec).max_rows() else 3
    n = n_for(spec, 400)
    for council in (spec.providers[0].code, spec.providers[-1].code):
        result = synth.rows(spec, council, period_of(spec), n, seed=seed, faults={c: per_rule for c in codes})
        got = failing(spec.id, result.rows)
        for code in codes:
            assert got[code] == {f.row_number for f in result.faults_of(code)}, code
        for f in result.faults:
            assert synth.row_violations(spec, result.row(f.row_number)) == [], f
            assert f.item in RULES[spec.id] or f.item in {it.name for it in spec.items}
        assert Counter(key_of(spec, r) for r in result.rows).most_common(1)[0][1] == 1


def test_generic_faults_make_exactly_the_recorded_item_problems(spec: LoadedSpec) -> None:
    generic = [k for k in synth.fault_names(spec) if k in GENERIC_FAULTS and k != "duplicate_key"]
    n = n_for(spec, 300)
    count = 1 if synth.generator_for(spec).max_rows() else 4
    for seed in range(4):
        result = synth.rows(spec, spec.providers[0].code, period_of(spec), n, seed=seed, faults={k: count for k in generic})
        recorded = {(f.row_number, f.item, f.kind) for f in result.faults}
        found = {(i + 2, item, kind) for i, row in enumerate(result.rows) for item, kind in synth.row_violations(spec, row)}
        assert found == recorded
        assert len(result.faults) == count * len(generic)


def test_duplicate_key_copies_the_key_of_an_earlier_clean_row(spec: LoadedSpec) -> None:
    n = n_for(spec, 200)
    count = 2 if synth.generator_for(spec).max_rows() else 5
    result = synth.rows(spec, spec.providers[0].code, period_of(spec), n, seed=2, faults={"duplicate_key": count})
    dups = result.faults_of("duplicate_key")
    assert len(dups) == count
    faulty = {f.row_number for f in result.faults}
    for f in dups:
        assert f.copy_of is not None and f.copy_of < f.row_number and f.copy_of not in faulty
        assert key_of(spec, result.row(f.row_number)) == key_of(spec, result.row(f.copy_of))
    counts = Counter(key_of(spec, r) for r in result.rows)
    assert sum(c - 1 for c in counts.values()) == count


def test_fault_requests_are_checked(register) -> None:
    clas = register.get("clas")
    with pytest.raises(synth.SynthError, match="no fault 'FIN-E001'"):
        synth.rows(clas, "S12000036", "2025-26", 10, faults={"FIN-E001": 1})
    with pytest.raises(synth.SynthError, match="need at least 11 rows"):
        synth.rows(clas, "S12000036", "2025-26", 10, faults={"CLAS-E001": 10})
    with pytest.raises(synth.SynthError, match="whole number"):
        synth.rows(clas, "S12000036", "2025-26", 10, faults={"CLAS-E001": -1})
    with pytest.raises(synth.SynthError, match="at most 10 rows"):
        synth.rows(register.get("la_finance_quarterly"), "S12000036", "2025-26-Q1", 11)
    with pytest.raises(synth.SynthError):
        synth.rows(clas, "S12000036", "July 2025", 10)
    fin = register.get("la_finance_quarterly")
    assert "bad_pattern" not in synth.fault_names(fin)  # no item has a pattern
    assert len(synth.rows(fin, "S12000036", "2025-26-Q1").rows) == 10  # default: one row per service line


def test_row_numbers_count_the_header_as_row_one(register) -> None:
    clas = register.get("clas")
    result = synth.rows(clas, "S12000036", "2025-26", 3, seed=0, faults={"CLAS-Q002": 2})
    assert sorted(f.row_number for f in result.faults) == [3, 4]
    assert result.faults[0].index == 1
    assert result.rows[0]["placement_type"] != "HOME" or result.rows[0]["legal_reason"] != "PO"


def test_unknown_specs_fall_back_to_the_generic_generator(register) -> None:
    for base in register.approved():
        other = dataclasses.replace(base, spec=base.spec.model_copy(update={"id": "not_a_known_return"}))
        gen = synth.generator_for(other)
        assert type(gen) is SpecGenerator
        assert not set(gen.fault_names()) - set(GENERIC_FAULTS), "the generic generator makes no rule faults"
        limit = gen.max_rows()
        assert limit == synth.generator_for(base).max_rows()
        result = synth.rows(other, other.providers[0].code, period_of(other), min(200, limit or 200), seed=1)
        assert all(synth.row_violations(other, r) == [] for r in result.rows)
        assert Counter(key_of(other, r) for r in result.rows).most_common(1)[0][1] == 1
        generic = {k: 1 for k in gen.fault_names()}
        faulty = synth.rows(other, other.providers[0].code, period_of(other), min(50, limit or 50), seed=1, faults=generic)
        found = {(i + 2, item, kind) for i, row in enumerate(faulty.rows) for item, kind in synth.row_violations(other, row)}
        assert found == {(f.row_number, f.item, f.kind) for f in faulty.faults if f.kind != "duplicate_key"}


def test_csv_writer(register) -> None:
    clas = register.get("clas")
    result = synth.rows(clas, "S12000036", "2025-26", 20, seed=4)
    buf = io.StringIO()
    assert synth.to_csv(result.rows, clas.items, buf) == 20
    lines = list(csv.reader(io.StringIO(buf.getvalue())))
    assert lines[0] == [it.name for it in clas.items]
    assert len(lines) == 21
    for line, row in zip(lines[1:], result.rows):
        text = dict(zip(lines[0], line))
        assert text["date_of_birth"] == row["date_of_birth"].isoformat()
        assert text["episode_end_date"] == (row["episode_end_date"].isoformat() if row["episode_end_date"] else "")
        assert text["number_of_placements"] == str(row["number_of_placements"])


def test_xlsx_writer(register, tmp_path) -> None:
    from openpyxl import load_workbook

    fin = register.get("la_finance_quarterly")
    path = tmp_path / "fin.xlsx"
    faults = synth.write_sample(fin, "S12000036", "2025-26-Q1", None, None, path, seed=1, faults={"FIN-E001": 1})
    assert [f.kind for f in faults] == ["FIN-E001"]
    wb = load_workbook(path, read_only=True)
    assert wb.sheetnames == ["service_lines"]
    values = list(wb["service_lines"].iter_rows(values_only=True))
    assert list(values[0]) == [it.name for it in fin.items]
    assert len(values) == 11
    expected = synth.rows(fin, "S12000036", "2025-26-Q1", None, seed=1, faults={"FIN-E001": 1}).rows
    assert [Decimal(str(v[2])) for v in values[1:]] == [r["gross_expenditure"] for r in expected]


def test_xml_writer(register, tmp_path) -> None:
    scs = register.get("social_care_survey")
    path = tmp_path / "scs.xml"
    synth.write_sample("social_care_survey", "S12000036", "2025-26", 50, "xml", path, seed=2)
    root = ET.parse(path).getroot()
    assert root.tag == scs.spec.dataset and root.get("council") == "S12000036" and root.get("period") == "2025-26"
    records = root.findall("record")
    assert len(records) == 50
    rows = synth.rows(scs, "S12000036", "2025-26", 50, seed=2).rows
    for rec, row in zip(records, rows):
        assert rec.findtext("client_id") == row["client_id"]
        assert rec.findtext("service_start_date") == row["service_start_date"].isoformat()
        assert (rec.find("hours_per_week") is None) == (row["hours_per_week"] is None)
        if row["lives_alone"] is not None:
            assert rec.findtext("lives_alone") == ("true" if row["lives_alone"] else "false")


@pytest.mark.slow
def test_a_million_clas_rows_stream_quickly(register) -> None:
    clas = register.get("clas")
    started = time.perf_counter()
    stream = synth.iter_rows(clas, "S12000036", "2025-26", 1_000_000, seed=0, faults={"CLAS-E001": 10, "duplicate_key": 10})
    count = sum(1 for _ in stream)
    assert count == 1_000_000
    assert time.perf_counter() - started < 45

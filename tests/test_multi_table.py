"""The multi-table CLAS return (return_specs/clas.yaml) against a real PostgreSQL and Soda.

Each rule of the spec (and each parent link) has a synthetic fault mode: a dataset with that
fault is loaded into the three staging tables and validated, and the rows the rule flags are
exactly the rows the fault damaged (table and the council's row number). Year-on-year rules read
a clean submission of the previous year loaded as the council's previous version. A clean
submission (and a clean one after a clean previous year) flags nothing. Over a submission holding
every fault at once, the row-level counts equal Soda's counts for every table (drift test).
Also: the SQL really is scoped to one council, period and version; a rule whose SQL fails at run
time or runs past the timeout is a platform fault (ValidationRuntimeError), never a pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from lgdp import synth
from lgdp.ingest.arrow import table_from_rows
from lgdp.ingest.load import load_version
from lgdp.specs.load import LoadedSpec, load_register
from lgdp.synth.returns.clas_tables import FAULT_CODES
from lgdp.validate import ValidationRuntimeError, checks, failing_rows, verify
from lgdp.validate.checks import sql_variables
from lgdp.validate.reference import ensure_reference_tables
from lgdp.validate.rows import count_by_code

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "return_specs"
PERIOD, PREVIOUS = "2025-26", "2024-25"
COUNCIL = "S12000036"
_versions = itertools.count(7_000_001)


def clas() -> LoadedSpec:
    return load_register(SPECS).get("clas")


@pytest.fixture(scope="module")
def pg(ledger_url: str) -> Iterator[Connection]:
    engine = create_engine(ledger_url)
    with engine.connect() as conn:
        for t in ("children", "episodes", "placements"):
            conn.execute(text(f'DROP TABLE IF EXISTS lgdp_staging."clas.{t}"'))
        ensure_reference_tables(conn, clas().reference)
        conn.commit()
        yield conn
    engine.dispose()


def submit(pg: Connection, spec: LoadedSpec, council: str, period: str, tables: dict[str, list[dict]]) -> int:
    version = next(_versions)
    for view in spec.tables:
        load_version(pg, view, version, council, period, table_from_rows(view, tables[view.dataset]))
    pg.connection.driver_connection.commit()
    return version


def issues_of(pg: Connection, spec: LoadedSpec, council: str, period: str, version: int, previous: int | None = None):
    out = []
    for view in spec.tables:
        out += failing_rows(pg, view, council, period, version, sql_variables(view, council, period, version, previous))
    return out


def flagged(issues, code: str) -> set[tuple[str | None, int | None]]:
    return {(i.table, i.row) for i in issues if i.code == code}


@pytest.fixture(scope="module")
def previous_year(pg: Connection) -> int:
    spec = clas()
    prev = synth.tables(spec, COUNCIL, PREVIOUS, 150, seed=5)
    return submit(pg, spec, COUNCIL, PREVIOUS, prev.tables)


def test_the_spec_has_the_rule_book_the_issue_asks_for() -> None:
    spec = clas()
    assert [t.dataset for t in spec.tables] == ["children", "episodes", "placements"]
    rules = spec.spec.rules
    queries = [r for r in rules if r.is_query]
    assert len(rules) >= 25 and len(queries) >= 10
    # every rule has a fault mode, and so has every parent link
    assert {r.code for r in rules} | {"LINK-episodes", "LINK-placements"} <= set(synth.fault_names(spec))
    sql = " ".join(r.sql for r in rules)
    assert "previous." in sql and ":period_end" in sql and "reference." in sql and "OVER (" in sql


def test_clean_submission_flags_nothing(pg: Connection, previous_year: int) -> None:
    spec = clas()
    data = synth.tables(spec, COUNCIL, PERIOD, 150, seed=5)
    version = submit(pg, spec, COUNCIL, PERIOD, data.tables)
    assert issues_of(pg, spec, COUNCIL, PERIOD, version, previous_year) == []
    # and the previous year's submission on its own is clean too
    assert issues_of(pg, spec, COUNCIL, PREVIOUS, previous_year) == []


@pytest.mark.parametrize("fault", synth.fault_names(clas()))
def test_each_fault_is_flagged_at_exactly_its_rows(pg: Connection, previous_year: int, fault: str) -> None:
    spec = clas()
    data = synth.tables(spec, COUNCIL, PERIOD, 150, seed=5, faults={fault: 2})
    assert len(data.faults) == 2, data.faults
    version = submit(pg, spec, COUNCIL, PERIOD, data.tables)
    found = issues_of(pg, spec, COUNCIL, PERIOD, version, previous_year)
    code = FAULT_CODES.get(fault, fault)
    assert flagged(found, code) == {(f.table, f.row_number) for f in data.faults}, [str(i) for i in found if i.code == code]


def test_every_fault_at_once_agrees_with_soda(pg: Connection, previous_year: int, ledger_url: str) -> None:
    spec = clas()
    faults = {name: 1 for name in synth.fault_names(spec)}
    data = synth.tables(spec, COUNCIL, PERIOD, 400, seed=9, faults=faults)
    version = submit(pg, spec, COUNCIL, PERIOD, data.tables)
    for view in spec.tables:
        rows = failing_rows(pg, view, COUNCIL, PERIOD, version, sql_variables(view, COUNCIL, PERIOD, version, previous_year))
        soda = verify(view, ledger_url, COUNCIL, PERIOD, version, previous_year)
        assert count_by_code(view, rows) == soda, view.dataset
        assert sum(soda.values()) > 0
        assert all(i.table == view.dataset for i in rows)


def test_rules_read_only_the_submission_they_check(pg: Connection) -> None:
    """Another council's rows, and the same council's other period, never reach a rule."""
    spec = clas()
    mine = synth.tables(spec, COUNCIL, PERIOD, 60, seed=21)
    version = submit(pg, spec, COUNCIL, PERIOD, mine.tables)
    # the same children, with an overlapping episode each, sent by Glasgow: Edinburgh's version is still clean
    other = synth.tables(spec, COUNCIL, PERIOD, 60, seed=21, faults={"CLAS-E020": 5, "CLAS-E024": 5})
    glasgow = {t: [dict(r, council_code="S12000049") if "council_code" in r else dict(r) for r in rows]
               for t, rows in other.tables.items()}
    submit(pg, spec, "S12000049", PERIOD, glasgow)
    assert issues_of(pg, spec, COUNCIL, PERIOD, version) == []


def test_the_rule_book_in_force_depends_on_the_period() -> None:
    spec = clas()
    now = spec.for_period("2025-26")
    later = spec.for_period("2026-27")
    assert now.spec.version == 2 and later.spec.version == 3
    codes_now = {c.code for t in now.tables for c in checks(t)}
    codes_later = {c.code for t in later.tables for c in checks(t)}
    assert "CLAS-Q020" in codes_now and "CLAS-Q020" not in codes_later
    assert "CLAS-E030" in codes_later and "CLAS-E030" not in codes_now
    assert "latest_review_date" in [i.name for i in later.table("episodes").items]
    assert "latest_review_date" not in [i.name for i in now.table("episodes").items]
    assert later.for_period("2026-27") is later


def test_a_rule_failing_at_run_time_is_a_platform_fault(pg: Connection, tmp_path: Path, monkeypatch) -> None:
    spec = _spec_with_rule(tmp_path, "SELECT e._row_number FROM episodes e WHERE 1 / (e.child_id = e.child_id)::int - 1 = 0 "
                                     "OR 1 / 0 = 1")
    data = synth.tables(spec, COUNCIL, PERIOD, 20, seed=1)
    version = submit(pg, spec, COUNCIL, PERIOD, data.tables)
    view = spec.table("episodes")
    with pytest.raises(ValidationRuntimeError, match="platform fault"):
        failing_rows(pg, view, COUNCIL, PERIOD, version, sql_variables(view, COUNCIL, PERIOD, version, None))
    pg.connection.driver_connection.rollback()


def test_a_rule_past_the_timeout_is_a_platform_fault(pg: Connection, tmp_path: Path, monkeypatch) -> None:
    spec = _spec_with_rule(tmp_path, "SELECT e._row_number FROM episodes e WHERE (SELECT count(*) FROM generate_series(1, 300000000)) < 0")
    data = synth.tables(spec, COUNCIL, PERIOD, 20, seed=1)
    version = submit(pg, spec, COUNCIL, PERIOD, data.tables)
    view = spec.table("episodes")
    monkeypatch.setenv("LGDP_RULE_TIMEOUT_S", "0.5")
    with pytest.raises(ValidationRuntimeError, match="timeout"):
        failing_rows(pg, view, COUNCIL, PERIOD, version, sql_variables(view, COUNCIL, PERIOD, version, None))
    pg.connection.driver_connection.rollback()


def _spec_with_rule(tmp_path: Path, query: str) -> LoadedSpec:
    import yaml

    data = yaml.safe_load((SPECS / "clas.yaml").read_text())
    data["rules"].append({"code": "CLAS-E099", "severity": "error", "table": "episodes", "message": "A test rule.",
                          "items": ["child_id"], "query": query})
    data["changes"] = []
    (tmp_path / "clas.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "shared").symlink_to(SPECS / "shared")
    return load_register(tmp_path).get("clas")


# --- files councils receive and send --------------------------------------------------------


def test_template_has_one_sheet_per_table_and_reads_back() -> None:
    import io
    import zipfile

    from openpyxl import load_workbook

    from lgdp.collect.template import template_files
    from lgdp.parse import parse_submission

    spec = clas()
    files = template_files(spec, PERIOD, "Thursday 1 October 2026")
    book = load_workbook(io.BytesIO(files["clas_2025-26_template.xlsx"]))
    assert book.sheetnames[:4] == ["children", "episodes", "placements", "Guidance"]
    assert [c.value for c in book["episodes"][1]] == [i.name for i in spec.table("episodes").items]
    guidance = [[c.value for c in row] for row in book["Guidance"].iter_rows()]
    assert ["Sheet", "Column", "Question", "Guidance", "Type", "Required", "Allowed values", "Unit"] in guidance
    with zipfile.ZipFile(io.BytesIO(files["clas_2025-26_template_csv.zip"])) as zf:
        assert sorted(zf.namelist()) == ["children.csv", "episodes.csv", "placements.csv"]
    # the empty template reads back as three empty tables: nothing unexpected, nothing missing
    result = parse_submission(spec, "template.xlsx", files["clas_2025-26_template.xlsx"], council_code=COUNCIL)
    assert sorted((i.code, i.table) for i in result.issues) == [
        ("HDR-004", "children"), ("HDR-004", "episodes"), ("HDR-004", "placements")]


def _xlsx(tables: dict[str, list[dict]], spec: LoadedSpec, drop: str | None = None, extra: str | None = None) -> bytes:
    import io

    from lgdp.synth.writers import to_xlsx_tables

    items = {t.dataset: list(t.items) for t in spec.tables}
    chosen = {k: v for k, v in tables.items() if k != drop}
    if extra:
        chosen[extra] = tables["children"][:3]
        items[extra] = items["children"]
    buf = io.BytesIO()
    to_xlsx_tables(chosen, items, buf)
    return buf.getvalue()


def test_xlsx_and_zipped_csv_give_the_same_tables() -> None:
    import io

    from lgdp.parse import parse_submission
    from lgdp.synth.writers import to_csv_zip

    spec = clas()
    data = synth.tables(spec, COUNCIL, PERIOD, 80, seed=2)
    a = parse_submission(spec, "clas.xlsx", _xlsx(data.tables, spec), council_code=COUNCIL)
    buf = io.BytesIO()
    to_csv_zip(data.tables, {t.dataset: list(t.items) for t in spec.tables}, buf)
    b = parse_submission(spec, "clas.zip", buf.getvalue(), council_code=COUNCIL)
    from lgdp.synth.writers import to_xml_tables

    xml = io.BytesIO()
    to_xml_tables(spec, data.tables, xml, COUNCIL, PERIOD)
    c = parse_submission(spec, "clas.xml", xml.getvalue(), council_code=COUNCIL)
    assert a.issues == [] and b.issues == [] and c.issues == [], [str(i) for i in c.issues][:5]
    assert a.tables is not None and b.tables is not None and c.tables is not None
    for name in ("children", "episodes", "placements"):
        assert a.tables[name].num_rows == len(data.tables[name])
        assert a.tables[name].equals(b.tables[name]), name
        assert a.tables[name].equals(c.tables[name]), name


def test_xml_of_several_tables_gets_table_issues_and_the_xsd() -> None:
    from xml.etree import ElementTree as ET

    from lgdp.collect.template import sample_xml, template_files, xsd_for
    from lgdp.parse import parse_submission

    spec = clas()
    xsd = xsd_for(spec)
    assert '<xs:element name="clas">' in xsd and '<xs:element name="episodes" type="episodes_records"/>' in xsd
    files = template_files(spec, PERIOD, "Thursday 1 October 2026")
    assert "clas.xsd" in files and "clas_2025-26_sample.xml" in files
    import xmlschema

    assert xmlschema.XMLSchema10(xsd).is_valid(sample_xml(spec, PERIOD))
    doc = ("<clas return='clas' council='S12000036' period='2025-26'><children><record><child_id>C1</child_id>"
           "<date_of_birth>not a date</date_of_birth></record></children><carers/></clas>").encode()
    r = parse_submission(spec, "clas.xml", doc, council_code=COUNCIL)
    got = {(i.code, i.table) for i in r.issues}
    assert ("TBL-002", None) in got and ("TBL-001", "episodes") in got and ("TBL-001", "placements") in got
    assert ("TYPE-001", "children") in got and r.tables is None
    assert [i.row for i in r.issues if i.code == "TYPE-001"] == [2]
    wrong = parse_submission(spec, "clas.xml", b"<episodes><record/></episodes>", council_code=COUNCIL)
    assert [i.code for i in wrong.issues] == ["XSD-001"] and "outermost element must be <clas>" in wrong.issues[0].message
    bomb = parse_submission(spec, "clas.xml", b'<!DOCTYPE x [<!ENTITY a "aaaa">]><clas>&a;</clas>', council_code=COUNCIL)
    assert [i.code for i in bomb.issues] == ["FILE-007"]


def test_missing_and_unexpected_tables_are_clear_issues() -> None:
    from lgdp.parse import parse_submission

    spec = clas()
    data = synth.tables(spec, COUNCIL, PERIOD, 30, seed=2)
    result = parse_submission(spec, "clas.xlsx", _xlsx(data.tables, spec, drop="placements", extra="Sheet2"),
                              council_code=COUNCIL)
    got = {(i.code, i.table) for i in result.issues}
    assert ("TBL-001", "placements") in got and ("TBL-002", None) in got
    assert result.tables is None  # nothing is loaded from an incomplete submission
    msg = next(i.message for i in result.issues if i.code == "TBL-002")
    assert "'Sheet2'" in msg and "children, episodes, placements" in msg
    single = parse_submission(spec, "episodes.csv", b"child_id,episode_start_date\nC1,2025-09-01\n", council_code=COUNCIL)
    assert [i.code for i in single.issues] == ["TBL-003"] and "children.csv, episodes.csv, placements.csv" in single.issues[0].message


def test_hostile_multi_table_files_get_a_message(tmp_path: Path) -> None:
    import io
    import zipfile

    from lgdp.parse import parse_submission
    from lgdp.parse.limits import Limits

    spec = clas()
    # a zip bomb posing as a CSV bundle: refused before anything is expanded
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("children.csv", b"child_id\n" + b"0" * 300_000_000)
    r = parse_submission(spec, "clas.zip", buf.getvalue(), council_code=COUNCIL)
    assert [i.code for i in r.issues] == ["FILE-005"] and r.tables is None
    # a child table over the row limit: one clear issue naming the table, nothing loaded
    data = synth.tables(spec, COUNCIL, PERIOD, 60, seed=2)
    limited = Limits.from_env()
    limited = type(limited)(**{**limited.__dict__, "max_rows": 50}) if hasattr(limited, "__dict__") else limited
    r = parse_submission(spec, "clas.xlsx", _xlsx(data.tables, spec), council_code=COUNCIL, limits=limited)
    assert ("ROW-001", "episodes") in {(i.code, i.table) for i in r.issues}
    assert r.tables is None
    # duplicate children: each repeat flagged with the row it repeats (KEY-DUP on children)
    dup = synth.tables(spec, COUNCIL, PERIOD, 30, seed=2, faults={"duplicate_key": 3})
    assert len(dup.faults) == 3


# --- through the pipeline: a file, its outcome, its feedback and the delivery -----------------


def test_the_pipeline_takes_a_multi_table_file_end_to_end(clean_ledger, tmp_path: Path, monkeypatch) -> None:
    """A council's workbook of three sheets: archived, loaded into three tables, validated (rows and
    Soda agree), rejected with issues naming sheet and row, a feedback workbook with a Sheet column;
    the corrected file is accepted and delivered to a requester as one file per table, with the
    manifest giving each file's table, rows and column types."""
    import io
    import json

    import yaml
    from openpyxl import load_workbook

    from lgdp.collect.feedback import FeedbackMeta, build_workbook
    from lgdp.collect.process import process_file
    from lgdp.collect.respond import accepted_csv, version_feedback
    from lgdp.distribute.deliver import deliver
    from lgdp.ledger.db import session
    from lgdp.ledger.register import open_period
    from lgdp.periods import period_from_label

    # the real spec, delivered locally (the requester's Azure container is another test's business)
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "shared").symlink_to(SPECS / "shared")
    data = yaml.safe_load((SPECS / "clas.yaml").read_text())
    data["distribution"] = [d for d in data["distribution"] if d["requester"] == "improvement_service"]
    (folder / "clas.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("LGDP_SPECS_DIR", str(folder))
    monkeypatch.setenv("LGDP_DELIVERY_DIR", str(tmp_path / "deliveries"))
    spec = load_register(folder).get("clas")
    with session() as s, s.begin():
        open_period(s, spec, period_from_label(spec.spec.collection, PERIOD))

    bad = synth.tables(spec, COUNCIL, PERIOD, 120, seed=4, faults={"CLAS-E020": 1, "CLAS-E021": 1, "LINK-episodes": 1})
    ref = {"name": "clas.xlsx", "id": "item-1", "etag": "e1", "path": "clas.xlsx"}
    outcome = process_file(spec, PERIOD, COUNCIL, ref, _xlsx(bad.tables, spec))
    assert outcome.status == "rejected"
    assert outcome.rows == sum(len(v) for v in bad.tables.values())
    got = {(i.code, i.table, i.row) for i in outcome.issues}
    for f in bad.faults:
        assert (f.kind, f.table, f.row_number) in got
    meta, issues, _ = version_feedback(spec, PERIOD, COUNCIL, outcome.version_id)
    book = load_workbook(io.BytesIO(build_workbook(meta, issues)))
    rows = [[c.value for c in r] for r in book["Issues"].iter_rows()]
    assert rows[0][:3] == ["Sheet", "Row", "Column"]
    assert ["episodes", bad.faults_of("CLAS-E020")[0].row_number] in [r[:2] for r in rows if r[4] == "CLAS-E020"]
    tables = [r[0] for r in rows[1:]]
    assert tables == sorted(tables)  # grouped by sheet

    good = synth.tables(spec, COUNCIL, PERIOD, 120, seed=4)
    ref = {"name": "clas_v2.xlsx", "id": "item-2", "etag": "e2", "path": "clas_v2.xlsx"}
    outcome = process_file(spec, PERIOD, COUNCIL, ref, _xlsx(good.tables, spec))
    assert outcome.status == "accepted", [str(i) for i in outcome.issues]
    import zipfile

    with zipfile.ZipFile(io.BytesIO(accepted_csv(spec, outcome.version_id))) as zf:
        assert sorted(zf.namelist()) == ["children.csv", "episodes.csv", "placements.csv"]

    dist = spec.spec.distribution[0]
    result = deliver(spec, PERIOD, dist)
    assert result.published
    out = next((tmp_path / "deliveries").rglob("manifest.json"))
    manifest = json.loads(out.read_text())
    data_files = {f["table"]: f for f in manifest["files"] if f["content"] == "data"}
    assert set(data_files) == {"children", "episodes", "placements"}
    assert data_files["episodes"]["rows"] == len(good.tables["episodes"])
    assert data_files["children"]["name"] == "clas_children_2025-26.csv"
    header = (out.parent / "clas_episodes_2025-26.csv").read_text().splitlines()[0]
    assert header.replace('"', "").split(",") == ["legal_reason", "episode_start_date", "episode_end_date"] or set(
        header.replace('"', "").split(",")) == {"legal_reason", "episode_start_date", "episode_end_date"}


def test_lgdp_check_reads_a_multi_table_workbook(tmp_path: Path, capsys) -> None:
    from lgdp.cli import main

    spec = clas()
    data = synth.tables(spec, COUNCIL, PERIOD, 50, seed=3, faults={"CLAS-E020": 1, "LINK-placements": 1})
    path = tmp_path / "clas.xlsx"
    path.write_bytes(_xlsx(data.tables, spec))
    import os

    os.environ["LGDP_SPECS_DIR"] = str(SPECS)
    try:
        assert main(["check", "--return", "clas", "--council", COUNCIL, "--period", PERIOD, str(path)]) == 1
    finally:
        os.environ["LGDP_SPECS_DIR"] = str(ROOT / "tests" / "specs_one_table")
    out = capsys.readouterr().out
    for f in data.faults:
        assert f"{f.kind} error [sheet {f.table}, row {f.row_number}," in out


def test_a_sheet_bomb_is_refused_once_before_any_sheet_is_read() -> None:
    import io
    import zipfile

    from lgdp.parse import parse_submission

    spec = clas()
    data = synth.tables(spec, COUNCIL, PERIOD, 10, seed=2)
    book = io.BytesIO(_xlsx(data.tables, spec))
    out = io.BytesIO()
    with zipfile.ZipFile(book) as src, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "xl/worksheets/sheet2.xml":  # the episodes sheet, blown up with blanks
                body = body.replace(b"</sheetData>", b"</sheetData>" + b" " * 400_000_000)
            dst.writestr(info, body)
    r = parse_submission(spec, "clas.xlsx", out.getvalue(), council_code=COUNCIL)
    assert [i.code for i in r.issues] == ["FILE-005"] and r.tables is None and not r.readable


# --- through Airflow: the collect task, the real trigger, the Graph stand-in ------------------


@pytest.mark.airflow
@pytest.mark.slow
def test_one_csv_per_table_dropped_one_by_one_is_one_submission(m365, smtp, airflow_db, clean_ledger, tmp_path, monkeypatch):
    """The real multi-table CLAS for one council through ``dag.test()``: the council drops
    children.csv and episodes.csv, the task waits, placements.csv follows; the three are processed
    as one submission (one version, every row of every table loaded, accepted, one email), each
    file's bytes kept in the archived zip."""
    import io
    import re
    import threading
    import time
    import zipfile

    from sqlalchemy import text

    from lgdp.collect.graph import folder_path
    from lgdp.ledger.db import engine
    from lgdp.periods import period_opening_at
    from lgdp.synth.writers import to_csv

    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "shared").symlink_to(SPECS / "shared")
    text_ = (SPECS / "clas.yaml").read_text().replace("providers: all", f"providers: [{COUNCIL}]")
    text_ = re.sub(r"closes_days_after_opening: \d+", "closes_days_after_opening: 500", text_)
    text_ = text_[: text_.index("\nreminders:")] + "\n"  # reminders and delivery are tested elsewhere
    (folder / "clas.yaml").write_text(text_)
    monkeypatch.setenv("LGDP_SPECS_DIR", str(folder))
    monkeypatch.setenv("LGDP_POLL_INTERVAL_SECONDS", "0.5")
    spec = load_register(folder).get("clas")
    import datetime as dt

    period = period_opening_at(spec.collection if hasattr(spec, "collection") else spec.spec.collection,
                               dt.datetime.now(dt.timezone.utc)).label
    data = synth.tables(spec, COUNCIL, period, 40, seed=8)
    files = {}
    for view in spec.tables:
        buf = io.StringIO()
        to_csv(data.tables[view.dataset], list(view.items), buf)
        files[view.dataset] = buf.getvalue().encode()
    where = folder_path("clas", period, COUNCIL)
    m365.put_file(f"{where}/children.csv", files["children"])
    m365.put_file(f"{where}/episodes.csv", files["episodes"])

    def last_file_later() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(n.endswith(".xlsx") for n in m365.list_names(f"{where}/_platform")):
            time.sleep(0.3)
        time.sleep(4)  # the collect task has listed the folder and is waiting for placements.csv
        m365.put_file(f"{where}/placements.csv", files["placements"])

    council = threading.Thread(target=last_file_later, daemon=True)
    council.start()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    run = bag.dags["return_clas"].test(run_conf={"period": period})
    council.join(5)
    assert run.state == "success"
    with engine().connect() as conn:
        versions = conn.execute(text(
            "SELECT v.version, v.status::text, v.rows_loaded, v.filename, v.file_sha256 FROM lgdp.submission_versions v "
            "JOIN lgdp.expected_submissions e ON e.id = v.submission_id WHERE e.council_code = :c ORDER BY 1"),
            {"c": COUNCIL}).all()
        assert len(versions) == 1, versions
        [(number, status, rows, name, sha)] = versions
        kept = bytes(conn.execute(text("SELECT content FROM lgdp.archived_files WHERE sha256 = :s"), {"s": sha}).scalar_one())
    assert status == "accepted" and rows == sum(len(v) for v in data.tables.values())
    assert name == f"clas_{period}_children+episodes+placements.zip"
    with zipfile.ZipFile(io.BytesIO(kept)) as zf:
        assert {n: zf.read(f"{n}.csv") for n in files} == files
    outcome = [m for m in smtp.messages if ", version " in m["Subject"]]
    assert len(outcome) == 1 and "accepted" in outcome[0]["Subject"]


def test_the_contract_cli_prints_one_contract_per_table(capsys) -> None:
    import os

    import yaml as _yaml

    from lgdp.cli import main

    os.environ["LGDP_SPECS_DIR"] = str(SPECS)
    try:
        assert main(["specs", "contract", "clas", "--database", "lgdp"]) == 0
    finally:
        os.environ["LGDP_SPECS_DIR"] = str(ROOT / "tests" / "specs_one_table")
    docs = list(_yaml.safe_load_all(capsys.readouterr().out))
    assert [d["dataset"] for d in docs] == [f"lgdp/lgdp/lgdp_staging/clas.{t}" for t in ("children", "episodes", "placements")]
    episodes = docs[1]
    queries = {c["failed_rows"]["qualifier"] for c in episodes["checks"] if "failed_rows" in c and "query" in c["failed_rows"]}
    assert {"CLAS-E020", "CLAS-Q020", "LINK-episodes"} <= queries
    assert "PREVIOUS" in episodes["variables"] and "PERIOD_END" in episodes["variables"]
    with pytest.raises(ValueError, match="several tables"):
        checks(clas())

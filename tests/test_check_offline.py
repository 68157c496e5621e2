"""``lgdp check`` runs the full validation offline and prints what the council would be told.

Real PostgreSQL throughout: the session's server (``LGDP_DATABASE_URL``) gets a scratch database
per check, dropped afterwards; one test unsets the variable so the check starts (and deletes) its
own embedded server. Synthetic CLAS workbooks with known faults give exactly the expected codes
at exactly the expected rows, and the same issues, field for field, as collection's
``process_file`` records for the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from lgdp import synth
from lgdp.cli import main
from lgdp.specs.load import load_register

CLAS = load_register().get("clas")
COUNCIL, PERIOD = "S12000036", "2025-26"
GENERIC_CODE = {"missing_required": "REQ", "bad_code": "CODE", "out_of_range": "RANGE", "bad_date": "RANGE",
                "bad_pattern": "FMT"}
# Faults whose damage breaks no cross-item rule (so the expected issues are exactly the planted ones).
FAULTS = {"CLAS-E001": 2, "CLAS-E004": 1, "CLAS-Q002": 1, "duplicate_key": 1, "bad_pattern": 1, "out_of_range": 1}


def expected_code(f: synth.Fault) -> str:
    if f.kind == "duplicate_key":
        return "KEY-DUP"
    if f.kind in GENERIC_CODE:
        return f"{GENERIC_CODE[f.kind]}-{f.item}"
    return f.kind


def sample(tmp_path: Path, faults: dict[str, int] | None = None, n: int = 150, seed: int = 4) -> tuple[Path, list]:
    path = tmp_path / "clas.xlsx"
    planted = synth.write_sample(CLAS, COUNCIL, PERIOD, n, "xlsx", path, seed=seed, faults=faults)
    return path, planted


def check_json(capsys, *args: str) -> tuple[int, dict]:
    status = main(["check", "--return", "clas", "--json", *args])
    return status, json.loads(capsys.readouterr().out)


def scratch_databases(server_url: str) -> list[str]:
    eng = create_engine(server_url)
    try:
        with eng.connect() as conn:
            query = text("SELECT datname FROM pg_database WHERE datname LIKE 'lgdp_check_%'")
            return list(conn.execute(query).scalars())
    finally:
        eng.dispose()


def test_faults_give_exactly_the_planted_issues(tmp_path, capsys, server_url) -> None:
    path, planted = sample(tmp_path, FAULTS)
    status, doc = check_json(capsys, "--council", COUNCIL, "--period", PERIOD, str(path))
    assert status == 1
    assert {(i["row"], i["code"]) for i in doc["issues"]} == {(f.row_number, expected_code(f)) for f in planted}
    assert len(doc["issues"]) == len(planted)
    assert doc["validated"] is True and doc["outcome"] == "rejected" and doc["readable"] is True
    assert doc["errors"] == sum(i["severity"] == "error" for i in doc["issues"]) == len(planted) - 1
    assert doc["queries"] == 1  # CLAS-Q002
    assert {k: doc[k] for k in ("return", "council", "period", "format", "rows")} == {
        "return": "clas", "council": COUNCIL, "period": PERIOD, "format": "xlsx", "rows": 150}
    by_row = {(i["row"], i["code"]): i for i in doc["issues"]}
    for f in planted:
        issue = by_row[(f.row_number, expected_code(f))]
        assert set(issue) == {"code", "severity", "message", "row", "item", "value", "table"}
        assert issue["message"]
        if f.kind == "duplicate_key":
            assert issue["item"] == "child_id, episode_start_date" and f"repeats row {f.copy_of}" in issue["message"]
        elif f.kind in GENERIC_CODE:
            assert issue["item"] == f.item
    assert [(i["row"], i["code"]) for i in doc["issues"]] == sorted((i["row"], i["code"]) for i in doc["issues"])
    assert scratch_databases(server_url) == []  # the scratch database is gone


def test_lines_and_summary(tmp_path, capsys) -> None:
    path, planted = sample(tmp_path, {"CLAS-E001": 1})
    assert main(["check", "--return", "clas", "--council", COUNCIL, str(path)]) == 1
    out, err = capsys.readouterr()
    [line] = out.splitlines()
    where = f"row {planted[0].row_number}, column episode_start_date, episode_end_date"
    assert line.startswith(f"CLAS-E001 error [{where}]: ")
    assert "150 row(s) read as xlsx; 1 error(s), 0 queries; " in err
    assert "the spec's checks ran: the council would see it rejected" in err


def test_same_issues_as_collection(tmp_path, capsys, clean_ledger) -> None:
    """Field for field what ``process_file`` records for the council, in the same order."""
    from lgdp.collect.process import process_file
    from lgdp.ledger.db import session
    from lgdp.ledger.register import open_period
    from lgdp.periods import period_from_label

    path, _ = sample(tmp_path, {**FAULTS, "bad_code": 2, "missing_required": 1}, seed=9)
    status, doc = check_json(capsys, "--council", COUNCIL, "--period", PERIOD, str(path))
    with session() as s, s.begin():
        open_period(s, CLAS, period_from_label(CLAS.spec.collection, PERIOD))
    ref = {"name": "clas.xlsx", "id": "item-1", "etag": "e1", "path": "clas.xlsx"}
    outcome = process_file(CLAS, PERIOD, COUNCIL, ref, path.read_bytes())
    assert doc["issues"] == [i.as_dict() for i in outcome.issues]
    assert status == (1 if outcome.issues else 0)
    assert doc["errors"] == outcome.errors and doc["queries"] == outcome.queries
    assert doc["outcome"] == outcome.status


def test_clean_file_exits_0(tmp_path, capsys) -> None:
    path, _ = sample(tmp_path, n=60)
    status, doc = check_json(capsys, "--council", COUNCIL, str(path))
    assert status == 0
    assert doc["issues"] == [] and doc["validated"] is True and doc["outcome"] == "accepted"
    assert main(["check", "--return", "clas", str(path)]) == 0  # no council: the checks still run
    out, err = capsys.readouterr()
    assert out == "" and "0 error(s), 0 queries; the spec's checks ran: the council would see it accepted" in err


def test_parse_only_skips_the_database(tmp_path, capsys, monkeypatch) -> None:
    path, _ = sample(tmp_path, {"CLAS-E001": 2})
    monkeypatch.setenv("LGDP_DATABASE_URL", "postgresql+psycopg://nobody@/nowhere?host=/nonexistent")
    status, doc = check_json(capsys, "--parse-only", str(path))
    assert status == 0 and doc["issues"] == [] and doc["validated"] is False and doc["outcome"] is None


def test_structural_errors_stop_before_the_spec_checks(tmp_path, capsys) -> None:
    """As in collection: a row for another council rejects the file; the spec's checks do not run."""
    result = synth.rows(CLAS, COUNCIL, PERIOD, 40, seed=4, faults={"CLAS-E001": 1})
    result.rows[5]["council_code"] = "S12000005"  # file row 7
    path = tmp_path / "clas.xlsx"
    synth.write_rows(CLAS, result.rows, "xlsx", path, COUNCIL, PERIOD)
    status, doc = check_json(capsys, "--council", COUNCIL, str(path))
    assert status == 1 and doc["validated"] is False and doc["outcome"] == "rejected"
    assert [(i["code"], i["severity"]) for i in doc["issues"]] == [("ID-001", "error")]
    # Without --council nothing names the submitting council: the file is validated.
    status, doc = check_json(capsys, str(path))
    assert doc["validated"] is True
    assert {(i["row"], i["code"]) for i in doc["issues"]} == {(f.row_number, "CLAS-E001") for f in result.faults}


def test_embedded_server_when_no_database_is_configured(tmp_path, capsys, monkeypatch) -> None:
    path, planted = sample(tmp_path, {"CLAS-E001": 1, "duplicate_key": 1})
    monkeypatch.delenv("LGDP_DATABASE_URL")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the embedded server's folder goes here, and must go
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    status, doc = check_json(capsys, "--council", COUNCIL, str(path))
    assert status == 1
    assert {(i["row"], i["code"]) for i in doc["issues"]} == {(f.row_number, expected_code(f)) for f in planted}
    assert [p.name for p in tmp_path.iterdir()] == ["clas.xlsx"]


def test_database_unreachable_exits_3(tmp_path, capsys, monkeypatch) -> None:
    path, _ = sample(tmp_path, n=20)
    monkeypatch.setenv("LGDP_DATABASE_URL", "postgresql+psycopg://nobody@/nowhere?host=/nonexistent")
    assert main(["check", "--return", "clas", str(path)]) == 3
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("lgdp check: the file was read but could not be validated: could not prepare")
    assert "Traceback" not in err
    status, doc = check_json(capsys, str(path))
    assert status == 3 and doc["readable"] is True and doc["validated"] is False and "could not" in doc["error"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--council", "S12000999"], "S12000999 is not a council that sends 'clas'"),
        (["--period", "2025"], "is not a period of this return"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, args, message) -> None:
    path, _ = sample(tmp_path, n=20)
    assert main(["check", "--return", "clas", *args, str(path)]) == 2
    assert message in capsys.readouterr().err


def test_queries_only_are_held_for_explanation(tmp_path, capsys) -> None:
    path, planted = sample(tmp_path, {"CLAS-Q002": 1, "CLAS-Q001": 1}, n=80)
    status, doc = check_json(capsys, "--council", COUNCIL, str(path))
    assert status == 1 and doc["outcome"] == "queries" and doc["errors"] == 0 and doc["queries"] == 2
    assert {(i["row"], i["code"], i["severity"]) for i in doc["issues"]} == {
        (f.row_number, f.kind, "query") for f in planted}
    assert main(["check", "--return", "clas", str(path)]) == 1
    assert "fix or explain its queries" in capsys.readouterr().err

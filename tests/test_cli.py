"""The ``lgdp`` command line as a person uses it."""

import subprocess
import sys

import openpyxl

LGDP = [sys.executable, "-m", "lgdp.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LGDP, *args], capture_output=True, text=True)


def test_synth_writes_a_workbook_and_says_where_the_faults_are(tmp_path):
    out = tmp_path / "clas.xlsx"
    r = run("synth", "--return", "clas", "--period", "2025-26", "--rows", "30", "--fault", "CLAS-E001=2", "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if "fault CLAS-E001" in line]
    assert len(rows) == 2
    rows = list(openpyxl.load_workbook(out, read_only=True).worksheets[0].iter_rows(values_only=True))
    assert len(rows) == 31 and rows[0][0] == "council_code"


def test_synth_refuses_an_unknown_fault_in_words():
    r = run("synth", "--return", "clas", "--fault", "no_such_fault", "-o", "/dev/null")
    assert r.returncode == 2
    assert "no fault 'no_such_fault'" in r.stderr and "Traceback" not in r.stderr


def test_ledger_status_after_opening(clean_ledger):
    import datetime as dt

    from lgdp.ledger.db import session
    from lgdp.ledger.register import open_period
    from lgdp.periods import period_from_label
    from lgdp.specs.load import load_register

    loaded = load_register().get("clas")
    with session() as s, s.begin():
        open_period(s, loaded, period_from_label(loaded.spec.collection, "2025-26"))
    r = run("ledger", "status", "--return", "clas", "--period", "2025-26")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 32 and lines[0] == "S12000005  expected"
    missing = run("ledger", "status", "--return", "clas", "--period", "2019-20")
    assert missing.returncode == 1 and "no period 2019-20" in missing.stderr


def test_db_current_reports_the_revision(ledger_url):
    from alembic.script import ScriptDirectory

    from lgdp.ledger import db

    r = run("db", "current")
    assert r.returncode == 0 and r.stdout.strip() == ScriptDirectory.from_config(db.alembic_config()).get_current_head()


def test_overlap_shows_items_collected_by_several_returns():
    r = run("specs", "overlap")
    assert r.returncode == 0
    assert "date_of_birth (Date of birth): collected by 2 returns" in r.stdout
    assert "  clas.date_of_birth" in r.stdout and "  social_care_survey.date_of_birth" in r.stdout


def test_ledger_sync_registers_every_spec_once(clean_ledger):
    from sqlalchemy import text

    from lgdp.ledger.db import engine

    first = run("ledger", "sync")
    assert first.returncode == 0, first.stderr
    from lgdp.specs.load import load_register

    assert f"{len(load_register().specs)} added or changed" in first.stdout
    again = run("ledger", "sync")
    assert "0 added or changed" in again.stdout
    with engine().connect() as conn:
        shared = conn.execute(
            text("SELECT return_id FROM lgdp.return_items WHERE dictionary_ref = 'date_of_birth' ORDER BY 1")
        ).scalars().all()
    assert shared == ["clas", "social_care_survey"]

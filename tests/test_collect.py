"""Collection end to end through Airflow: the real hook over HTTP to the Graph stand-in, the real
trigger (run inline by ``dag.test``), the real parser and a real PostgreSQL ledger.

A test spec folder holds CLAS for two councils with a window open today, so the mapped collect
tasks wait for files that a background "council" drops into the stand-in while the run waits.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from lgdp.ledger.db import engine

ROOT = Path(__file__).resolve().parents[1]
EDINBURGH, GLASGOW = "S12000036", "S12000049"
pytestmark = [pytest.mark.airflow, pytest.mark.slow]


@pytest.fixture
def two_council_specs(tmp_path, monkeypatch):
    """CLAS for Edinburgh and Glasgow, its current period open for a year from its opening."""
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "return_specs" / "shared", specs / "shared")
    text_ = (ROOT / "tests" / "specs_one_table" / "clas.yaml").read_text()
    text_ = text_.replace("providers: all", f"providers: [{EDINBURGH}, {GLASGOW}]")
    text_ = re.sub(r"closes_days_after_opening: \d+", "closes_days_after_opening: 500", text_)
    text_ = text_[: text_.index("\ndistribution:")] + "\n"  # delivery is tested on its own (test_distribute*)
    (specs / "clas.yaml").write_text(text_)
    monkeypatch.setenv("LGDP_SPECS_DIR", str(specs))
    monkeypatch.setenv("LGDP_POLL_INTERVAL_SECONDS", "0.5")
    return specs


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["return_clas"]


def _period() -> str:
    from lgdp.periods import period_opening_at
    from lgdp.specs.load import load_register

    loaded = load_register().get("clas")
    return period_opening_at(loaded.spec.collection, dt.datetime.now(dt.timezone.utc)).label


def _xlsx(council: str, period: str, rows: int, faults: dict[str, int] | None = None, seed: int = 1) -> bytes:
    from lgdp.specs.load import load_register
    from lgdp.synth import write_sample

    buf = io.BytesIO()
    write_sample(load_register().get("clas"), council, period, rows, "xlsx", buf, seed, faults)
    return buf.getvalue()


def _versions(council: str) -> list[tuple]:
    with engine().connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT v.version, v.status::text, v.rows_loaded, v.filename, v.file_sha256 "
                    "FROM lgdp.submission_versions v JOIN lgdp.expected_submissions e ON e.id = v.submission_id "
                    "WHERE e.council_code = :c ORDER BY v.version"
                ),
                {"c": council},
            )
        ]


def _status(council: str) -> str:
    with engine().connect() as conn:
        return conn.execute(
            text("SELECT status::text FROM lgdp.expected_submissions WHERE council_code = :c"), {"c": council}
        ).scalar_one()


def _staged(council: str) -> dict[int, int]:
    with engine().connect() as conn:
        rows = conn.execute(
            text(
                "SELECT _submission_version_id, count(*) FROM lgdp_staging.clas WHERE _council_code = :c "
                "GROUP BY 1 ORDER BY 1"
            ),
            {"c": council},
        )
        return {vid: n for vid, n in rows}


def _feedback_subjects(smtp) -> list[tuple[str, str]]:
    """(To, Subject) of the outcome emails (the DAG's reminder tasks may send others)."""
    return sorted((m["To"], m["Subject"]) for m in smtp.messages if ", version " in m["Subject"])


def _when(predicate, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - the ledger may not hold the rows yet
            pass
        time.sleep(0.3)
    return False


def test_councils_upload_platform_collects_rejects_and_accepts_the_corrected_version(
    two_council_specs, m365, smtp, airflow_db, clean_ledger
):
    from lgdp.collect.graph import folder_path

    period = _period()
    edinburgh = folder_path("clas", period, EDINBURGH)
    glasgow = folder_path("clas", period, GLASGOW)
    good_edinburgh = _xlsx(EDINBURGH, period, 40)
    broken = b"PK\x03\x04 this is not really a workbook"
    good_glasgow = _xlsx(GLASGOW, period, 25, seed=2)

    m365.put_file(f"{edinburgh}/clas-return.xlsx", good_edinburgh)
    m365.put_file(f"{glasgow}/clas-return.xlsx", broken)

    def glasgow_fixes_its_file() -> None:
        if _when(lambda: [v[1] for v in _versions(GLASGOW)] == ["rejected"]):
            # While the task waits for Glasgow's next version, Graph is throttled and then
            # unavailable, beyond what the SDK's own retries absorb: the trigger must back off
            # and keep waiting, losing nothing.
            m365.inject_fault(status=429, retry_after=1, count=3, path_contains=GLASGOW)
            m365.inject_fault(status=503, retry_after=1, count=3, path_contains=GLASGOW)
            _when(lambda: all(f.count <= 0 for f in m365.state.faults), timeout=60)
            m365.put_file(f"{glasgow}/clas-return.xlsx", good_glasgow)

    council = threading.Thread(target=glasgow_fixes_its_file, daemon=True)
    council.start()
    run = _dag().test(run_conf={"period": period})
    council.join(5)
    assert run.state == "success"

    # the templates went into each council's folder
    assert any(name.endswith(".xlsx") for name in m365.list_names(f"{edinburgh}/_platform"))

    [ed] = _versions(EDINBURGH)
    assert ed[:3] == (1, "accepted", 40) and _status(EDINBURGH) == "accepted"
    gl = _versions(GLASGOW)
    assert [(v[0], v[1]) for v in gl] == [(1, "rejected"), (2, "accepted")]
    assert gl[1][2] == 25 and _status(GLASGOW) == "accepted"

    # the broken original is kept byte for byte, with a message the council can act on
    with engine().connect() as conn:
        kept = conn.execute(text("SELECT content FROM lgdp.archived_files WHERE sha256 = :s"), {"s": gl[0][4]}).scalar_one()
        issues = conn.execute(
            text(
                "SELECT i.code, i.severity, i.message FROM lgdp.submission_issues i "
                "JOIN lgdp.submission_versions v ON v.id = i.version_id WHERE v.file_sha256 = :s"
            ),
            {"s": gl[0][4]},
        ).all()
    assert bytes(kept) == broken
    assert issues and all(sev == "error" and msg and "Traceback" not in msg for _, sev, msg in issues)

    # each accepted version's rows are loaded exactly once, nothing for the unreadable one
    assert sorted(_staged(GLASGOW).values()) == [25]
    assert sorted(_staged(EDINBURGH).values()) == [40]

    # each council was told: Glasgow its rejection then its acceptance, Edinburgh its acceptance;
    # feedback workbooks and the accepted data are in their _platform folders
    subjects = _feedback_subjects(smtp)
    assert [s for to, s in subjects if "glasgow" in to.lower()] == sorted(
        [f"Children Looked After in Scotland (CLAS) {period}: Not accepted: errors to fix (Glasgow City, version 1)",
         f"Children Looked After in Scotland (CLAS) {period}: accepted (Glasgow City, version 2)"]
    ), subjects
    assert len([s for to, s in subjects if "edinburgh" in to.lower()]) == 1
    assert {"feedback_v1.xlsx", "feedback_v2.xlsx", "accepted_v2.csv"} <= set(m365.list_names(f"{glasgow}/_platform"))
    assert {"feedback_v1.xlsx", "accepted_v1.csv"} <= set(m365.list_names(f"{edinburgh}/_platform"))

    # a rerun of the period finds nothing new: same versions, same rows
    again = _dag().test(run_conf={"period": period})
    assert again.state == "success"
    assert len(_versions(EDINBURGH)) == 1 and len(_versions(GLASGOW)) == 2
    assert sorted(_staged(GLASGOW).values()) == [25]
    assert len(_feedback_subjects(smtp)) == 3  # and nobody is told twice


def test_closed_collection_marks_missing_councils_not_received(two_council_specs, m365, airflow_db, clean_ledger, monkeypatch):
    """A period whose window has closed: councils without an accepted file end not_received, task failed."""
    from lgdp.collect.graph import folder_path
    from lgdp.periods import period_opening_at
    from lgdp.specs.load import load_register

    clas = two_council_specs / "clas.yaml"
    clas.write_text(re.sub(r"closes_days_after_opening: \d+", "closes_days_after_opening: 91", clas.read_text()))
    loaded = load_register().get("clas")
    last_year = period_opening_at(loaded.spec.collection, dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400))
    m365.put_file(f"{folder_path('clas', last_year.label, EDINBURGH)}/late.xlsx", _xlsx(EDINBURGH, last_year.label, 5))
    run = _dag().test(run_conf={"period": last_year.label})
    assert run.state == "failed"
    assert _status(EDINBURGH) == "not_received" and _status(GLASGOW) == "not_received"
    assert _versions(EDINBURGH) == []  # files arriving after the close are not collected


def test_rule_errors_found_by_validation_reject_the_file_with_exact_rows(two_council_specs, m365, airflow_db, clean_ledger):
    """A workbook that parses cleanly but breaks CLAS-E001 twice: rejected, the two rows named."""
    from lgdp.collect.process import process_file
    from lgdp.ledger.db import session
    from lgdp.ledger.register import open_period
    from lgdp.periods import period_from_label
    from lgdp.specs.load import load_register
    from lgdp.synth import rows as synth_rows

    loaded = load_register().get("clas")
    period = _period()
    with session() as s, s.begin():
        open_period(s, loaded, period_from_label(loaded.spec.collection, period))
    expected_rows = sorted(f.row_number for f in synth_rows(loaded, EDINBURGH, period, 30, seed=3, faults={"CLAS-E001": 2}).faults)
    data = _xlsx(EDINBURGH, period, 30, faults={"CLAS-E001": 2}, seed=3)
    ref = {"id": "v1", "name": "clas.xlsx", "etag": "1", "last_modified": None, "last_modified_by": None}
    outcome = process_file(loaded, period, EDINBURGH, ref, data)
    assert outcome.status == "rejected"
    assert sorted(i.row for i in outcome.issues if i.code == "CLAS-E001") == expected_rows
    assert {i.code for i in outcome.issues} == {"CLAS-E001"}
    assert _status(EDINBURGH) == "rejected" and _versions(EDINBURGH)[0][1] == "rejected"

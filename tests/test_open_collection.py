"""``open_collection`` run through Airflow (dag.test) against the real PostgreSQL ledger."""

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import text

from lgdp.ledger.db import engine

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.airflow


def _snapshot() -> dict[str, list[tuple]]:
    """Everything in the ledger, timestamps included, to compare runs exactly."""
    out = {}
    with engine().connect() as conn:
        for table in ("councils", "returns", "return_items", "collection_periods", "expected_submissions"):
            out[table] = [tuple(r) for r in conn.execute(text(f"SELECT * FROM lgdp.{table} ORDER BY 1, 2"))]
    return out


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags")).dags[dag_id]


def test_open_collection_registers_period_and_32_councils_and_a_rerun_changes_nothing(m365, airflow_db, clean_ledger):
    dag = _dag("return_clas")
    run = dag.test(mark_success_pattern="^collect$", logical_date=dt.datetime(2026, 8, 1, 8, 0, tzinfo=dt.timezone.utc))
    assert run.state == "success"
    first = _snapshot()
    assert len(first["councils"]) == 32
    [period] = first["collection_periods"]
    assert period[1:3] == ("clas", "2025-26")
    assert len(first["expected_submissions"]) == 32
    assert {row[3] for row in first["expected_submissions"]} == {"expected"}
    # every council's folder exists with the template in it
    assert all(m365.list_names(f"clas/2025-26/{code}/_platform") == ["clas_2025-26_template.xlsx"] for code, _ in first["councils"])
    items = sorted((r for r in first["return_items"] if r[0] == "clas"), key=lambda r: r[2])
    assert [r[1] for r in items][:3] == ["council_code", "child_id", "scn"]
    assert [r[3] for r in items][:4] == ["council_code", None, "scottish_candidate_number", "date_of_birth"]

    again = dag.test(mark_success_pattern="^collect$", logical_date=dt.datetime(2026, 8, 1, 8, 0, 1, tzinfo=dt.timezone.utc), run_conf={"period": "2025-26"})
    assert again.state == "success"
    assert _snapshot() == first


def test_open_collection_for_a_subset_of_providers_and_a_manual_period(m365, airflow_db, clean_ledger):
    from lgdp.specs.load import load_register

    subset = [s for s in load_register().approved() if isinstance(s.spec.providers, list)]
    loaded = subset[0] if subset else load_register().get("clas")
    dag = _dag(loaded.dag_id)
    from lgdp.periods import period_opening_at

    label = period_opening_at(loaded.spec.collection, dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)).label
    run = dag.test(mark_success_pattern="^collect$", logical_date=dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc), run_conf={"period": label})
    assert run.state == "success"
    snap = _snapshot()
    assert [p[2] for p in snap["collection_periods"]] == [label]
    assert len(snap["expected_submissions"]) == len(loaded.providers)


def test_a_period_label_that_does_not_fit_the_return_fails_the_task(m365, airflow_db, clean_ledger):
    dag = _dag("return_clas")
    run = dag.test(mark_success_pattern="^collect$", logical_date=dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc), run_conf={"period": "2025-Q1"})
    assert run.state == "failed"
    assert _snapshot()["collection_periods"] == []

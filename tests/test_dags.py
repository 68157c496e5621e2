"""The DAG factory: every approved spec is a DAG, parsing is cheap, a broken spec hides nothing."""

import shutil
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from lgdp.periods import opening_cron
from lgdp.specs.load import load_register

ROOT = Path(__file__).resolve().parents[1]
PLATFORM_DAGS = {"council_digest", "late_files", "platform_digest", "requester_signoffs"}  # DAGs not made from a spec


@pytest.fixture(scope="module")
def bag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_approved_spec_parses_into_a_dag_with_no_import_errors(bag):
    assert bag.import_errors == {}
    register = load_register()
    assert register.errors == {}
    expected = {s.dag_id for s in register.approved()}
    assert len(expected) >= 4
    assert set(bag.dag_ids) == expected | PLATFORM_DAGS


def test_dag_shape_follows_the_spec(bag):
    for loaded in load_register().approved():
        dag = bag.dags[loaded.dag_id]
        spec = loaded.spec
        assert dag.task_ids[:2] == ["open_collection", "collect"]
        reminders = [f"remind_{r.kind}" for r in spec.reminders]
        assert [t for t in dag.task_ids if t.startswith("remind_")] == reminders
        assert all(dag.get_task(t).upstream_task_ids == {"open_collection"} for t in reminders)
        collect = dag.get_task("collect")
        assert collect.map_index_template == "{{ task.council_name }}"
        assert [m["council"] for m in collect.expand_input.value] == [c.code for c in loaded.providers]
        assert spec.governance.purpose in dag.doc_md
        assert {spec.governance.requester[:100], spec.collection.frequency.value} <= set(dag.tags)
        assert dag.timetable.expression == opening_cron(spec.collection)
        assert dag.max_active_runs == spec.collection.max_active_periods
        assert dag.catchup is False


def _specs_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "specs"
    shutil.copytree(ROOT / "return_specs" / "shared", dest / "shared")
    shutil.copy(ROOT / "tests" / "specs_one_table" / "clas.yaml", dest / "clas.yaml")
    return dest


def test_broken_spec_is_an_import_error_naming_the_file_and_others_still_load(tmp_path, monkeypatch):
    specs = _specs_copy(tmp_path)
    broken = (ROOT / "tests" / "specs_one_table" / "clas.yaml").read_text().replace("id: clas", "id: clas_broken")
    broken = broken.replace("  status: approved", "  status: aproved")
    (specs / "clas_broken.yaml").write_text(broken)
    monkeypatch.setenv("LGDP_SPECS_DIR", str(specs))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert sorted(set(bag.dag_ids) - PLATFORM_DAGS) == ["return_clas"]
    [(path, message)] = bag.import_errors.items()
    assert path.endswith("return_spec_problems.py")
    assert "clas_broken.yaml" in message and "governance.status" in message and "'aproved'" in message


def test_proposed_and_retired_specs_do_not_become_dags(tmp_path, monkeypatch):
    specs = _specs_copy(tmp_path)
    for status in ("proposed", "retired"):
        text = (ROOT / "tests" / "specs_one_table" / "clas.yaml").read_text()
        text = text.replace("id: clas", f"id: clas_{status}").replace("status: approved", f"status: {status}")
        if status == "proposed":  # a proposal says what governance needs (docs/governance.md)
            text = text.replace("  status: proposed\n", "  status: proposed\n  proposal:\n"
                                "    submitted_by: Test requester (test@example.org)\n    submitted_on: 2026-11-01\n"
                                "    regularity: Annual, as the approved return.\n    duration: From 2026-27 onwards\n"
                                "    burden: {records_per_council: 100, minutes_per_record: 1}\n"
                                "    agreements:\n      - {body: Test working group, date: 2026-11-01}\n", 1)
        (specs / f"clas_{status}.yaml").write_text(text)
    monkeypatch.setenv("LGDP_SPECS_DIR", str(specs))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert sorted(set(bag.dag_ids) - PLATFORM_DAGS) == ["return_clas"]


def test_parsing_touches_no_database(tmp_path, monkeypatch):
    """With the ledger unreachable the DAG folder still parses: no DB access at import time."""
    monkeypatch.setenv("LGDP_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {} and bag.dag_ids


def test_plan_cache_follows_the_specs_content(tmp_path, monkeypatch):
    """The parse-time cache gives what a full load gives, and any edit to a spec invalidates it."""
    from lgdp.specs.plans import _cache_path, compute_plans, load_plans

    specs = _specs_copy(tmp_path)
    monkeypatch.setenv("LGDP_CACHE_DIR", str(tmp_path / "cache"))
    first = load_plans(specs)
    assert _cache_path(specs).exists()
    assert load_plans(specs) == first == compute_plans(specs)

    clas = specs / "clas.yaml"
    clas.write_text(clas.read_text().replace("max_active_periods: 2", "max_active_periods: 3"))
    assert load_plans(specs).plans[0].max_active_runs == 3

    clas.write_text(clas.read_text().replace("status: approved", "status: aproved"))
    broken = load_plans(specs)
    assert broken.plans == [] and "governance.status" in broken.problems[0]

    _cache_path(specs).write_text("{not json")  # a damaged cache is ignored, not trusted
    assert load_plans(specs) == broken


def test_period_comes_from_the_run_conf(m365, airflow_db, clean_ledger):
    """Triggered with {"period": ...} the run opens that period (the trigger form's JSON conf)."""
    import datetime as dt

    from lgdp.ledger.register import period_status

    from lgdp.ledger.db import session

    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["return_temporary_accommodation_monthly"]
    run = dag.test(
        logical_date=dt.datetime(2026, 11, 22, 12, tzinfo=dt.timezone.utc),
        run_conf={"period": "2026-03"},
        mark_success_pattern="^collect$",
    )
    assert run.state == "success"
    with session() as s:
        assert len(period_status(s, "temporary_accommodation_monthly", "2026-03")) == 32

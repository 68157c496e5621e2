"""Sign-offs returned after the DAG run has ended: the platform DAG ``requester_signoffs``.

Real ledger, real Azurite written to with the azure SDK as a requester would, a real local
delivery folder. The requesters return good files and bad or hostile ones (not UTF-8, nested too
deep, naming a version never published, an integer too big for the ledger, empty, a symbolic
link out of the folder): the good ones become the final state, the bad ones are kept with a
message, and nothing crashes. One requester's storage going away fails the task only after the
others are collected.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from test_distribute import (  # noqa: F401 - fixtures and helpers shared with the delivery tests
    EDINBURGH,
    GLASGOW,
    IS_CONTAINER,
    SG_PREFIX,
    _accept,
    _current,
    _deliver,
    _dist,
    _loaded,
    _open,
    specs,
)

ROOT = Path(__file__).resolve().parents[1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _by_path(entries: list[dict]) -> dict[str, dict]:
    return {e["path"].rsplit("/", 1)[1]: e for e in entries if e.get("path")}


def test_files_returned_after_the_run_are_recorded_by_the_platform_dag(specs, azurite, clean_ledger, tmp_path):  # noqa: F811
    from lgdp.airflow.distribute import CollectSignoffsOperator
    from lgdp.distribute.signoff import final_state
    from lgdp.ingest.archive import read_archived
    from lgdp.ledger.db import session

    clas = _loaded()
    period = _current(clas)
    _open(clas, period)
    _accept(clas, period.label, EDINBURGH, n=5, seed=1)
    _accept(clas, period.label, GLASGOW, n=5, seed=2)
    assert _deliver(clas, period.label, "scottish_government").published
    assert _deliver(clas, period.label, "improvement_service").published
    ta = _loaded("temporary_accommodation_monthly")
    ta_period = _current(ta)
    _open(ta, ta_period)
    _accept(ta, ta_period.label, EDINBURGH, n=None, seed=3)
    _accept(ta, ta_period.label, GLASGOW, n=None, seed=4)
    assert _deliver(ta, ta_period.label, "public_dashboard").published
    op = CollectSignoffsOperator(task_id="collect_signoffs")

    # Nothing returned yet: the sweep looks everywhere and records nothing.
    first = op.execute(context={})
    assert first["places"] == 3 and first["recorded"] == [] and first["problems"] == [] and first["failures"] == []

    # The DAG run is long over; the requesters write back with their own tools.
    sg = azurite.service().get_container_client("clas")
    returned = f"{SG_PREFIX}/{period.label}/returned"
    good = {
        "clas_final.csv": b"council_code,child_id\nS12000036,abc\n",
        "signoff.json": json.dumps({"delivery_version": 1, "status": "final"}).encode(),
    }
    hostile = {
        "latin1.json": "{\"delivery_version\": 1, \"by\": \"J\xf6rg\"}".encode("latin-1"),
        "deep.json": b"[" * 100_000 + b"]" * 100_000,
        "wrong_version.json": json.dumps({"delivery_version": 99}).encode(),
        "huge_version.json": b'{"delivery_version": 1099511627776}',
        "empty.csv": b"",
    }
    for name, data in {**good, **hostile}.items():
        sg.upload_blob(f"{returned}/{name}", data)
    azurite.service().get_container_client(IS_CONTAINER).upload_blob(
        f"{period.label}/returned/ok.json", json.dumps({"status": "final"}).encode()
    )
    ta_dist = _dist(ta, "public_dashboard")
    ta_returned = Path(os.environ["LGDP_DELIVERY_DIR"]) / ta_dist.destination.path / ta_period.label / "returned"
    ta_returned.mkdir(parents=True)
    (ta_returned / "dashboard_final.csv").write_bytes(b"council_code,households\nS12000036,[c]\n")
    secret = tmp_path / "worker_secret.txt"
    secret.write_bytes(b"not for requesters")
    (ta_returned / "sneaky.csv").symlink_to(secret)

    done = op.execute(context={})
    assert done["failures"] == []
    recorded = _by_path(done["recorded"])
    assert set(recorded) == set(good) | set(hostile) | {"ok.json", "dashboard_final.csv"}
    assert recorded["signoff.json"]["kind"] == "signoff" and recorded["signoff.json"]["delivery_version"] == 1
    assert recorded["clas_final.csv"]["kind"] == "data"
    assert recorded["ok.json"]["kind"] == "signoff" and recorded["ok.json"]["delivery_version"] is None
    problems = _by_path(done["problems"])
    assert set(problems) == set(hostile) | {"sneaky.csv"}
    assert all(recorded[name]["kind"] == "rejected" for name in hostile)
    assert "UTF-8 JSON object" in problems["latin1.json"]["problem"]
    assert "UTF-8 JSON object" in problems["deep.json"]["problem"]
    assert "delivery_version 99, which was never published (published: 1)" in problems["wrong_version.json"]["problem"]
    assert "1099511627776" in problems["huge_version.json"]["problem"]
    assert "empty" in problems["empty.csv"]["problem"]
    assert "outside the delivery folder" in problems["sneaky.csv"]["problem"] and problems["sneaky.csv"]["sha256"] is None
    assert b"not for requesters" not in json.dumps(done).encode()  # never read, never shown

    with session() as s:
        for name, data in {**good, **hostile}.items():  # every file kept, hostile ones too
            assert read_archived(s, hashlib.sha256(data).hexdigest()) == data
        kept = dict(  # the reason stays in the ledger, not only in the run that first saw the file
            s.execute(text("SELECT path, problem FROM lgdp.requester_signoffs WHERE kind = 'rejected'")).all()
        )
        assert {p.rsplit("/", 1)[1]: m for p, m in kept.items()} == {n: problems[n]["problem"] for n in hostile}
        final = final_state(s, "clas", period.label, "scottish_government")
        assert final is not None and final.kind != "rejected" and final.path.rsplit("/", 1)[1] in good
        ta_final = final_state(s, ta.id, ta_period.label, "public_dashboard")
        assert ta_final is not None and ta_final.path.endswith("returned/dashboard_final.csv")

    # Idempotent: the next hour records nothing again; the link it will not read is still reported.
    again = op.execute(context={})
    assert again["recorded"] == [] and list(_by_path(again["problems"])) == ["sneaky.csv"]

    # A later sign-off becomes the final state, even while another requester's storage is down.
    time.sleep(1.1)  # blob times have one-second resolution
    later = json.dumps({"delivery_version": 1, "status": "final", "note": "corrected"}).encode()
    sg.upload_blob(f"{returned}/signoff_2.json", later)
    azurite.connect("wasb_improvement_service", port=_closed_port(), retry_total=0)
    with pytest.raises(RuntimeError, match="improvement_service"):
        op.execute(context={})
    with session() as s:
        kept = dict(  # the reason stays in the ledger, not only in the run that first saw the file
            s.execute(text("SELECT path, problem FROM lgdp.requester_signoffs WHERE kind = 'rejected'")).all()
        )
        assert {p.rsplit("/", 1)[1]: m for p, m in kept.items()} == {n: problems[n]["problem"] for n in hostile}
        final = final_state(s, "clas", period.label, "scottish_government")
        assert final.path == f"{period.label}/returned/signoff_2.json" and final.delivery_version == 1
        assert read_archived(s, final.file_sha256) == later


def test_the_platform_dag_parses_with_its_schedule(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "requester_signoffs.py"))
    assert bag.import_errors == {}
    dag = bag.dags["requester_signoffs"]
    assert dag.task_ids == ["collect_signoffs"] and dag.timetable.expression == "0 * * * *"
    assert dag.catchup is False and dag.max_active_runs == 1

    monkeypatch.setenv("LGDP_SIGNOFF_CRON", "15 */4 * * *")
    bag = DagBag(dag_folder=str(ROOT / "dags" / "requester_signoffs.py"))
    assert bag.dags["requester_signoffs"].timetable.expression == "15 */4 * * *"

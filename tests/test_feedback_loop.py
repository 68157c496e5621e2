"""The resubmission loop end to end: Airflow (dag.test, real trigger), the Graph stand-in, a real
PostgreSQL and a real SMTP server (aiosmtpd).

Edinburgh's previous period was accepted with 20 rows. This period it uploads 40 rows with two
episodes ending before they start: rejected, and the email names both rows and the rule code.
It fixes them: no errors now, but the row count doubled against last year, so a plausibility
query waits for an explanation. The officer writes one in the feedback workbook's Explanation
column and uploads the workbook: accepted, acknowledged, and its accepted data is in its folder.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading

import pytest
from sqlalchemy import text

from lgdp.ledger.db import engine

from test_collect import EDINBURGH, GLASGOW, _dag, _period, _versions, _when, _xlsx, two_council_specs  # noqa: F401

pytestmark = [pytest.mark.airflow, pytest.mark.slow]
TITLE = "Children Looked After in Scotland (CLAS)"


def _open(label: str):
    from lgdp.ledger.db import session
    from lgdp.ledger.register import open_period
    from lgdp.periods import period_from_label
    from lgdp.specs.load import load_register

    loaded = load_register().get("clas")
    with session() as s, s.begin():
        open_period(s, loaded, period_from_label(loaded.spec.collection, label))
    return loaded


def _previous_label(loaded) -> str:
    from lgdp.periods import period_opening_at

    return period_opening_at(loaded.spec.collection, dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)).label


def _explain_everything(workbook: bytes) -> bytes:
    """What the officer does in Excel: an explanation for every query, then save."""
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(workbook))
    ws = wb["Issues"]
    header = [c.value for c in ws[1]]
    sev, expl = header.index("Severity"), next(i for i, h in enumerate(header) if str(h).startswith("Explanation"))
    for row in ws.iter_rows(min_row=2):
        if row[sev].value == "query":
            row[expl].value = "A second children's house opened in May; the rise is real."
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _mails_to_edinburgh(smtp) -> list:
    return [m for m in smtp.messages if "edinburgh" in m["To"].lower() and ", version " in m["Subject"]]


def test_reject_fix_explain_accept(two_council_specs, m365, smtp, airflow_db, clean_ledger):  # noqa: F811
    from lgdp.collect.graph import folder_path
    from lgdp.collect.process import process_file
    from lgdp.synth import rows as synth_rows

    period = _period()
    loaded = _open(period)
    previous = _previous_label(loaded)
    _open(previous)
    last_year = process_file(
        loaded, previous, EDINBURGH, {"id": "ly", "name": "last-year.xlsx", "etag": "1"}, _xlsx(EDINBURGH, previous, 20, seed=9)
    )
    assert last_year.status == "accepted"

    folder = folder_path("clas", period, EDINBURGH)
    bad_rows = sorted(f.row_number for f in synth_rows(loaded, EDINBURGH, period, 40, seed=5, faults={"CLAS-E001": 2}).faults)
    seen: dict[str, object] = {}

    # Glasgow sends a clean file at once (the run ends when every council is accepted)
    m365.put_file(f"{folder_path('clas', period, GLASGOW)}/clas.xlsx", _xlsx(GLASGOW, period, 10, seed=2))

    def officer() -> None:
        m365.put_file(f"{folder}/clas.xlsx", _xlsx(EDINBURGH, period, 40, faults={"CLAS-E001": 2}, seed=5))
        if not _when(lambda: len(_mails_to_edinburgh(smtp)) >= 1):
            return
        m365.put_file(f"{folder}/clas.xlsx", _xlsx(EDINBURGH, period, 40, seed=5))  # the corrected file
        if not _when(lambda: len(_mails_to_edinburgh(smtp)) >= 2):
            return
        workbook = (m365.drive_root / folder / "_platform" / "feedback_v2.xlsx").read_bytes()
        seen["workbook"] = workbook
        m365.put_file(f"{folder}/feedback_v2.xlsx", _explain_everything(workbook))

    council = threading.Thread(target=officer, daemon=True)
    council.start()
    run = _dag().test(run_conf={"period": period})
    council.join(5)
    assert run.state == "success"

    assert [(v[0], v[1]) for v in _versions(EDINBURGH) if v[3] == "clas.xlsx"] == [(1, "rejected"), (2, "accepted")]
    rejected, queried, accepted = _mails_to_edinburgh(smtp)

    # 1. the rejection names the rule, both rows and what to do, in both parts
    assert rejected["Subject"] == f"{TITLE} {period}: Not accepted: errors to fix (City of Edinburgh, version 1)"
    plain = rejected.get_body(("plain",)).get_content()
    html = rejected.get_body(("html",)).get_content()
    for row in bad_rows:
        assert f"CLAS-E001 (error), row {row}, column episode_start_date" in plain
        assert f"<strong>CLAS-E001</strong> (error), row {row}" in html
    assert "Errors: 2" in plain and "feedback_v1.xlsx" in plain and "<h1>" in html
    assert "http" in plain  # the folder link

    # 2. fixed, but the row count doubled since last year: a plausibility query to explain
    assert queried["Subject"] == f"{TITLE} {period}: Queries to explain (City of Edinburgh, version 2)"
    plain = queried.get_body(("plain",)).get_content()
    assert "PLAUS-ROWS (query)" in plain and f"40 rows against 20 in {previous}" in plain

    # 3. explained in the workbook: accepted, acknowledged, the accepted data in the folder
    assert accepted["Subject"] == f"{TITLE} {period}: accepted (City of Edinburgh, version 2)"
    assert "all explained" in accepted.get_body(("plain",)).get_content()
    with engine().connect() as conn:
        explained = conn.execute(
            text(
                "SELECT i.code, i.explanation FROM lgdp.submission_issues i JOIN lgdp.submission_versions v "
                "ON v.id = i.version_id WHERE v.version = 2 AND i.severity = 'query' AND v.submission_id = "
                "(SELECT e.id FROM lgdp.expected_submissions e JOIN lgdp.collection_periods p ON p.id = e.period_id "
                "WHERE p.period = :p AND e.council_code = :c)"
            ),
            {"p": period, "c": EDINBURGH},
        ).all()
        returned = conn.execute(text("SELECT status, explained, message FROM lgdp.explanation_files")).all()
        status = conn.execute(
            text(
                "SELECT e.status::text FROM lgdp.expected_submissions e JOIN lgdp.collection_periods p "
                "ON p.id = e.period_id WHERE p.period = :p AND e.council_code = :c"
            ),
            {"p": period, "c": EDINBURGH},
        ).scalar_one()
    assert status == "accepted"
    assert explained and {c for c, _ in explained} >= {"PLAUS-ROWS"} and all(e for _, e in explained)
    assert returned == [("applied", len(explained), None)]
    data = list(csv.reader(io.StringIO((m365.drive_root / folder / "_platform" / "accepted_v2.csv").read_text())))
    assert data[0][0] == "source_row" and len(data) == 41 and [int(r[0]) for r in data[1:]] == list(range(2, 42))


def test_explanations_carry_over_to_a_resubmission_and_a_foreign_workbook_is_refused(two_council_specs, clean_ledger):  # noqa: F811
    """Unit of the loop without Airflow: the ledger, the workbook and the decision."""
    from lgdp.collect.feedback import FeedbackIssue, FeedbackMeta, build_workbook
    from lgdp.collect.process import process_file, process_upload
    from lgdp.collect.respond import version_feedback

    from test_collect import _period as current

    period = current()
    loaded = _open(period)
    data = _xlsx(EDINBURGH, period, 30, faults={"CLAS-Q001": 2}, seed=4)
    v1 = process_file(loaded, period, EDINBURGH, {"id": "a", "name": "clas.xlsx", "etag": "1"}, data)
    assert v1.status == "queries" and v1.unexplained == 2
    meta, issues, _ = version_feedback(loaded, period, EDINBURGH, v1.version_id)
    first = next(i for i in issues if i.code == "CLAS-Q001")
    answered = [FeedbackIssue(**{**i.__dict__, "explanation": "Recorded as the panel decided"}) if i is first else i for i in issues]
    back = process_upload(loaded, period, EDINBURGH, {"id": "fb1", "name": "feedback_v1.xlsx", "etag": "1"}, build_workbook(meta, answered))
    assert (back.kind, back.status, back.unexplained) == ("explanations", "queries", 1)

    # the same file again (a new version): the explained query keeps its explanation
    v2 = process_file(loaded, period, EDINBURGH, {"id": "a", "name": "clas.xlsx", "etag": "2"}, data)
    assert v2.status == "queries" and v2.unexplained == 1

    # the old workbook now explains a replaced version: refused with a message naming the right one
    stale = process_upload(loaded, period, EDINBURGH, {"id": "fb1", "name": "feedback_v1.xlsx", "etag": "2"}, build_workbook(meta, answered))
    assert stale.status == "queries" and "feedback_v2.xlsx" in stale.note

    # a workbook for another council is refused too, and nothing is explained by it
    other = FeedbackMeta(**{**meta.__dict__, "council": "S12000049", "version_id": v2.version_id})
    foreign = process_upload(loaded, period, EDINBURGH, {"id": "fb2", "name": "f.xlsx", "etag": "1"}, build_workbook(other, answered))
    assert "not clas" in foreign.note and foreign.unexplained == 1

    meta2, issues2, _ = version_feedback(loaded, period, EDINBURGH, v2.version_id)
    done = [FeedbackIssue(**{**i.__dict__, "explanation": i.explanation or "Confirmed with the social worker"}) for i in issues2]
    final = process_upload(loaded, period, EDINBURGH, {"id": "fb3", "name": "feedback_v2.xlsx", "etag": "1"}, build_workbook(meta2, done))
    assert (final.status, final.unexplained) == ("accepted", 0)
    with engine().connect() as conn:
        rows = conn.execute(text("SELECT status, explained FROM lgdp.explanation_files ORDER BY id")).all()
        kept = conn.execute(  # every returned workbook is kept byte for byte, the refused ones too
            text(
                "SELECT count(*) FROM lgdp.explanation_files e JOIN lgdp.archived_files a ON a.sha256 = e.file_sha256"
            )
        ).scalar_one()
        messages = conn.execute(
            text("SELECT message FROM lgdp.explanation_files WHERE status = 'refused' ORDER BY id")
        ).scalars().all()
    assert rows == [("applied", 1), ("refused", 0), ("refused", 0), ("applied", 1)] and kept == 4
    assert "feedback_v2.xlsx" in messages[0] and "Upload it to the right folder" in messages[1]

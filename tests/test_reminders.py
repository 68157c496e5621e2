"""Reminders: the right councils get the right reminder on the right day, once.

Time travels by passing ``now`` to the compute functions and the operator (never by sleeping);
the Airflow test positions a period around the real clock instead. Everything else is real: the
ledger in PostgreSQL, the SMTP server (aiosmtpd), the Graph stand-in, Airflow's ``dag.test``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
from pathlib import Path

import pytest

from lgdp.ledger.db import session
from lgdp.ledger.models import (
    ArchivedFile,
    CollectionPeriod,
    ExpectedSubmission,
    SubmissionIssue,
    SubmissionStatus,
    SubmissionVersion,
)
from lgdp.periods import LONDON, period_from_label, period_opening_at

ROOT = Path(__file__).resolve().parents[1]
EDINBURGH, GLASGOW, FIFE, HIGHLAND, MORAY, CLACKS = (
    "S12000036", "S12000049", "S12000047", "S12000017", "S12000020", "S12000005",
)
SIX = [EDINBURGH, GLASGOW, FIFE, HIGHLAND, MORAY, CLACKS]


def london(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=LONDON)


@pytest.fixture
def six_council_specs(tmp_path, monkeypatch):
    """CLAS for six councils (the specs folder the tasks read)."""
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "return_specs" / "shared", specs / "shared")
    text = (ROOT / "tests" / "specs_one_table" / "clas.yaml").read_text()
    (specs / "clas.yaml").write_text(text.replace("providers: all", f"providers: [{', '.join(SIX)}]"))
    monkeypatch.setenv("LGDP_SPECS_DIR", str(specs))
    return specs


def _clas():
    from lgdp.specs.load import load_register

    return load_register().get("clas")


def _open(loaded, period) -> None:
    from lgdp.ledger.register import open_period

    with session() as s, s.begin():
        open_period(s, loaded, period)


def _set_status(return_id: str, period: str, council: str, status: str, issues: list[tuple] = ()) -> None:
    """Put a council in a state as collection would: its status, a version and its issues."""
    with session() as s, s.begin():
        sub = s.query(ExpectedSubmission).join(CollectionPeriod).filter(
            CollectionPeriod.return_id == return_id, CollectionPeriod.period == period,
            ExpectedSubmission.council_code == council,
        ).one()
        sub.status = SubmissionStatus(status)
        if status in ("expected", "not_received"):
            return
        content = f"{council} {status}".encode()
        sha = hashlib.sha256(content).hexdigest()
        if s.get(ArchivedFile, sha) is None:
            s.add(ArchivedFile(sha256=sha, size=len(content), content=content))
            s.flush()
        version_status = {"received": "received", "processing": "loaded", "rejected": "rejected",
                          "queries": "queries", "accepted": "accepted"}[status]
        v = SubmissionVersion(submission_id=sub.id, version=1, file_sha256=sha, filename="clas.xlsx",
                              source_path=f"clas/{period}/{council}/clas.xlsx", source_item_id=f"item-{council}",
                              source_etag="e1", status=version_status)
        s.add(v)
        s.flush()
        for code, severity, row, item, message, *explained in issues:
            s.add(SubmissionIssue(version_id=v.id, code=code, severity=severity, row_number=row, item=item,
                                  message=message, explanation=explained[0] if explained else None))


def _six_states(period: str) -> None:
    _set_status("clas", period, GLASGOW, "received")
    _set_status("clas", period, FIFE, "rejected", [
        ("CLAS-E001", "error", 7, "date_of_birth", "Date of birth must be before the episode start date"),
        ("CLAS-E004", "error", 12, "sex", "Sex must be one of the codes in the guidance"),
        ("CLAS-Q001", "query", 3, "placement_type", "Unusual placement for this age: please explain"),
    ])
    _set_status("clas", period, HIGHLAND, "queries", [
        ("CLAS-Q001", "query", 3, "placement_type", "Unusual placement for this age: please explain"),
        ("CLAS-Q002", "query", 9, "legal_reason", "Legal reason changed since last year: please explain", "Court order"),
    ])
    _set_status("clas", period, MORAY, "accepted")
    _set_status("clas", period, CLACKS, "not_received")


def _by_council(smtp) -> dict[str, object]:
    from lgdp.notify.recipients import addresses

    out = {}
    for msg in smtp.messages:
        [code] = [c for c in SIX if addresses(c)[0] in msg["To"]]
        assert code not in out, f"{code} got two emails"
        out[code] = msg
    return out


# ---------------------------------------------------------------------------------------------
# When (pure)


def test_each_reminder_has_its_day_and_time_in_london() -> None:
    from lgdp.notify.schedule import schedule

    loaded = _clas()
    p = period_from_label(loaded.spec.collection, "2025-26")
    got = {s.kind: (s.send_at, s.escalate) for s in schedule(loaded.spec, p)}
    assert got == {
        "opening": (london(2026, 8, 1, 9, 0), False),
        "due_minus_14": (london(2026, 9, 17, 9, 0), False),
        "due_minus_7": (london(2026, 9, 24, 9, 0), False),
        "due_minus_1": (london(2026, 9, 30, 9, 0), False),
        "due_plus_1": (london(2026, 10, 2, 9, 0), False),
        "due_plus_7": (london(2026, 10, 8, 9, 0), True),
    }


@pytest.mark.parametrize(
    "kind, now, action",
    [
        ("due_minus_7", london(2026, 9, 24, 8, 59), "wait"),
        ("due_minus_7", london(2026, 9, 24, 9, 0), "send"),
        ("due_minus_7", london(2026, 9, 29, 18, 0), "send"),  # late start, next not yet due: catch up
        ("due_minus_7", london(2026, 9, 30, 9, 0), "skip"),  # due_minus_1 is due too: it sends instead
        ("opening", london(2026, 9, 1, 12, 0), "send"),  # late: still the latest reminder due
        ("opening", london(2026, 9, 18, 12, 0), "skip"),  # backfill after -14 passed
        ("due_plus_7", london(2026, 10, 31, 23, 59), "send"),
        ("due_plus_7", london(2026, 11, 1, 0, 0), "skip"),  # the collection has closed
    ],
)
def test_decision_at_a_moment(kind: str, now: dt.datetime, action: str) -> None:
    from lgdp.notify.schedule import decide, schedule

    loaded = _clas()
    p = period_from_label(loaded.spec.collection, "2025-26")
    assert decide(schedule(loaded.spec, p), kind, p, now).action == action


def test_the_clock_change_keeps_the_hour() -> None:
    """The monthly return's reminders either side of the October clock change stay at 09:00."""
    from lgdp.notify.schedule import schedule
    from lgdp.specs.load import load_register

    loaded = load_register().get("temporary_accommodation_monthly")
    p = period_from_label(loaded.spec.collection, "2026-09")
    for slot in schedule(loaded.spec, p):
        local = slot.send_at.astimezone(LONDON)
        assert (local.hour, local.minute) == tuple(int(x) for x in loaded.spec.collection.opens.time.split(":"))


# ---------------------------------------------------------------------------------------------
# Who and what (real ledger, real SMTP)


def test_due_minus_7_reaches_each_outstanding_council_with_its_own_status(six_council_specs, smtp, clean_ledger) -> None:
    from lgdp.notify.reminders import send_reminders

    loaded = _clas()
    p = period_from_label(loaded.spec.collection, "2025-26")
    _open(loaded, p)
    _six_states("2025-26")
    run = send_reminders(loaded, p, "due_minus_7", now=london(2026, 9, 24, 9, 0, 30))
    assert sorted(run.sent) == sorted([EDINBURGH, GLASGOW, FIFE, HIGHLAND])
    assert run.not_outstanding == 2  # Moray accepted, Clackmannanshire closed as not received
    mail = _by_council(smtp)
    assert set(mail) == {EDINBURGH, GLASGOW, FIFE, HIGHLAND}
    title = "Children Looked After in Scotland (CLAS)"

    ed = mail[EDINBURGH]
    assert ed["Subject"] == f"Reminder: {title} 2025-26 is due in 7 days, Thursday 1 October 2026"
    assert ed["To"] == "data-returns@city-of-edinburgh.example.org" and ed["Cc"] is None
    text = ed.get_body(("plain",)).get_content()
    assert "To the City of Edinburgh data returns team," in text
    assert "We have not yet received your" in text
    assert "Put it in your folder: https://lgdp.sharepoint.example.org/sites/lgdp/Shared%20Documents/clas/2025-26/S12000036\n" in text
    assert "Guidance and templates: https://lgdp.sharepoint.example.org/sites/lgdp/Shared%20Documents/clas/2025-26/S12000036/_platform" in text
    assert "Ask Improvement Service" in text and "clas-returns@example.org" in text
    html = ed.get_body(("html",)).get_content()
    assert f"<h1>Reminder: {title} 2025-26 is due in 7 days, Thursday 1 October 2026</h1>" in html
    assert "<h2>What to do</h2>" in html and "<ol>" in html
    assert '<a href="https://lgdp.sharepoint.example.org/sites/lgdp/Shared%20Documents/clas/2025-26/S12000036">your ' in html

    gl = mail[GLASGOW]
    assert gl["Subject"] == f"{title} 2025-26: your file is being checked"
    assert "You do not need to do anything now" in gl.get_body(("plain",)).get_content()

    fife = mail[FIFE]
    assert fife["Subject"] == f"Action needed: {title} 2025-26 was rejected with 2 errors"
    text = fife.get_body(("plain",)).get_content()
    assert "it has 2 errors to correct and 1 query to explain" in text
    assert ("Errors to correct\n-----------------\n"
            "- CLAS-E001, row 7, date_of_birth: Date of birth must be before the episode start date\n"
            "- CLAS-E004, row 12, sex: Sex must be one of the codes in the guidance\n") in text
    assert "CLAS-Q001" not in text  # the errors come first; queries after they are fixed
    html = fife.get_body(("html",)).get_content()
    assert "<h2>Errors to correct</h2>" in html and '<th scope="col"' in html and "<caption" in html

    hl = mail[HIGHLAND]
    assert hl["Subject"] == f"Action needed: {title} 2025-26 has 1 query awaiting your explanation"
    text = hl.get_body(("plain",)).get_content()
    assert "- CLAS-Q001, row 3, placement_type: Unusual placement" in text
    assert "CLAS-Q002" not in text  # explained already

    # nothing about any other council in any email
    for code, msg in mail.items():
        body = msg.get_body(("plain",)).get_content() + msg.get_body(("html",)).get_content()
        others = [c for c in SIX if c != code]
        assert not any(c in body for c in others)


def test_rerun_sends_nothing_new_and_escalation_copies_the_senior_contact(six_council_specs, smtp, clean_ledger) -> None:
    from lgdp.notify.reminders import send_reminders

    loaded = _clas()
    p = period_from_label(loaded.spec.collection, "2025-26")
    _open(loaded, p)
    _six_states("2025-26")
    now = london(2026, 10, 8, 9, 5)
    first = send_reminders(loaded, p, "due_plus_7", now=now)
    again = send_reminders(loaded, p, "due_plus_7", now=now + dt.timedelta(hours=2))
    assert len(first.sent) == 4 and again.sent == [] and sorted(again.already_sent) == sorted(first.sent)
    assert len(smtp.messages) == 4
    ed = _by_council(smtp)[EDINBURGH]
    assert ed["Subject"] == "Escalation: Overdue: Children Looked After in Scotland (CLAS) 2025-26 was due Thursday 1 October 2026"
    assert ed["Cc"] == "head-of-performance@city-of-edinburgh.example.org"
    assert "It was due Thursday 1 October 2026" in ed.get_body(("plain",)).get_content()
    assert "the collection closes Saturday 31 October 2026" in ed.get_body(("plain",)).get_content()
    # a different reminder of the same period is a different email
    send_reminders(loaded, p, "due_minus_7", now=london(2026, 9, 24, 9, 0))
    assert len(smtp.messages) == 8


def test_an_smtp_outage_mid_reminder_ends_in_a_retry_that_delivers_one_copy_each(six_council_specs, smtp, clean_ledger) -> None:
    from lgdp.notify.reminders import RemindersNotSent, send_reminders

    loaded = _clas()
    p = period_from_label(loaded.spec.collection, "2025-26")
    _open(loaded, p)
    now = london(2026, 9, 30, 9, 0)
    smtp.fail_next(2, 451)  # the first two councils' sends are refused
    with pytest.raises(RemindersNotSent, match="2 council"):
        send_reminders(loaded, p, "due_minus_1", now=now)
    assert len(smtp.messages) == 4
    smtp.stop()  # and then the server is down when the task first retries
    with pytest.raises(RemindersNotSent, match="2 council"):
        send_reminders(loaded, p, "due_minus_1", now=now)
    smtp.start()
    retry = send_reminders(loaded, p, "due_minus_1", now=now)
    assert len(retry.sent) == 2 and len(retry.already_sent) == 4
    assert sorted(_by_council(smtp)) == sorted(SIX)  # _by_council asserts one email per council
    from sqlalchemy import text

    from lgdp.ledger.db import engine

    with engine().connect() as conn:
        rows = conn.execute(text("SELECT status, attempts FROM lgdp.sent_emails ORDER BY attempts")).all()
    assert sorted(rows) == [("sent", 1)] * 4 + [("sent", 3)] * 2


def test_graph_transport_sends_the_reminder(six_council_specs, m365, clean_ledger, monkeypatch) -> None:
    import json

    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    from lgdp.notify.reminders import send_reminders

    conn = m365.connection()
    conn["extra"]["from_email"] = "returns-platform@lgdp.example.org"
    monkeypatch.setenv("AIRFLOW_CONN_MSGRAPH_MAIL", json.dumps(conn))
    monkeypatch.setenv("LGDP_MAIL_TRANSPORT", "msgraph")
    KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_mail", None)
    loaded = _clas()
    p = period_from_label(loaded.spec.collection, "2025-26")
    _open(loaded, p)
    for c in [GLASGOW, FIFE, HIGHLAND, MORAY, CLACKS]:
        _set_status("clas", "2025-26", c, "accepted")
    send_reminders(loaded, p, "due_plus_7", now=london(2026, 10, 8, 10, 0))
    [stored] = m365.mail()
    msg = stored["message"]
    assert msg["subject"].startswith("Escalation: Overdue: Children Looked After")
    assert msg["toRecipients"] == [{"emailAddress": {"address": "data-returns@city-of-edinburgh.example.org"}}]
    assert msg["ccRecipients"] == [{"emailAddress": {"address": "head-of-performance@city-of-edinburgh.example.org"}}]


# ---------------------------------------------------------------------------------------------
# The operator: waits without a worker slot


class _TI:
    def __init__(self, period: str) -> None:
        self.period = period

    def xcom_pull(self, task_ids: str):
        return {"period": self.period}


class _Run:
    conf: dict = {}
    logical_date = None
    run_after = None


def test_operator_defers_to_a_datetime_trigger_until_its_time(six_council_specs, smtp, clean_ledger) -> None:
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger
    from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

    from lgdp.airflow.remind import ReminderOperator

    loaded = _clas()
    p = period_from_label(loaded.spec.collection, "2025-26")
    _open(loaded, p)
    op = ReminderOperator(task_id="remind_due_minus_7", return_id="clas", kind="due_minus_7")
    context = {"ti": _TI("2025-26"), "dag_run": _Run()}
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context, now=london(2026, 9, 20, 12, 0))
    trigger = deferred.value.trigger
    assert isinstance(trigger, DateTimeTrigger) and deferred.value.method_name == "resume"
    assert trigger.moment == london(2026, 9, 24, 9, 0)
    assert smtp.messages == []
    out = op.execute(context, now=london(2026, 9, 24, 9, 0))
    assert len(out["sent"]) == 6 and len(smtp.messages) == 6
    # after the close: nothing, and it says why
    with pytest.raises(AirflowSkipException, match="closed"):
        op.execute(context, now=london(2026, 11, 2, 9, 0))


# ---------------------------------------------------------------------------------------------
# Through Airflow


@pytest.mark.airflow
@pytest.mark.slow
def test_return_dag_sends_the_reminder_due_today_once(tmp_path, m365, smtp, airflow_db, clean_ledger, monkeypatch) -> None:
    """A CLAS period due in 7 days: the DAG's remind_due_minus_7 emails the outstanding councils;
    the opening notice and the -14 reminder, also past, are superseded; a rerun sends nothing."""
    from airflow.dag_processing.dagbag import DagBag

    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "return_specs" / "shared", specs / "shared")
    text = (ROOT / "tests" / "specs_one_table" / "clas.yaml").read_text().replace("providers: all", f"providers: [{EDINBURGH}, {GLASGOW}, {MORAY}]")
    text = re.sub(r'time: "09:00"', 'time: "00:00"', text)
    (specs / "clas.yaml").write_text(text)
    monkeypatch.setenv("LGDP_SPECS_DIR", str(specs))
    loaded = _clas()
    today = dt.datetime.now(LONDON).date()
    current = period_opening_at(loaded.spec.collection, dt.datetime.now(dt.timezone.utc))
    due_days = (today + dt.timedelta(days=7) - current.opens_at.date()).days
    text = re.sub(r"due_days_after_opening: \d+", f"due_days_after_opening: {due_days}", text)
    text = re.sub(r"closes_days_after_opening: \d+", f"closes_days_after_opening: {due_days + 30}", text)
    (specs / "clas.yaml").write_text(text)
    loaded = _clas()
    period = period_from_label(loaded.spec.collection, current.label)
    assert period.due_at.date() == today + dt.timedelta(days=7)
    _open(loaded, period)
    _set_status("clas", period.label, MORAY, "accepted")
    _set_status("clas", period.label, GLASGOW, "rejected", [("CLAS-E001", "error", 7, "date_of_birth", "Date of birth must be before the episode start date")])

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["return_clas"]
    skip = r"^(collect|distribute|remind_due_minus_1|remind_due_plus_1|remind_due_plus_7)$"  # others; not due yet: they would wait
    run = dag.test(run_conf={"period": period.label}, mark_success_pattern=skip)
    assert run.state == "success"
    mail = _by_council(smtp)
    assert set(mail) == {EDINBURGH, GLASGOW}
    assert mail[EDINBURGH]["Subject"].startswith("Reminder: Children Looked After in Scotland (CLAS)") 
    assert "is due in 7 days" in mail[EDINBURGH]["Subject"]
    assert mail[GLASGOW]["Subject"].endswith("was rejected with 1 error")
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["remind_opening"] == states["remind_due_minus_14"] == "skipped"  # superseded, said in the log
    assert states["remind_due_minus_7"] == "success"

    again = dag.test(run_conf={"period": period.label}, mark_success_pattern=skip)
    assert again.state == "success"
    assert len(smtp.messages) == 2


def test_a_council_without_contacts_fails_the_task_after_the_others_are_sent(six_council_specs, smtp, clean_ledger, caplog) -> None:
    from lgdp.notify.reminders import RemindersNotSent, send_reminders

    (six_council_specs / "shared" / "contacts" / f"{FIFE}.yaml").unlink()
    loaded = _clas()
    p = period_from_label(loaded.spec.collection, "2025-26")
    _open(loaded, p)
    with pytest.raises(RemindersNotSent, match=f"1 council.*{FIFE}"):
        send_reminders(loaded, p, "due_minus_1", now=london(2026, 9, 30, 9, 0))
    assert len(smtp.messages) == 5
    assert f"return_specs/shared/contacts/{FIFE}.yaml" in caplog.text  # what to fix

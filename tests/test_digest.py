"""The weekly council digest: exactly the returns due in the window, each with that council's status.

Time travels by passing ``now``; the ledger (PostgreSQL), SMTP server (aiosmtpd) and Airflow
(``dag.test`` on ``council_digest``) are real.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from lgdp.periods import LONDON, period_from_label
from test_reminders import _open, _set_status

ROOT = Path(__file__).resolve().parents[1]
EDINBURGH, EAST_AYRSHIRE = "S12000036", "S12000008"
MONDAY = dt.datetime(2026, 5, 11, 7, 0, tzinfo=LONDON)  # window to Wednesday 10 June 2026


def _register():
    from lgdp.specs.load import load_register

    return load_register()


def _window(now: dt.datetime) -> list[tuple[str, str, bool]]:
    from lgdp.notify.digest import periods_in_window

    return sorted((e.loaded.id, e.period.label, e.overdue) for l in _register().approved() for e in periods_in_window(l, now))


def test_periods_due_in_the_next_30_days_across_the_register() -> None:
    assert _window(MONDAY) == [
        ("la_finance_quarterly", "2025-26-Q4", False),  # due Friday 15 May
        ("social_care_survey", "2025-26", False),  # due Sunday 31 May
        ("temporary_accommodation_monthly", "2026-04", False),  # due Friday 15 May
    ]  # temporary accommodation 2026-05 is due 15 June: outside
    # late autumn: two periods past due and still open, one due
    assert _window(dt.datetime(2026, 11, 23, 7, 0, tzinfo=LONDON)) == [
        ("la_finance_quarterly", "2026-27-Q2", True),
        ("temporary_accommodation_monthly", "2026-10", True),
        ("temporary_accommodation_monthly", "2026-11", False),
    ]


def test_the_window_edges() -> None:
    from lgdp.notify.digest import periods_in_window

    loaded = _register().get("temporary_accommodation_monthly")
    p = period_from_label(loaded.spec.collection, "2026-04")
    labels = lambda now: [e.period.label for e in periods_in_window(loaded, now)]  # noqa: E731
    assert "2026-04" in labels(p.due_at - dt.timedelta(days=30))
    assert "2026-04" not in labels(p.due_at - dt.timedelta(days=30, minutes=1))
    assert "2026-04" in labels(p.closes_at)  # overdue, still open
    assert "2026-04" not in labels(p.closes_at + dt.timedelta(minutes=1))


def test_each_council_gets_its_own_list_with_its_status_once_a_week(smtp, clean_ledger) -> None:
    from lgdp.notify.digest import send_digests

    reg = _register()
    lfq, scs = reg.get("la_finance_quarterly"), reg.get("social_care_survey")
    _open(lfq, period_from_label(lfq.spec.collection, "2025-26-Q4"))
    _open(scs, period_from_label(scs.spec.collection, "2025-26"))
    _set_status("la_finance_quarterly", "2025-26-Q4", EDINBURGH, "rejected", [
        ("LFQ-E001", "error", 4, "net_expenditure", "Net expenditure must equal gross expenditure minus income"),
        ("LFQ-E002", "error", 5, "net_expenditure", "Net expenditure must equal gross expenditure minus income"),
    ])
    _set_status("la_finance_quarterly", "2025-26-Q4", EAST_AYRSHIRE, "accepted")
    _set_status("social_care_survey", "2025-26", EDINBURGH, "queries", [
        ("SCS-Q001", "query", 2, "client_group", "Unusual client group for this age: please explain"),
    ])

    out = send_digests(MONDAY, councils=[EDINBURGH, EAST_AYRSHIRE])
    assert sorted(out["sent"]) == sorted([EDINBURGH, EAST_AYRSHIRE]) and out["week"] == "2026-W20"
    mail = {m["To"]: m for m in smtp.messages}
    ed = mail["data-returns@city-of-edinburgh.example.org"]
    assert ed["Subject"] == "Your returns: 3 due in the next 30 days (week of Monday 11 May 2026)"
    text = ed.get_body(("plain",)).get_content()
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert lines == [  # earliest first (then by title)
        "- Households in Temporary Accommodation (monthly snapshot) 2026-04: due Friday 15 May 2026. Status: not yet open.",
        "- Local Authority Quarterly Revenue Monitoring 2025-26-Q4: due Friday 15 May 2026. Status: rejected: 2 errors to correct.",
        "- Social Care Survey (client-level pilot) 2025-26: due Sunday 31 May 2026. Status: 1 query awaiting your explanation.",
    ]
    assert "  Folder: https://lgdp.sharepoint.example.org/sites/lgdp/Shared%20Documents/social_care_survey/2025-26/S12000036" in text
    html = ed.get_body(("html",)).get_content()
    assert "<h2>Due in the next 30 days</h2>" in html and '<th scope="col"' in html
    assert '<a href="https://lgdp.sharepoint.example.org/sites/lgdp/Shared%20Documents/la_finance_quarterly/2025-26-Q4/S12000036">' in html

    ea = mail["data-returns@east-ayrshire.example.org"]
    text = ea.get_body(("plain",)).get_content()
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("- ")] == [
        "- Households in Temporary Accommodation (monthly snapshot) 2026-04",
        "- Local Authority Quarterly Revenue Monitoring 2025-26-Q4",
    ]  # East Ayrshire does not provide the social care survey
    assert "Status: accepted." in text
    assert "Edinburgh" not in text and "S12000036" not in text

    # later the same week: nothing new; the next week: a new digest
    again = send_digests(MONDAY + dt.timedelta(days=3), councils=[EDINBURGH, EAST_AYRSHIRE])
    assert again["sent"] == [] and len(again["already_sent"]) == 2 and len(smtp.messages) == 2
    send_digests(MONDAY + dt.timedelta(days=7), councils=[EDINBURGH])
    assert len(smtp.messages) == 3


@pytest.mark.airflow
@pytest.mark.slow
def test_council_digest_dag_sends_one_per_council_and_a_rerun_none(smtp, airflow_db, clean_ledger, monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from lgdp.notify.digest import periods_in_window

    monkeypatch.setenv("LGDP_DIGEST_CRON", "30 6 * * 2")
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["council_digest"]
    assert dag.timetable.expression == "30 6 * * 2" and dag.catchup is False
    logical = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    run = dag.test(logical_date=logical)
    assert run.state == "success"
    reg = _register()
    entries = [e for l in reg.approved() for e in periods_in_window(l, logical)]
    expected = {c.code for e in entries for c in e.loaded.providers}
    assert len(smtp.messages) == len(expected)
    assert len({m["To"] for m in smtp.messages}) == len(expected)  # one each
    again = dag.test(logical_date=logical + dt.timedelta(seconds=1))
    assert again.state == "success" and len(smtp.messages) == len(expected)

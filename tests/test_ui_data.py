"""The pages' computing (``lgdp.ui``) against a real ledger filled through the real pipeline.

A period of two returns is opened and a mix of councils is played through ``lgdp.collect.process``
(``lgdp.demo_seed.play``): accepted, rejected with errors, queries awaiting explanation, queries
explained in the returned feedback workbook, and not received yet. Then each view is checked
against what the ledger holds.
"""

from __future__ import annotations

import datetime as dt

import pytest

from lgdp import demo_seed

EDINBURGH, GLASGOW, FIFE, ABERDEEN, HIGHLAND, DUNDEE = "S12000036", "S12000049", "S12000047", "S12000033", "S12000017", "S12000042"
PLAN = {
    EDINBURGH: demo_seed.REJECTED,
    GLASGOW: demo_seed.ACCEPTED,
    FIFE: demo_seed.QUERIES,
    ABERDEEN: demo_seed.EXPLAINED,
    HIGHLAND: demo_seed.NOTHING,
}


def open_label(loaded, now=None) -> str:
    from lgdp.periods import period_opening_at

    return period_opening_at(loaded.spec.collection, now or dt.datetime.now(dt.timezone.utc)).label


@pytest.fixture(scope="module")
def played(ledger_url):
    """The ledger after a realistic mix (module-wide: the pipeline runs once)."""
    from sqlalchemy import text

    from lgdp.ledger.db import engine, session
    from lgdp.ledger.models import Base
    from lgdp.ledger.register import sync_register
    from lgdp.specs.load import load_register

    with engine().begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(f"lgdp.{t.name}" for t in Base.metadata.sorted_tables) + " RESTART IDENTITY CASCADE"))
    reg = load_register()
    with session() as s, s.begin():
        sync_register(s, reg.specs, reg.reference.councils)
    ta = reg.get("temporary_accommodation_monthly")
    statuses = demo_seed.play(ta, open_label(ta), PLAN)
    clas = reg.get("clas")  # a return of several tables (xlsx, one sheet each)
    clas_statuses = demo_seed.play(clas, open_label(clas), {EDINBURGH: demo_seed.REJECTED, GLASGOW: demo_seed.EXPLAINED, FIFE: demo_seed.QUERIES})
    return {"reg": reg, "ta": ta, "period": open_label(ta), "statuses": statuses, "clas_statuses": clas_statuses}


def test_play_gives_every_outcome(played):
    st = played["statuses"]
    assert st[EDINBURGH] == "rejected"
    assert st[GLASGOW] == "accepted"
    assert st[FIFE] == "queries"
    assert st[ABERDEEN] == "accepted"  # explained in the returned workbook
    assert st[HIGHLAND] == "expected"
    clas = played["clas_statuses"]
    assert (clas[EDINBURGH], clas[GLASGOW], clas[FIFE], clas[HIGHLAND]) == ("rejected", "accepted", "queries", "expected")


def test_register_lists_every_return_with_governance(played):
    from lgdp.ledger.db import session
    from lgdp.ui.register import register

    with session() as s:
        rows = register(s)
        assert {r.id for r in rows} == {sp.id for sp in played["reg"].specs}
        clas = next(r for r in rows if r.id == "clas")
        assert clas.requester and clas.legal_basis and clas.purpose and clas.items > 5
        assert [r.id for r in register(s, q="homeless")] or [r.id for r in register(s, q="temporary")]
        assert all(r.frequency == "monthly" for r in register(s, frequency="monthly"))
        assert register(s, q="no such words anywhere zzz") == []


def test_return_detail_items_rules_distribution_and_shared(played):
    from lgdp.cli import item_overlap
    from lgdp.ledger.db import session
    from lgdp.ui.register import return_detail

    clas = played["reg"].get("clas")
    with session() as s:
        d = return_detail(s, "clas")
    # items per table: CLAS has several (spec.tables), the others one (spec.dataset)
    assert [t["name"] for t in d["tables"]] == [t.dataset for t in clas.tables]
    for table, view in zip(d["tables"], clas.tables):
        items = {i["name"]: i for i in table["items"]}
        assert set(items) == {i.name for i in view.items}
        for it in view.items:
            assert items[it.name]["wording"] == it.wording, (view.dataset, it.name)
            assert items[it.name]["guidance"] == it.guidance, (view.dataset, it.name)
    with session() as s:
        ta = return_detail(s, "temporary_accommodation_monthly")
    assert [t["name"] for t in ta["tables"]] == [played["ta"].spec.dataset]
    assert [(r["code"], r["severity"], r["message"]) for r in d["rules"]] == [(r.code, r.severity.value, r.message) for r in clas.spec.rules]
    assert [x["requester"] for x in d["distribution"]] == [x.requester for x in clas.spec.distribution]
    expected = {ref for ref, uses in item_overlap(played["reg"].specs).items() if any(r == "clas" for r, _ in uses)}
    assert {x["ref"] for x in d["shared"]} == expected


def test_progress_matrix_matches_the_ledger(played):
    from lgdp.ledger.db import session
    from lgdp.ledger.register import period_status
    from lgdp.ui.progress import progress

    with session() as s:
        p = progress(s)
        truth = period_status(s, "temporary_accommodation_monthly", played["period"])
    row = next(r for r in p.rows if r.return_id == "temporary_accommodation_monthly")
    assert row.cells == truth
    assert row.counts["rejected"] == 1 and row.counts["accepted"] == 2 and row.counts["queries"] == 1
    assert sum(p.totals.values()) == sum(len(r.cells) for r in p.rows)
    later = progress(s := session(), now=row.closes_at + dt.timedelta(days=1))  # closed: not open any more
    s.close()
    assert all(r.return_id != "temporary_accommodation_monthly" or r.period != played["period"] for r in later.rows)


def test_submission_has_versions_issues_and_feedback_links(played):
    from lgdp.ledger.db import session
    from lgdp.ui.progress import submission

    with session() as s:
        rej = submission(s, "temporary_accommodation_monthly", played["period"], EDINBURGH)
        expl = submission(s, "temporary_accommodation_monthly", played["period"], ABERDEEN)
        none = submission(s, "temporary_accommodation_monthly", played["period"], HIGHLAND)
    assert rej["status"] == "rejected" and rej["issue_counts"]["error"] >= 1
    assert any(i["code"].startswith("TA-E") or i["severity"] == "error" for i in rej["issues"])
    assert rej["versions"][0]["feedback_url"].endswith("/_platform/feedback_v1.xlsx")
    assert expl["explanation_files"] and expl["explanation_files"][0]["status"] == "applied"
    assert all(i["explanation"] for i in expl["issues"] if i["severity"] == "query")
    assert none["versions"] == [] and none["status"] == "expected"


def test_council_page_data(played):
    from lgdp.ledger.db import session
    from lgdp.ui.council import council

    with session() as s:
        c = council(s, EDINBURGH)
        assert council(s, "S12999999") is None
    sub = next(x for x in c["submissions"] if x["return_id"] == "temporary_accommodation_monthly")
    assert sub["status"] == "rejected" and sub["open"]
    assert {i["return_id"] for i in c["latest_issues"]} == {"temporary_accommodation_monthly", "clas"}  # both rejected
    assert c["upcoming"]


def test_calendar_heat_peaks_clashes_and_ics(played):
    from icalendar import Calendar

    from lgdp.ledger.db import session
    from lgdp.periods import period_from_label
    from lgdp.ui.calendar import calendar, ics_feed

    today = dt.date(2026, 12, 4)
    with session() as s:
        c = calendar(s, today, 12, clash_threshold=1)
        feed = ics_feed(s, EDINBURGH, today)
        assert ics_feed(s, "S12999999", today) is None
    assert c["months"][0] == "2026-12" and len(c["months"]) == 12
    edinburgh = next(x for x in c["councils"] if x["code"] == EDINBURGH)
    ta = played["ta"]
    dec = period_from_label(ta.spec.collection, "2026-11")
    assert dec.due_at.strftime("%Y-%m") == "2026-12"
    assert edinburgh["due"]["2026-12"] >= 1
    assert sum(edinburgh["due"].values()) >= 12  # a monthly return every month, and the others
    assert c["peak_months"] and all(c["month_totals"][m] == max(c["month_totals"].values()) for m in c["peak_months"])
    # social care survey is collected from a subset of councils only
    scs = played["reg"].get("social_care_survey")
    outside = next(code for code in (x["code"] for x in c["councils"]) if code not in {p.code for p in scs.providers})
    assert all(outside not in w["councils"] for w in c["windows"] if w["return_id"] == "social_care_survey")
    for clash in c["clashes"]:
        assert len(clash["returns"]) > 1
    opened = [w for w in c["windows"] if w["return_id"] == ta.id and w["period"] == played["period"]]
    assert len(opened) == 1 and len(opened[0]["councils"]) == len(ta.providers)  # the ledger's own period, once
    events = Calendar.from_ical(feed).walk("VEVENT")
    assert any(str(e["summary"]).startswith("Due: ") and "Temporary" in str(e["summary"]) for e in events)
    assert len({str(e["uid"]) for e in events}) == len(events)


def test_demo_specs_have_a_window_open_today(tmp_path):
    from lgdp.periods import period_opening_at
    from lgdp.specs.load import load_register

    now = dt.datetime(2026, 12, 4, 12, tzinfo=dt.timezone.utc)
    folder, periods = demo_seed.demo_specs(tmp_path, now)
    reg = load_register(folder)
    assert not reg.errors and {s.id for s in reg.approved()} == set(periods)
    for s in reg.approved():
        p = period_opening_at(s.spec.collection, now)
        assert p.opens_at < now < p.due_at, s.id
        assert periods[s.id] == p.label
    again, same = demo_seed.demo_specs(tmp_path, now + dt.timedelta(hours=1))
    assert same == periods  # kept while still open

"""Collection periods and the opening schedule derived from a spec's collection block."""

import datetime as dt

import pytest

from lgdp.periods import LONDON, opening_cron, period_from_label, period_opening_at
from lgdp.specs.model import Collection


def col(**kw) -> Collection:
    base = dict(due_days_after_opening=30, closes_days_after_opening=60)
    base.update(kw)
    return Collection.model_validate(base)


def test_annual_clas_year_runs_august_to_july():
    c = col(frequency="annual", year_starts="08-01", due_days_after_opening=61, closes_days_after_opening=91)
    p = period_opening_at(c, dt.datetime(2026, 8, 1, 8, 0, tzinfo=dt.timezone.utc))  # 09:00 BST
    assert p.label == "2025-26"
    assert (p.starts_on, p.ends_on) == (dt.date(2025, 8, 1), dt.date(2026, 7, 31))
    assert p.opens_at == dt.datetime(2026, 8, 1, 9, 0, tzinfo=LONDON)
    assert p.due_at.date() == dt.date(2026, 10, 1) and p.closes_at.date() == dt.date(2026, 10, 31)
    assert p.due_in_words() == "Thursday 1 October 2026"
    assert opening_cron(c) == "0 9 1 8 *"


def test_a_moment_before_opening_belongs_to_the_previous_period():
    c = col(frequency="annual", year_starts="08-01")
    p = period_opening_at(c, dt.datetime(2026, 8, 1, 7, 59, tzinfo=dt.timezone.utc))
    assert p.label == "2024-25"


def test_quarterly_financial_year_with_a_month_of_grace():
    c = col(frequency="quarterly", year_starts="04-01", opens={"months_after_period_end": 1, "day": 15})
    assert opening_cron(c) == "0 9 15 2,5,8,11 *"
    p = period_opening_at(c, dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc))
    assert p.label == "2026-27-Q2"
    assert (p.starts_on, p.ends_on) == (dt.date(2026, 7, 1), dt.date(2026, 9, 30))
    assert p.opens_at.date() == dt.date(2026, 11, 15)
    q4 = period_from_label(c, "2025-26-Q4")
    assert (q4.starts_on, q4.ends_on, q4.opens_at.date()) == (dt.date(2026, 1, 1), dt.date(2026, 3, 31), dt.date(2026, 5, 15))


def test_monthly_and_calendar_year_labels():
    m = col(frequency="monthly", year_starts="01-01")
    assert opening_cron(m) == "0 9 1 * *"
    assert period_opening_at(m, dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)).label == "2026-10"
    a = col(frequency="annual", year_starts="01-01")
    assert period_from_label(a, "2025").ends_on == dt.date(2025, 12, 31)


@pytest.mark.parametrize("label", ["2025", "2025-27", "25-26", "2025-26-Q1", "nonsense"])
def test_labels_that_are_not_periods_of_an_annual_august_return_are_refused(label):
    c = col(frequency="annual", year_starts="08-01")
    with pytest.raises(ValueError, match="2025-26"):
        period_from_label(c, label)


def test_every_cron_opening_maps_back_to_a_period_opening_then():
    """The timetable and the ledger agree: each opening the cron fires is some period's opening."""
    from croniter import croniter

    for c in [
        col(frequency="annual", year_starts="08-01"),
        col(frequency="quarterly", year_starts="04-01", opens={"months_after_period_end": 1, "day": 15, "time": "07:30"}),
        col(frequency="monthly", year_starts="01-01", opens={"day": 5}),
    ]:
        it = croniter(opening_cron(c), dt.datetime(2025, 1, 1, tzinfo=LONDON))
        for _ in range(14):
            fire = it.get_next(dt.datetime)
            assert period_opening_at(c, fire).opens_at == fire

"""Collection periods: which reporting period a collection covers and when its window opens,
is due and closes, in Europe/London.

Months are counted as ``year * 12 + month - 1`` so annual, quarterly and monthly returns share one
piece of arithmetic. The timetable (one DAG run per period, at its opening time) and the ledger
both derive from these functions, so they cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from lgdp.specs.model import Collection, Frequency

LONDON = ZoneInfo("Europe/London")
_LENGTH = {Frequency.annual: 12, Frequency.quarterly: 3, Frequency.monthly: 1}


@dataclass(frozen=True)
class Period:
    """One reporting period of a return and its collection window (aware datetimes, London)."""

    label: str
    starts_on: dt.date
    ends_on: dt.date
    opens_at: dt.datetime
    due_at: dt.datetime
    closes_at: dt.datetime

    def due_in_words(self) -> str:
        return f"{self.due_at:%A} {self.due_at.day} {self.due_at:%B %Y}"


def _month_index(d: dt.date) -> int:
    return d.year * 12 + d.month - 1


def _date_of(index: int, day: int = 1) -> dt.date:
    return dt.date(index // 12, index % 12 + 1, day)


def _year_start_month(c: Collection) -> int:
    return int(c.year_starts[:2])


def _aligned_start(c: Collection, month_index: int) -> int:
    """The first month of the period that contains ``month_index``."""
    length = _LENGTH[c.frequency]
    offset = _year_start_month(c) - 1
    return month_index - ((month_index - offset) % length)


def _label(c: Collection, start_index: int) -> str:
    start = _date_of(start_index)
    if c.frequency == Frequency.monthly:
        return f"{start:%Y-%m}"
    ys = _year_start_month(c)
    year_start_index = start_index - ((start_index - (ys - 1)) % 12)
    y = year_start_index // 12
    year_label = str(y) if ys == 1 else f"{y}-{(y + 1) % 100:02d}"
    if c.frequency == Frequency.annual:
        return year_label
    quarter = (start_index - year_start_index) // 3 + 1
    return f"{year_label}-Q{quarter}"


def period_starting(c: Collection, start_index: int) -> Period:
    length = _LENGTH[c.frequency]
    hour, minute = (int(x) for x in c.opens.time.split(":"))
    open_month = start_index + length + c.opens.months_after_period_end
    opens_date = _date_of(open_month, c.opens.day)
    opens_at = dt.datetime.combine(opens_date, dt.time(hour, minute), tzinfo=LONDON)
    # Add calendar days in local time so a window spanning the clock change keeps its hour.
    due_at = dt.datetime.combine(opens_date + dt.timedelta(days=c.due_days_after_opening), dt.time(23, 59), tzinfo=LONDON)
    closes_at = dt.datetime.combine(
        opens_date + dt.timedelta(days=c.closes_days_after_opening), dt.time(23, 59), tzinfo=LONDON
    )
    return Period(
        label=_label(c, start_index),
        starts_on=_date_of(start_index),
        ends_on=_date_of(start_index + length) - dt.timedelta(days=1),
        opens_at=opens_at,
        due_at=due_at,
        closes_at=closes_at,
    )


def period_containing(c: Collection, day: dt.date) -> Period:
    """The reporting period that ``day`` falls in."""
    return period_starting(c, _aligned_start(c, _month_index(day)))


def period_opening_at(c: Collection, when: dt.datetime) -> Period:
    """The period whose collection opens at ``when``, or the latest one opened before it.

    A scheduled DAG run's logical date is the opening time, so this gives the run's period; a
    manual run at any other time takes the most recent period whose window has opened.
    """
    local = when.astimezone(LONDON)
    length = _LENGTH[c.frequency]
    index = _aligned_start(c, _month_index(local.date()) - length - c.opens.months_after_period_end)
    for candidate in (index + length, index, index - length):
        p = period_starting(c, candidate)
        if p.opens_at <= local:
            return p
    return period_starting(c, index - 2 * length)


def period_from_label(c: Collection, label: str) -> Period:
    """Parse a period label ('2025-26', '2025-26-Q2', '2025-07'); raises ValueError if it is not one."""
    label = label.strip()
    ys = _year_start_month(c)
    if c.frequency == Frequency.monthly:
        m = re.fullmatch(r"(\d{4})-(0[1-9]|1[0-2])", label)
        if not m:
            raise ValueError(f"{label!r} is not a monthly period: write YYYY-MM, e.g. 2025-07")
        start = int(m.group(1)) * 12 + int(m.group(2)) - 1
    else:
        m = re.fullmatch(r"(\d{4})(?:-(\d{2}))?(?:-Q([1-4]))?", label)
        if not m or (c.frequency == Frequency.quarterly) != bool(m.group(3)) or (ys == 1) == bool(m.group(2)):
            example = _label(c, _aligned_start(c, 2025 * 12 + ys - 1))
            raise ValueError(f"{label!r} is not a period of this return: write it like {example}")
        start = int(m.group(1)) * 12 + ys - 1 + (int(m.group(3)) - 1) * 3 if m.group(3) else int(m.group(1)) * 12 + ys - 1
    p = period_starting(c, start)
    if p.label != label:
        raise ValueError(f"{label!r} is not a period of this return (did you mean {p.label}?)")
    return p


def opening_cron(c: Collection) -> str:
    """Cron expression (Europe/London) firing at every period's opening time."""
    hour, minute = (int(x) for x in c.opens.time.split(":"))
    length = _LENGTH[c.frequency]
    if length == 1:
        months = "*"
    else:
        first = (_year_start_month(c) - 1 + length + c.opens.months_after_period_end) % 12
        months = ",".join(str((first + k * length) % 12 + 1) for k in range(12 // length))
        months = ",".join(sorted(months.split(","), key=int))
    return f"{minute} {hour} {c.opens.day} {months} *"

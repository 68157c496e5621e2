"""The collection calendar: every approved return's windows and due dates for the next months,
per council and per return, with the load per council as a heat map, the peak months and the
clashes (a council with more than N returns due in one week), and an iCalendar feed per council.

Windows come from each return's ``collection`` block through ``lgdp.periods``, the same arithmetic
the DAGs' timetables and the ledger use, so the calendar cannot disagree with them; a period the
ledger has already opened is shown with the dates and councils it was opened with.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lgdp.ledger.models import CollectionPeriod, ExpectedSubmission, Return
from lgdp.periods import LONDON, period_starting
from lgdp.specs.model import Collection, Frequency
from lgdp.ui.register import council_names, providers_of

_LENGTH = {Frequency.annual: 12, Frequency.quarterly: 3, Frequency.monthly: 1}
DEFAULT_CLASH_THRESHOLD = 2


@dataclass(frozen=True)
class Window:
    """One period's collection window of one return, and the councils that owe it."""

    return_id: str
    title: str
    period: str
    opens_at: dt.datetime
    due_at: dt.datetime
    closes_at: dt.datetime
    councils: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "return_id": self.return_id,
            "title": self.title,
            "period": self.period,
            "opens_at": self.opens_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "closes_at": self.closes_at.isoformat(),
            "councils": list(self.councils),
        }


def month_index(d: dt.date) -> int:
    return d.year * 12 + d.month - 1


def month_label(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_from(today: dt.date, months: int) -> list[str]:
    first = month_index(today)
    return [month_label(first + k) for k in range(months)]


def _collection(spec: dict[str, Any]) -> Collection | None:
    try:
        return Collection.model_validate(spec.get("collection") or {})
    except Exception:  # noqa: BLE001 - a register row the model no longer reads is left out
        return None


def windows(session: Session, today: dt.date, months: int = 12) -> list[Window]:
    """Windows of approved returns that are open, or open or fall due, from today's month on."""
    all_councils = list(council_names(session))
    start = dt.datetime.combine(dt.date(today.year, today.month, 1), dt.time(), tzinfo=LONDON)
    end_index = month_index(today) + months
    end = dt.datetime.combine(dt.date(end_index // 12, end_index % 12 + 1, 1), dt.time(), tzinfo=LONDON)
    out: list[Window] = []
    for r in session.scalars(select(Return).where(Return.status == "approved")):
        spec = r.spec or {}
        c = _collection(spec)
        if c is None:
            continue
        length = _LENGTH[c.frequency]
        offset = int(c.year_starts[:2]) - 1
        councils = tuple(providers_of(spec, all_councils))
        first = month_index(today) - 36
        first -= (first - offset) % length
        for s in range(first, end_index + 1, length):
            p = period_starting(c, s)
            if p.opens_at >= end:
                break
            if p.closes_at < start:
                continue
            out.append(Window(r.id, r.title, p.label, p.opens_at, p.due_at, p.closes_at, councils))
    # A period the ledger has opened is shown with the dates and councils it was opened with.
    opened = session.execute(
        select(CollectionPeriod.return_id, Return.title, CollectionPeriod.period, CollectionPeriod.opens_at,
               CollectionPeriod.due_at, CollectionPeriod.closes_at, ExpectedSubmission.council_code)
        .join(Return, Return.id == CollectionPeriod.return_id)
        .join(ExpectedSubmission, ExpectedSubmission.period_id == CollectionPeriod.id)
        .where(Return.status == "approved", CollectionPeriod.closes_at >= start, CollectionPeriod.opens_at < end)
    ).all()
    actual: dict[tuple[str, str], list[Any]] = {}
    for rid, title, period, opens_at, due_at, closes_at, code in opened:
        actual.setdefault((rid, period), [rid, title, period, opens_at, due_at, closes_at, []])[6].append(code)
    out = [w for w in out if (w.return_id, w.period) not in actual]
    out += [Window(rid, t, p, o, d, c, tuple(sorted(codes))) for rid, t, p, o, d, c, codes in actual.values()]
    out.sort(key=lambda w: (w.due_at, w.title))
    return out


def _months_open(w: Window) -> set[str]:
    first, last = month_index(w.opens_at.date()), month_index(w.closes_at.date())
    return {month_label(i) for i in range(first, last + 1)}


def calendar(
    session: Session, today: dt.date, months: int = 12, clash_threshold: int = DEFAULT_CLASH_THRESHOLD
) -> dict[str, Any]:
    """Months × councils and months × returns, peak months and clashes, for ``months`` from today."""
    labels = months_from(today, months)
    in_range = set(labels)
    names = council_names(session)
    ws = windows(session, today, months)
    due = {code: dict.fromkeys(labels, 0) for code in names}
    open_ = {code: dict.fromkeys(labels, 0) for code in names}
    by_return: dict[str, dict[str, Any]] = {}
    weeks: dict[tuple[str, str], list[Window]] = defaultdict(list)
    for w in ws:
        m_due = month_label(month_index(w.due_at.date()))
        row = by_return.setdefault(w.return_id, {"title": w.title, "months": {m: {"open": [], "due": []} for m in labels}})
        for m in _months_open(w) & in_range:
            row["months"][m]["open"].append(w.period)
        if m_due in in_range:
            row["months"][m_due]["due"].append({"period": w.period, "due_at": w.due_at.isoformat(), "day": w.due_at.day})
        for code in w.councils:
            if code not in due:
                continue
            for m in _months_open(w) & in_range:
                open_[code][m] += 1
            if m_due in in_range:
                due[code][m_due] += 1
                iso = w.due_at.isocalendar()
                weeks[(code, f"{iso.year}-W{iso.week:02d}")].append(w)
    totals = {m: sum(due[c][m] for c in due) for m in labels}
    top = max(totals.values(), default=0)
    peak = [m for m in labels if top and totals[m] == top]
    ranked = sorted((m for m in labels if totals[m]), key=lambda m: (-totals[m], m))[:3]
    clashes = []
    for (code, week), wins in sorted(weeks.items(), key=lambda kv: (kv[0][1], names.get(kv[0][0], ""))):
        if len(wins) > clash_threshold:
            monday = dt.date.fromisocalendar(int(week[:4]), int(week[6:]), 1)
            clashes.append(
                {
                    "council": code,
                    "name": names.get(code, code),
                    "week": week,
                    "week_starts": monday.isoformat(),
                    "returns": [{"return_id": w.return_id, "title": w.title, "period": w.period, "due_at": w.due_at.isoformat()} for w in wins],
                }
            )
    return {
        "today": today.isoformat(),
        "months": labels,
        "clash_threshold": clash_threshold,
        "councils": [{"code": c, "name": n, "due": due[c], "open": open_[c]} for c, n in names.items()],
        "returns": [{"return_id": rid, **row} for rid, row in sorted(by_return.items(), key=lambda kv: kv[1]["title"])],
        "month_totals": totals,
        "max_due": max((v for c in due.values() for v in c.values()), default=0),
        "peak_months": peak,
        "busiest_months": [{"month": m, "due": totals[m]} for m in ranked],
        "clashes": clashes,
        "windows": [w.as_json() for w in ws],
    }


def ics_feed(session: Session, council_code: str, today: dt.date, months: int = 12, base_url: str = "") -> bytes | None:
    """An iCalendar feed of one council's due dates (and window openings) for ``months`` ahead."""
    from icalendar import Calendar, Event

    names = council_names(session)
    if council_code not in names:
        return None
    cal = Calendar()
    cal.add("prodid", "-//Local Government Data Platform//returns calendar//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"Data returns due: {names[council_code]}")
    cal.add("x-wr-timezone", "Europe/London")
    stamp = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    for w in windows(session, today, months):
        if council_code not in w.councils:
            continue
        ev = Event()
        ev.add("uid", f"{w.return_id}-{w.period}-{council_code}-due@lgdp.example.org")
        ev.add("dtstamp", stamp)
        ev.add("summary", f"Due: {w.title} {w.period}")
        ev.add("dtstart", w.due_at.date())
        ev.add("dtend", w.due_at.date() + dt.timedelta(days=1))
        ev.add(
            "description",
            f"{w.title}, period {w.period}: the collection opens {w.opens_at:%d %B %Y}, is due "
            f"{w.due_at:%d %B %Y %H:%M} and closes {w.closes_at:%d %B %Y %H:%M} (Europe/London).",
        )
        if base_url:
            ev.add("url", f"{base_url.rstrip('/')}/councils/{council_code}")
        ev.add("categories", ["data return"])
        cal.add_component(ev)
    return cal.to_ical()

"""When each reminder of a period is due, and what a reminder task should do at a given moment.

Pure functions of the spec, the period and "now", so tests travel in time by passing ``now``.

- A reminder ``at: opening`` is due when the collection opens; ``days_from_due: N`` at the
  spec's opening time of day (Europe/London) on the due date plus N days (N < 0: before it).
- A reminder task that starts after its time (a late run, a backfill, a triggerer outage) still
  sends if the collection is open and no later reminder's time has also passed: the council gets
  one catch-up reminder with the current status, never a burst of stale ones. Once the collection
  has closed nothing is sent: there is nothing left a council can do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from lgdp.periods import LONDON, Period
from lgdp.specs.model import Collection, Reminder, ReturnSpec


@dataclass(frozen=True)
class Slot:
    kind: str
    send_at: dt.datetime
    escalate: bool
    days_from_due: int | None  # None for the opening notice


@dataclass(frozen=True)
class Decision:
    action: Literal["wait", "send", "skip"]
    reason: str


def send_time(collection: Collection, period: Period, reminder: Reminder) -> dt.datetime:
    if reminder.at == "opening":
        return period.opens_at
    hour, minute = (int(x) for x in collection.opens.time.split(":"))
    # Calendar days in local time, so a reminder across the clock change keeps its hour.
    day = period.due_at.astimezone(LONDON).date() + dt.timedelta(days=reminder.days_from_due or 0)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=LONDON)


def schedule(spec: ReturnSpec, period: Period) -> list[Slot]:
    """The period's reminders in time order."""
    slots = [Slot(r.kind, send_time(spec.collection, period, r), r.escalate, r.days_from_due) for r in spec.reminders]
    return sorted(slots, key=lambda s: s.send_at)


def slot_for(slots: list[Slot], kind: str) -> Slot:
    for s in slots:
        if s.kind == kind:
            return s
    raise KeyError(f"the spec has no reminder {kind!r} (it has {', '.join(s.kind for s in slots) or 'none'})")


def decide(slots: list[Slot], kind: str, period: Period, now: dt.datetime) -> Decision:
    slot = slot_for(slots, kind)
    if now < slot.send_at:
        return Decision("wait", f"{kind} is due at {slot.send_at.astimezone(LONDON):%Y-%m-%d %H:%M} Europe/London")
    if now > period.closes_at:
        return Decision("skip", f"the collection closed at {period.closes_at:%Y-%m-%d %H:%M}; no reminder is useful now")
    later = [s for s in slots if slot.send_at < s.send_at <= now]
    if later:
        return Decision("skip", f"superseded: the later reminder {later[-1].kind} is also due, and it sends instead")
    return Decision("send", f"{kind} is due (since {slot.send_at.astimezone(LONDON):%Y-%m-%d %H:%M} Europe/London)")


def days_phrase(days: int) -> str:
    """'today', 'tomorrow', 'in 7 days', 'yesterday', '3 days ago': how a person says it."""
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    if days == -1:
        return "yesterday"
    return f"in {days} days" if days > 0 else f"{-days} days ago"


def days_until_due(period: Period, now: dt.datetime) -> int:
    """Whole calendar days (Europe/London) from ``now`` to the due date; negative once overdue."""
    return (period.due_at.astimezone(LONDON).date() - now.astimezone(LONDON).date()).days

"""Per-return reminders: who gets which email for one reminder of one period, and sending them.

``plan_reminders`` is pure (spec, period, statuses, now -> emails); ``send_reminders`` reads the
ledger and sends each through :func:`lgdp.notify.send_email` under the key
``remind:<return>:<period>:<council>:<kind>``, so a retry, rerun or backfill never sends a council
the same reminder twice. Councils whose submission is accepted (or closed as not received) get
nothing; each email is about the one council it is addressed to.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from lgdp.notify.links import folder_url, guidance_url
from lgdp.notify.message import Email
from lgdp.notify.recipients import NoContact, addresses
from lgdp.notify.render import render
from lgdp.notify.schedule import Slot, days_phrase, days_until_due, decide, schedule, slot_for
from lgdp.notify.status import CouncilStatus
from lgdp.periods import LONDON, Period
from lgdp.specs.load import LoadedSpec, Reference, load_reference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedReminder:
    council_code: str
    dedupe_key: str
    email: Email


def dedupe_key(return_id: str, period: str, council_code: str, kind: str) -> str:
    return f"remind:{return_id}:{period}:{council_code}:{kind}"


def reminder_context(
    loaded: LoadedSpec, period: Period, slot: Slot, council_code: str, council_name: str, status: CouncilStatus,
    now: dt.datetime,
) -> dict[str, Any]:
    s = loaded.spec
    days = days_until_due(period, now)
    return {
        "return_id": s.id,
        "title": s.title,
        "requester": s.governance.requester,
        "owner": s.governance.owner,
        "contact_email": s.governance.contact_email,
        "formats": list(s.formats),
        "period": period.label,
        "due": period.due_in_words(),
        "due_phrase": days_phrase(days),
        "overdue": now > period.due_at,
        "closes": f"{period.closes_at:%A} {period.closes_at.day} {period.closes_at:%B %Y}",
        "kind": slot.kind,
        "opening": slot.days_from_due is None,
        "escalate": slot.escalate,
        "council_code": council_code,
        "council_name": council_name,
        "status": status.status.value,
        "version": status.version,
        "errors": status.errors,
        "queries": status.queries,
        "issues": [
            {"code": i.code, "severity": i.severity, "row": i.row, "item": i.item, "message": i.message}
            for i in status.issues
        ],
        "folder_url": folder_url(s.id, period.label, council_code),
        "guidance_url": guidance_url(s.id, period.label, council_code),
    }


def plan_reminder(
    loaded: LoadedSpec, period: Period, slot: Slot, council_code: str, council_name: str, status: CouncilStatus,
    now: dt.datetime, reference: Reference | None = None,
) -> PlannedReminder:
    """One council's reminder email; raises ``NoContact`` if the council has no address to use."""
    ctx = reminder_context(loaded, period, slot, council_code, council_name, status, now)
    r = render("reminder", ctx)
    cc = addresses(council_code, "senior", reference) if slot.escalate else []
    email = Email(to=addresses(council_code, "returns", reference), subject=r.subject, text=r.text, html=r.html, cc=cc)
    return PlannedReminder(council_code, dedupe_key(loaded.id, period.label, council_code, slot.kind), email)


def outstanding_councils(loaded: LoadedSpec, statuses: dict[str, CouncilStatus]) -> list[tuple[str, str, CouncilStatus]]:
    """Provider councils still owing something; accepted (or closed) ones get no reminder."""
    return [
        (c.code, c.name, statuses[c.code])
        for c in loaded.providers
        if c.code in statuses and statuses[c.code].outstanding
    ]


def plan_reminders(
    loaded: LoadedSpec, period: Period, kind: str, statuses: dict[str, CouncilStatus], now: dt.datetime,
    reference: Reference | None = None,
) -> list[PlannedReminder]:
    """One email per provider council whose submission is outstanding; none for the others."""
    slot = slot_for(schedule(loaded.spec, period), kind)
    return [
        plan_reminder(loaded, period, slot, code, name, status, now, reference)
        for code, name, status in outstanding_councils(loaded, statuses)
    ]


@dataclass(frozen=True)
class ReminderRun:
    action: str  # send | skip
    reason: str
    sent: list[str]
    already_sent: list[str]
    failed: list[str]
    not_outstanding: int

    def as_xcom(self) -> dict[str, object]:
        """Counts and council codes only: no addresses, no content."""
        return {
            "action": self.action, "reason": self.reason, "sent": self.sent, "already_sent": self.already_sent,
            "failed": self.failed, "not_outstanding": self.not_outstanding,
        }


class RemindersNotSent(RuntimeError):
    """Some councils' reminders failed to send; the rest were sent. A retry sends only the failed ones."""


def send_reminders(loaded: LoadedSpec, period: Period, kind: str, now: dt.datetime | None = None) -> ReminderRun:
    """Decide, read the ledger and send; raises ``RemindersNotSent`` after trying every council."""
    from lgdp.ledger.db import session
    from lgdp.notify.send import send_email
    from lgdp.notify.status import period_statuses

    now = now or dt.datetime.now(dt.timezone.utc)
    decision = decide(schedule(loaded.spec, period), kind, period, now)
    if decision.action != "send":
        log.info("Reminder %s for %s %s not sent: %s", kind, loaded.id, period.label, decision.reason)
        return ReminderRun(decision.action, decision.reason, [], [], [], 0)
    with session() as s:
        statuses = period_statuses(s, loaded.id, period.label)
    if not statuses:
        raise LookupError(f"{loaded.id} {period.label} has no collection period in the ledger: run open_collection first")
    slot = slot_for(schedule(loaded.spec, period), kind)
    councils = outstanding_councils(loaded, statuses)
    reference = load_reference()
    sent, already, failed = [], [], []
    for code, name, status in councils:
        try:
            p = plan_reminder(loaded, period, slot, code, name, status, now, reference)
            result = send_email(
                p.email, dedupe_key=p.dedupe_key, kind=f"remind_{kind}", return_id=loaded.id, period=period.label,
                council_code=code,
            )
        except Exception as exc:  # noqa: BLE001 - every council is tried; the task fails at the end
            log.warning("Reminder %s to %s failed (%s: %s); a retry will send it", kind, code, type(exc).__name__,
                        exc if isinstance(exc, NoContact) else "see the sent_emails ledger")
            failed.append(code)
            continue
        (sent if result.status == "sent" else already).append(code)
    run = ReminderRun("send", decision.reason, sent, already, failed, len(statuses) - len(councils))
    log.info(
        "Reminder %s for %s %s: %d sent, %d already sent, %d failed, %d councils need none (accepted or closed); due %s",
        kind, loaded.id, period.label, len(sent), len(already), len(failed), run.not_outstanding,
        period.due_at.astimezone(LONDON).date(),
    )
    if failed:
        raise RemindersNotSent(f"reminder {kind} could not be sent to {len(failed)} council(s): {', '.join(failed)}")
    return run

"""The weekly council digest: one email per council listing every return it owes in the next 30 days.

The seeds' complaint is chasers that arrive uncoordinated, a dozen a month. The digest gives each
council one view across the whole register: for every approved spec the council provides, each
period due within the window (and any period past its due date but still open and outstanding),
with its status for that council from the ledger ("not yet open" when the platform has not opened
the period). A council with nothing to list gets no email. Sent once per council per ISO week
(dedupe key ``digest:<council>:<YYYY-Www>``), so a retry or a manual rerun in the same week sends
nothing new.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from lgdp.notify.links import folder_url
from lgdp.notify.message import Email
from lgdp.notify.recipients import addresses
from lgdp.notify.render import render
from lgdp.notify.status import CouncilStatus
from lgdp.periods import LONDON, Period, period_opening_at
from lgdp.specs.load import LoadedSpec, Reference

log = logging.getLogger(__name__)
WINDOW_DAYS = 30


@dataclass(frozen=True)
class Entry:
    """One period of one return that falls in the digest (for every provider council)."""

    loaded: LoadedSpec
    period: Period
    overdue: bool


def periods_in_window(loaded: LoadedSpec, now: dt.datetime, days: int = WINDOW_DAYS) -> list[Entry]:
    """Periods due in ``[now, now + days]``, and periods past due whose collection is still open."""
    c = loaded.spec.collection
    end = now + dt.timedelta(days=days)
    out: list[Entry] = []
    # Nothing opening after the window's end can be due inside it: walk back from there.
    p = period_opening_at(c, end)
    for _ in range(400):
        if p.closes_at < now and p.due_at < now:
            break
        if now <= p.due_at <= end:
            out.append(Entry(loaded, p, False))
        elif p.due_at < now <= p.closes_at:
            out.append(Entry(loaded, p, True))
        p = period_opening_at(c, p.opens_at - dt.timedelta(seconds=1))
    return sorted(out, key=lambda e: e.period.due_at)


def week_key(now: dt.datetime) -> str:
    year, week, _ = now.astimezone(LONDON).date().isocalendar()
    return f"{year}-W{week:02d}"


def status_words(status: CouncilStatus | None) -> str:
    """The council's status in words (never a colour): what a person needs to know."""
    if status is None:
        return "not yet open"
    s = status.status.value
    if s == "expected":
        return "not yet received"
    if s in ("received", "processing"):
        return "received, being checked"
    if s == "rejected":
        return f"rejected: {status.errors} error{'s' if status.errors != 1 else ''} to correct"
    if s == "queries":
        return f"{status.queries} quer{'y' if status.queries == 1 else 'ies'} awaiting your explanation"
    if s == "accepted":
        return "accepted"
    return "not received (collection closed)"


@dataclass(frozen=True)
class PlannedDigest:
    council_code: str
    dedupe_key: str
    email: Email
    returns: list[str]  # "<return>:<period>" listed, for logs and tests (no content)


def plan_digest(
    council_code: str, council_name: str, entries: list[Entry],
    statuses: dict[tuple[str, str], dict[str, CouncilStatus]], now: dt.datetime, reference: Reference | None = None,
) -> PlannedDigest | None:
    mine = sorted(
        (e for e in entries if any(c.code == council_code for c in e.loaded.providers)),
        key=lambda e: (e.period.due_at, e.loaded.spec.title),
    )
    if not mine:
        return None
    rows = []
    for e in mine:
        st = statuses.get((e.loaded.id, e.period.label), {}).get(council_code)
        if e.overdue and st is not None and not st.outstanding:
            continue  # accepted (or closed) after its due date: nothing left to chase
        rows.append({
            "return_id": e.loaded.id,
            "title": e.loaded.spec.title,
            "period": e.period.label,
            "due": e.period.due_in_words(),
            "overdue": e.overdue,
            "status": status_words(st),
            "done": st is not None and st.status.value == "accepted",
            "folder_url": folder_url(e.loaded.id, e.period.label, council_code),
            "contact_email": e.loaded.spec.governance.contact_email,
        })
    if not rows:
        return None
    local = now.astimezone(LONDON)
    ctx = {
        "council_name": council_name,
        "week_of": f"{local:%A} {local.day} {local:%B %Y}",
        "days": WINDOW_DAYS,
        "due": [r for r in rows if not r["overdue"]],
        "overdue": [r for r in rows if r["overdue"]],
    }
    r = render("digest", ctx)
    email = Email(to=addresses(council_code, "returns", reference), subject=r.subject, text=r.text, html=r.html)
    return PlannedDigest(council_code, f"digest:{council_code}:{week_key(now)}", email,
                         [f"{x['return_id']}:{x['period']}" for x in rows])


class DigestsNotSent(RuntimeError):
    """Some councils' digests failed to send; a retry sends only those."""


def send_digests(now: dt.datetime | None = None, councils: list[str] | None = None) -> dict[str, object]:
    """Build and send every council's digest for the week of ``now``; counts only in the result."""
    from lgdp.ledger.db import session
    from lgdp.notify.send import send_email
    from lgdp.notify.status import period_statuses
    from lgdp.specs.load import load_register

    now = now or dt.datetime.now(dt.timezone.utc)
    register = load_register()
    if register.reference is None:
        raise RuntimeError("the shared reference data has problems: run 'lgdp specs lint'")
    for path in register.errors:
        log.warning("Spec %s has problems and is left out of the digest", path)
    entries = [e for loaded in register.approved() for e in periods_in_window(loaded, now)]
    with session() as s:
        statuses = {(e.loaded.id, e.period.label): period_statuses(s, e.loaded.id, e.period.label) for e in entries}
    sent, already, failed, nothing = [], [], [], 0
    for council in register.reference.councils:
        if councils is not None and council.code not in councils:
            continue
        try:
            planned = plan_digest(council.code, council.name, entries, statuses, now, register.reference)
            if planned is None:
                nothing += 1
                continue
            result = send_email(planned.email, dedupe_key=planned.dedupe_key, kind="digest", council_code=council.code)
        except Exception as exc:  # noqa: BLE001 - every council is tried; the task fails at the end
            log.warning("Digest to %s failed (%s); a retry will send it", council.code, type(exc).__name__)
            failed.append(council.code)
            continue
        (sent if result.status == "sent" else already).append(council.code)
    log.info(
        "Council digest %s: %d periods in the window; %d sent, %d already sent, %d failed, %d councils with nothing due",
        week_key(now), len(entries), len(sent), len(already), len(failed), nothing,
    )
    if failed:
        raise DigestsNotSent(f"the digest could not be sent to {len(failed)} council(s): {', '.join(failed)}")
    return {"week": week_key(now), "sent": sent, "already_sent": already, "failed": failed, "nothing_due": nothing}

"""The platform team's weekly email: returns due for review, proposals waiting, returns not collected.

The council digest's counterpart for governance (docs/governance.md). ``plan_platform_digest``
computes (no I/O): every return whose ``review_date`` has passed, every proposal (a proposed
return, or a proposed change to an approved one), and every approved return not collected in over
a year (no period opened in the last 365 days, or never). ``send_platform_digest`` reads the
register and the ledger and sends it once per week (deduplicated like every platform email).

Recipients: ``LGDP_PLATFORM_TEAM_EMAIL`` (comma-separated), else ``platform_team`` in
``return_specs/shared/platform.yaml``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any

import yaml

from lgdp.notify.message import Email
from lgdp.notify.render import render
from lgdp.specs.load import LoadedSpec, Register
from lgdp.specs.model import Status

log = logging.getLogger(__name__)
STALE_DAYS = 365


@dataclass(frozen=True)
class PlannedPlatformDigest:
    dedupe_key: str
    email: Email
    review_due: list[str]
    proposals: list[str]
    not_collected: list[str]


def team_addresses(shared_dir: Any | None = None) -> list[str]:
    env = os.environ.get("LGDP_PLATFORM_TEAM_EMAIL")
    if env:
        return [a.strip() for a in env.split(",") if a.strip()]
    from lgdp.specs.paths import shared_dir as default_shared

    path = (shared_dir or default_shared()) / "platform.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    team = (data or {}).get("platform_team") or []
    return [team] if isinstance(team, str) else list(team)


def proposals(register: Register) -> list[tuple[LoadedSpec, str]]:
    """(return, what is proposed) for every proposed return and proposed change."""
    out = []
    for s in register.specs:
        if s.spec.governance.status == Status.proposed:
            out.append((s, "a new return"))
        for c in s.spec.changes:
            if c.status == "proposed":
                out.append((s, f"a change from {c.from_period} (version {c.version}): {c.summary.strip()}"))
    return out


def plan_platform_digest(
    register: Register, last_opened: dict[str, dt.date], today: dt.date, to: list[str]
) -> PlannedPlatformDigest | None:
    due = [s for s in register.specs if s.spec.governance.status != Status.retired and s.spec.governance.review_date < today]
    waiting = proposals(register)
    stale = [
        s for s in register.approved()
        if last_opened.get(s.id) is None or (today - last_opened[s.id]).days > STALE_DAYS
    ]
    if not (due or waiting or stale):
        return None
    year, week, _ = today.isocalendar()
    ctx = {
        "week_of": f"{today:%A} {today.day} {today:%B %Y}",
        "review_due": [{"id": s.id, "title": s.spec.title, "review_date": s.spec.governance.review_date.isoformat(),
                        "owner": s.spec.governance.owner} for s in due],
        "proposals": [{"id": s.id, "title": s.spec.title, "what": what, "path": s.path} for s, what in waiting],
        "not_collected": [{"id": s.id, "title": s.spec.title,
                           "last": last_opened[s.id].isoformat() if last_opened.get(s.id) else "never"} for s in stale],
        "errors": sorted(register.errors),
    }
    r = render("platform_digest", ctx)
    email = Email(to=to, subject=r.subject, text=r.text, html=r.html)
    return PlannedPlatformDigest(f"platform-digest:{year}-W{week:02d}", email, [s.id for s in due],
                                 [s.id for s, _ in waiting], [s.id for s in stale])


def last_opened(session: Any) -> dict[str, dt.date]:
    """Return id -> the date its latest period opened (collection windows opened in the ledger)."""
    from sqlalchemy import text

    rows = session.execute(text("SELECT return_id, max(opens_at)::date FROM lgdp.collection_periods GROUP BY 1")).all()
    return {str(r): d for r, d in rows if d is not None}


def send_platform_digest(now: dt.datetime | None = None) -> dict[str, object]:
    from lgdp.ledger.db import session
    from lgdp.notify.send import send_email
    from lgdp.specs.load import load_register

    now = now or dt.datetime.now(dt.timezone.utc)
    register = load_register()
    to = team_addresses()
    if not to:
        raise RuntimeError("no platform team address: set LGDP_PLATFORM_TEAM_EMAIL or platform_team in "
                           "return_specs/shared/platform.yaml")
    with session() as s:
        opened = last_opened(s)
    planned = plan_platform_digest(register, opened, now.date(), to)
    if planned is None:
        log.info("Platform digest: nothing due for review, no proposals, every return collected this year")
        return {"sent": False}
    result = send_email(planned.email, dedupe_key=planned.dedupe_key, kind="platform_digest")
    log.info("Platform digest %s: %d due for review, %d proposals, %d not collected in a year (%s)",
             planned.dedupe_key, len(planned.review_due), len(planned.proposals), len(planned.not_collected), result.status)
    return {"sent": result.status == "sent", "review_due": planned.review_due, "proposals": planned.proposals,
            "not_collected": planned.not_collected}


__all__ = ["plan_platform_digest", "proposals", "send_platform_digest", "team_addresses"]

"""One council's page: every return it owes (open periods first), statuses, latest issues, the
emails sent to it and its due dates for the coming months."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lgdp.ledger.models import CollectionPeriod, ExpectedSubmission, Return, SubmissionIssue, SubmissionVersion
from lgdp.ui.calendar import windows
from lgdp.ui.progress import DONE, emails
from lgdp.ui.register import council_names


def council_list(session: Session) -> list[dict[str, str]]:
    return [{"code": c, "name": n} for c, n in council_names(session).items()]


def council(session: Session, code: str, now: dt.datetime | None = None, issue_limit: int = 30) -> dict[str, Any] | None:
    now = now or dt.datetime.now(dt.timezone.utc)
    names = council_names(session)
    if code not in names:
        return None
    latest_version = (
        select(SubmissionVersion.submission_id, func.max(SubmissionVersion.version).label("version"))
        .group_by(SubmissionVersion.submission_id)
        .subquery()
    )
    rows = session.execute(
        select(
            ExpectedSubmission.id,
            CollectionPeriod.return_id,
            Return.title,
            CollectionPeriod.period,
            CollectionPeriod.opens_at,
            CollectionPeriod.due_at,
            CollectionPeriod.closes_at,
            ExpectedSubmission.status,
            latest_version.c.version,
        )
        .join(CollectionPeriod, ExpectedSubmission.period_id == CollectionPeriod.id)
        .join(Return, Return.id == CollectionPeriod.return_id)
        .outerjoin(latest_version, latest_version.c.submission_id == ExpectedSubmission.id)
        .where(ExpectedSubmission.council_code == code)
        .order_by(CollectionPeriod.due_at.desc())
    ).all()
    subs = []
    for sid, rid, title, period, opens_at, due_at, closes_at, status, version in rows:
        subs.append(
            {
                "submission_id": sid,
                "return_id": rid,
                "title": title,
                "period": period,
                "opens_at": opens_at.isoformat(),
                "due_at": due_at.isoformat(),
                "closes_at": closes_at.isoformat(),
                "open": closes_at >= now,
                "status": status.value,
                "overdue": due_at < now and status.value not in DONE and closes_at >= now,
                "latest_version": version,
            }
        )
    subs.sort(key=lambda s: (not s["open"], s["due_at"] if s["open"] else "", s["title"]))
    latest_ids = session.execute(
        select(SubmissionVersion.id, CollectionPeriod.return_id, CollectionPeriod.period, SubmissionVersion.version)
        .join(ExpectedSubmission, SubmissionVersion.submission_id == ExpectedSubmission.id)
        .join(CollectionPeriod, ExpectedSubmission.period_id == CollectionPeriod.id)
        .join(
            latest_version,
            (latest_version.c.submission_id == SubmissionVersion.submission_id)
            & (latest_version.c.version == SubmissionVersion.version),
        )
        .where(ExpectedSubmission.council_code == code)
    ).all()
    where = {vid: (rid, period, v) for vid, rid, period, v in latest_ids}
    issues = []
    if where:
        for i in session.scalars(
            select(SubmissionIssue)
            .where(SubmissionIssue.version_id.in_(list(where)))
            .order_by(SubmissionIssue.created_at.desc(), SubmissionIssue.severity, SubmissionIssue.id)
            .limit(issue_limit)
        ):
            rid, period, v = where[i.version_id]
            issues.append(
                {
                    "return_id": rid,
                    "period": period,
                    "version": v,
                    "code": i.code,
                    "severity": i.severity,
                    "message": i.message,
                    "row": i.row_number,
                    "item": i.item,
                }
            )
    due = [
        {"return_id": w.return_id, "title": w.title, "period": w.period, "opens_at": w.opens_at.isoformat(), "due_at": w.due_at.isoformat()}
        for w in windows(session, now.date(), 12)
        if code in w.councils and w.due_at >= now
    ]
    counts: dict[str, int] = {}
    for s in subs:
        if s["open"]:
            counts[s["status"]] = counts.get(s["status"], 0) + 1
    return {
        "code": code,
        "name": names[code],
        "submissions": subs,
        "open_counts": counts,
        "overdue": sum(s["overdue"] for s in subs),
        "latest_issues": issues,
        "emails": emails(session, code),
        "upcoming": due,
    }

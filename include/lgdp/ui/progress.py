"""Progress across returns: every open period's councils by ledger status, and one submission's
versions, issues, explanations, feedback workbooks and emails.

An open period is one the ledger has opened whose collection has not closed yet. Overdue means
past the due date and not accepted. One query reads the whole matrix, so 170 returns × 32
councils stay well under a second (``bench/progress_page.py``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session

from lgdp.ledger.models import (
    CollectionPeriod,
    ExpectedSubmission,
    ExplanationFile,
    Return,
    SentEmail,
    SubmissionIssue,
    SubmissionStatus,
    SubmissionVersion,
)
from lgdp.ui.register import council_names

STATUSES = [s.value for s in SubmissionStatus]
DONE = {"accepted"}
ISSUE_LIMIT = 200


@dataclass
class ProgressRow:
    return_id: str
    title: str
    period: str
    due_at: dt.datetime
    closes_at: dt.datetime
    overdue: bool
    cells: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "return_id": self.return_id,
            "title": self.title,
            "period": self.period,
            "due_at": self.due_at.isoformat(),
            "closes_at": self.closes_at.isoformat(),
            "past_due": self.overdue,
            "statuses": self.cells,
            "counts": self.counts,
        }


@dataclass
class Progress:
    now: dt.datetime
    rows: list[ProgressRow]
    councils: list[tuple[str, str]]
    totals: dict[str, int]
    by_council: dict[str, dict[str, int]]
    overdue_by_council: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "statuses": STATUSES,
            "councils": [{"code": c, "name": n} for c, n in self.councils],
            "periods": [r.as_json() for r in self.rows],
            "totals": self.totals,
            "by_council": self.by_council,
            "overdue_by_council": self.overdue_by_council,
        }


def progress(session: Session, now: dt.datetime | None = None, return_id: str | None = None) -> Progress:
    """The matrix of open periods (rows) × councils (columns), coloured by status."""
    now = now or dt.datetime.now(dt.timezone.utc)
    q = (
        select(
            CollectionPeriod.return_id,
            Return.title,
            CollectionPeriod.period,
            CollectionPeriod.due_at,
            CollectionPeriod.closes_at,
            ExpectedSubmission.council_code,
            cast(ExpectedSubmission.status, Text),  # the enum's value as text: no conversion per cell
        )
        .join(Return, Return.id == CollectionPeriod.return_id)
        .join(ExpectedSubmission, ExpectedSubmission.period_id == CollectionPeriod.id)
        .where(CollectionPeriod.closes_at >= now)
    )
    if return_id:
        q = q.where(CollectionPeriod.return_id == return_id)
    rows: dict[tuple[str, str], ProgressRow] = {}
    seen: set[str] = set()
    by_council: dict[str, Counter] = {}
    overdue: Counter = Counter()
    for rid, title, period, due_at, closes_at, code, value in session.execute(q):
        key = (rid, period)
        row = rows.get(key)
        if row is None:
            row = rows[key] = ProgressRow(rid, title, period, due_at, closes_at, due_at < now)
        row.cells[code] = value
        seen.add(code)
        by_council.setdefault(code, Counter())[value] += 1
        if row.overdue and value not in DONE:
            overdue[code] += 1
    names = council_names(session)
    councils = [(c, n) for c, n in names.items() if c in seen]
    totals: Counter = Counter()
    ordered = sorted(rows.values(), key=lambda r: (r.title.lower(), r.period))
    for row in ordered:
        row.counts = dict(Counter(row.cells.values()))
        totals.update(row.counts)
    return Progress(
        now=now,
        rows=ordered,
        councils=councils,
        totals={s: totals.get(s, 0) for s in STATUSES},
        by_council={c: dict(v) for c, v in by_council.items()},
        overdue_by_council=dict(overdue),
    )


def _feedback_url(return_id: str, period: str, council: str, version: int) -> str:
    from lgdp.collect.feedback import feedback_name
    from lgdp.notify.links import guidance_url

    return f"{guidance_url(return_id, period, council)}/{feedback_name(version)}"


def submission(
    session: Session, return_id: str, period: str, council: str, now: dt.datetime | None = None
) -> dict[str, Any] | None:
    """One council's submission for one period: status, versions, latest issues, explanations, emails."""
    from lgdp.notify.links import folder_url

    now = now or dt.datetime.now(dt.timezone.utc)
    found = session.execute(
        select(ExpectedSubmission, CollectionPeriod, Return.title)
        .join(CollectionPeriod, ExpectedSubmission.period_id == CollectionPeriod.id)
        .join(Return, Return.id == CollectionPeriod.return_id)
        .where(
            CollectionPeriod.return_id == return_id,
            CollectionPeriod.period == period,
            ExpectedSubmission.council_code == council,
        )
    ).first()
    if found is None:
        return None
    sub, cp, title = found
    names = council_names(session)
    versions = session.scalars(
        select(SubmissionVersion).where(SubmissionVersion.submission_id == sub.id).order_by(SubmissionVersion.version.desc())
    ).all()
    counts = dict(
        session.execute(
            select(SubmissionIssue.version_id, func.count())
            .where(SubmissionIssue.version_id.in_([v.id for v in versions]))
            .group_by(SubmissionIssue.version_id)
        ).all()
    ) if versions else {}
    latest = versions[0] if versions else None
    issues: list[dict[str, Any]] = []
    severities: Counter = Counter()
    rules: Counter = Counter()
    if latest is not None:
        for i in session.scalars(
            select(SubmissionIssue)
            .where(SubmissionIssue.version_id == latest.id)
            .order_by(SubmissionIssue.severity, SubmissionIssue.row_number.nulls_first(), SubmissionIssue.id)
        ):
            severities[i.severity] += 1
            rules[(i.code, i.severity, i.message)] += 1
            if len(issues) < ISSUE_LIMIT:
                issues.append(
                    {
                        "code": i.code,
                        "severity": i.severity,
                        "message": i.message,
                        "row": i.row_number,
                        "item": i.item,
                        "value": i.value,
                        "explanation": i.explanation,
                    }
                )
    explanations = session.scalars(
        select(ExplanationFile).where(ExplanationFile.submission_id == sub.id).order_by(ExplanationFile.received_at.desc())
    ).all()
    status = sub.status.value
    return {
        "return_id": return_id,
        "title": title,
        "period": period,
        "council": council,
        "council_name": names.get(council, council),
        "status": status,
        "status_changed_at": sub.status_changed_at.isoformat(),
        "due_at": cp.due_at.isoformat(),
        "closes_at": cp.closes_at.isoformat(),
        "overdue": cp.due_at < now and status not in DONE,
        "folder_url": folder_url(return_id, period, council),
        "dag_id": f"return_{return_id}",
        "versions": [
            {
                "version": v.version,
                "filename": v.filename,
                "uploaded_by": v.uploaded_by,
                "received_at": v.received_at.isoformat(),
                "status": v.status.value,
                "rows_loaded": v.rows_loaded,
                "issues": counts.get(v.id, 0),
                "feedback_url": _feedback_url(return_id, period, council, v.version),
            }
            for v in versions
        ],
        "latest_version": latest.version if latest else None,
        "issue_counts": {"error": severities.get("error", 0), "query": severities.get("query", 0)},
        "issues_by_rule": [
            {"code": c, "severity": s, "message": m, "count": n} for (c, s, m), n in sorted(rules.items(), key=lambda kv: -kv[1])
        ],
        "issues": issues,
        "issues_shown": len(issues),
        "explanation_files": [
            {
                "filename": e.filename,
                "received_at": e.received_at.isoformat(),
                "status": e.status,
                "explained": e.explained,
                "message": e.message,
            }
            for e in explanations
        ],
        "emails": emails(session, council, return_id=return_id, period=period),
    }


def emails(session: Session, council: str, return_id: str | None = None, period: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Emails the platform sent to a council (newest first): kind, subject, status, when. No bodies."""
    q = select(SentEmail).where(SentEmail.council_code == council)
    if return_id:
        q = q.where(SentEmail.return_id == return_id)
    if period:
        q = q.where(SentEmail.period == period)
    return [
        {
            "kind": e.kind,
            "return_id": e.return_id,
            "period": e.period,
            "subject": e.subject,
            "recipients": list(e.recipients or []),
            "status": e.status,
            "created_at": e.created_at.isoformat(),
            "sent_at": e.sent_at.isoformat() if e.sent_at else None,
        }
        for e in session.scalars(q.order_by(SentEmail.created_at.desc(), SentEmail.id.desc()).limit(limit))
    ]

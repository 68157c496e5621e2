"""Each council's status on one period, read from the ledger, for reminders and digests.

Only what a council needs to act on its own submission: its status, the latest version's counts
of errors and unexplained queries, and the first few of them (code, row, item, message: never the
submitted value). Nothing about other councils.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from lgdp.ledger.models import (
    CollectionPeriod,
    ExpectedSubmission,
    SubmissionIssue,
    SubmissionStatus,
    SubmissionVersion,
)

TOP_ISSUES = 5
# Statuses that still need something from the council (accepted and not_received do not).
OUTSTANDING = (
    SubmissionStatus.expected,
    SubmissionStatus.received,
    SubmissionStatus.processing,
    SubmissionStatus.rejected,
    SubmissionStatus.queries,
)


@dataclass(frozen=True)
class Issue:
    code: str
    severity: str
    row: int | None
    item: str | None
    message: str


@dataclass(frozen=True)
class CouncilStatus:
    council_code: str
    status: SubmissionStatus
    version: int | None = None
    received_at: dt.datetime | None = None
    errors: int = 0
    queries: int = 0  # unexplained queries
    issues: tuple[Issue, ...] = field(default_factory=tuple)

    @property
    def outstanding(self) -> bool:
        return self.status in OUTSTANDING


def period_statuses(session: Session, return_id: str, period: str, councils: list[str] | None = None) -> dict[str, CouncilStatus]:
    """Council code -> status for one period ({} when the period was never opened)."""
    q = (
        select(ExpectedSubmission.id, ExpectedSubmission.council_code, ExpectedSubmission.status)
        .join(CollectionPeriod)
        .where(CollectionPeriod.return_id == return_id, CollectionPeriod.period == period)
    )
    if councils is not None:
        q = q.where(ExpectedSubmission.council_code.in_(councils))
    subs = session.execute(q).all()
    if not subs:
        return {}
    latest = (
        select(SubmissionVersion.submission_id, func.max(SubmissionVersion.version).label("version"))
        .where(SubmissionVersion.submission_id.in_([s.id for s in subs]))
        .group_by(SubmissionVersion.submission_id)
        .subquery()
    )
    versions = {
        r.submission_id: r
        for r in session.execute(
            select(SubmissionVersion.id, SubmissionVersion.submission_id, SubmissionVersion.version, SubmissionVersion.received_at)
            .join(latest, (latest.c.submission_id == SubmissionVersion.submission_id) & (latest.c.version == SubmissionVersion.version))
        )
    }
    out: dict[str, CouncilStatus] = {}
    for sub in subs:
        v = versions.get(sub.id)
        if v is None or sub.status not in (SubmissionStatus.rejected, SubmissionStatus.queries):
            out[sub.council_code] = CouncilStatus(sub.council_code, sub.status, v.version if v else None, v.received_at if v else None)
            continue
        open_issue = (SubmissionIssue.version_id == v.id) & (
            (SubmissionIssue.severity == "error") | SubmissionIssue.explanation.is_(None)
        )
        errors, queries = session.execute(
            select(
                func.count().filter(SubmissionIssue.severity == "error"),
                func.count().filter(SubmissionIssue.severity == "query"),
            ).where(open_issue)
        ).one()
        wanted = "error" if errors else "query"
        top = session.execute(
            select(SubmissionIssue.code, SubmissionIssue.severity, SubmissionIssue.row_number, SubmissionIssue.item, SubmissionIssue.message)
            .where(open_issue, SubmissionIssue.severity == wanted)
            .order_by(case((SubmissionIssue.row_number.is_(None), 0), else_=1), SubmissionIssue.row_number, SubmissionIssue.id)
            .limit(TOP_ISSUES)
        ).all()
        out[sub.council_code] = CouncilStatus(
            sub.council_code, sub.status, v.version, v.received_at, errors, queries,
            tuple(Issue(r.code, r.severity, r.row_number, r.item, r.message) for r in top),
        )
    return out

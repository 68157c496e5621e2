"""Explanations of queries: a query must be fixed or explained before a return is accepted.

A council explains a query in the explanation column of its feedback workbook and uploads the
workbook back. Explanations are matched to issues by what the council can see in the workbook
(rule code, row, item), never by internal ids, so sorting or filtering the sheet changes
nothing. When a council resubmits (to fix errors, say), a query it already explained for the
same cell and value keeps its explanation: nobody should explain the same thing twice.

Runs in the caller's transaction. Logs carry ids and counts only.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Mapping

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from lgdp.ledger.models import SubmissionIssue

log = logging.getLogger(__name__)

IssueKey = tuple[str, "int | None", "str | None"]  # (rule code, row, item) as the workbook shows them
MAX_EXPLANATION_CHARS = 2000


def apply_explanations(session: Session, version_id: int, explanations: Mapping[IssueKey, str]) -> int:
    """Record explanations on the version's queries; returns how many queries gained or changed one.

    Errors cannot be explained away (they must be fixed in a corrected file), so explanations
    given for them are ignored. An empty explanation leaves an earlier one in place.
    """
    if not explanations:
        return 0
    issues = session.execute(
        select(SubmissionIssue).where(SubmissionIssue.version_id == version_id, SubmissionIssue.severity == "query")
    ).scalars()
    now = dt.datetime.now(dt.timezone.utc)
    changed = 0
    for issue in issues:
        given = explanations.get((issue.code, issue.row_number, issue.item))
        if given is None:
            continue
        given = given.strip()[:MAX_EXPLANATION_CHARS]
        if given and given != issue.explanation:
            issue.explanation = given
            issue.explained_at = now
            changed += 1
    session.flush()
    log.info("version %s: %d query explanation(s) recorded", version_id, changed)
    return changed


def carry_explanations(session: Session, version_id: int) -> int:
    """Copy explanations from the submission's earlier versions to the same queries in this one.

    "The same" means the same rule code, row, item and value: if the council changed the value,
    the old explanation no longer speaks for it.
    """
    result = session.execute(
        text(
            """
            UPDATE lgdp.submission_issues AS cur
               SET explanation = prev.explanation, explained_at = prev.explained_at
              FROM lgdp.submission_versions AS v,
                   lgdp.submission_versions AS pv,
                   lgdp.submission_issues AS prev
             WHERE cur.version_id = :vid AND cur.severity = 'query' AND cur.explanation IS NULL
               AND v.id = cur.version_id
               AND pv.submission_id = v.submission_id AND pv.version < v.version
               AND prev.version_id = pv.id AND prev.severity = 'query' AND prev.explanation IS NOT NULL
               AND prev.code = cur.code
               AND prev.row_number IS NOT DISTINCT FROM cur.row_number
               AND prev.item IS NOT DISTINCT FROM cur.item
               AND prev.value IS NOT DISTINCT FROM cur.value
            """
        ),
        {"vid": version_id},
    )
    carried = result.rowcount or 0
    if carried:
        log.info("version %s: %d explanation(s) carried over from earlier versions", version_id, carried)
    return carried


def unexplained_queries(session: Session, version_id: int) -> int:
    return session.execute(
        select(func.count())
        .select_from(SubmissionIssue)
        .where(
            SubmissionIssue.version_id == version_id,
            SubmissionIssue.severity == "query",
            SubmissionIssue.explanation.is_(None),
        )
    ).scalar_one()



def issues_of_versions(session: Session, version_ids: Mapping[str, int]) -> list[tuple]:
    """Every issue recorded on the given versions (council code -> version id), with its
    explanation: ``(council, table, row, item, code, severity, message, explanation)`` in council,
    row and recording order (``table`` is the table of a multi-table return, else None). For deliveries: a requester receives each council's issues and
    explanations with its data (``lgdp.distribute.build.issues_table`` decides which)."""
    if not version_ids:
        return []
    council_of = {int(v): c for c, v in version_ids.items()}
    found = session.execute(
        select(
            SubmissionIssue.version_id, SubmissionIssue.table_name, SubmissionIssue.row_number, SubmissionIssue.item,
            SubmissionIssue.code,
            SubmissionIssue.severity, SubmissionIssue.message, SubmissionIssue.explanation,
        )
        .where(SubmissionIssue.version_id.in_(list(council_of)))
        .order_by(SubmissionIssue.version_id, SubmissionIssue.row_number.asc().nulls_first(), SubmissionIssue.id)
    ).all()
    rows = [(council_of[r[0]], *r[1:]) for r in found]
    rows.sort(key=lambda r: r[0])  # stable: row order kept within a council
    return rows

"""Submission versions: every file a council sent for a period, its issues and its outcome.

Each file that arrives in a council's folder becomes one *version* of that council's expected
submission, numbered 1, 2, 3... per submission. A version is identified by where it came from
(the source item id and its etag): recording the same item and etag again (an Airflow retry, a
rerun, a second poll) returns the existing version and changes nothing. A new version supersedes
the earlier ones that were not accepted. Nothing is ever deleted: every version, its issues and
its outcome stay in the ledger.

Concurrency: functions that number versions or move a submission's status first lock the
expected submission's row (``SELECT ... FOR UPDATE``), so two workers handling files of the same
council and period are serialised, and a retry running beside a zombie task cannot number twice.

Everything runs in the caller's transaction (nothing commits here). Logs carry ids and counts
only: never file names, uploaders or values (personal data).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Iterable

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from lgdp.ingest._conn import raw_connection
from lgdp.issues import Issue
from lgdp.ledger.models import (
    CollectionPeriod,
    ExpectedSubmission,
    SubmissionIssue,
    SubmissionStatus,
    SubmissionVersion,
    VersionStatus,
)

log = logging.getLogger(__name__)

SEVERITIES = ("error", "query")
# A version still awaiting its outcome when a newer file arrives is superseded by it. A decided
# version keeps its outcome (rejected stays rejected), so the ledger shows every version's fate.
_SUPERSEDABLE = (VersionStatus.received, VersionStatus.loaded)


class UnknownSubmission(LookupError):
    """No expected submission (or version) matches: the period was not opened for that council."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def expected_submission(session: Session, return_id: str, period: str, council_code: str) -> ExpectedSubmission:
    """The expected submission of ``council_code`` for ``period`` of ``return_id``.

    Raises ``UnknownSubmission`` if the period is not open or the council is not a provider.
    """
    found = session.execute(
        select(ExpectedSubmission)
        .join(CollectionPeriod)
        .where(
            CollectionPeriod.return_id == return_id,
            CollectionPeriod.period == period,
            ExpectedSubmission.council_code == council_code,
        )
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if found is None:
        raise UnknownSubmission(
            f"no expected submission for return {return_id!r}, period {period!r}, council {council_code}: "
            "has the period been opened (open_collection) and is the council a provider?"
        )
    return found


def _lock_submission(session: Session, submission_id: int) -> ExpectedSubmission:
    sub = session.execute(
        select(ExpectedSubmission)
        .where(ExpectedSubmission.id == submission_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if sub is None:
        raise UnknownSubmission(f"no expected submission with id {submission_id}")
    return sub


def _set_submission_status(sub: ExpectedSubmission, status: SubmissionStatus, now: dt.datetime) -> None:
    """Move a (locked) submission to ``status``; timestamps change only when the status does."""
    if sub.status != status:
        sub.status = status
        sub.status_changed_at = now
        if status == SubmissionStatus.accepted:
            sub.accepted_at = now


def record_version(
    session: Session,
    submission_id: int,
    *,
    sha256: str,
    filename: str,
    source_path: str,
    source_item_id: str,
    source_etag: str,
    uploaded_by: str | None,
    uploaded_at: dt.datetime | None,
) -> tuple[int, bool]:
    """Record a file (already archived under ``sha256``) as a version of a submission.

    Returns ``(version_id, created)``. The same ``(submission, source_item_id, source_etag)``
    returns the existing version with ``created`` False and writes nothing. A new version gets
    ``version = max + 1``, supersedes the submission's earlier versions that were not accepted,
    and moves the submission to ``received`` (``first_received_at`` is set on the first file).
    """
    sub = _lock_submission(session, submission_id)
    existing = session.execute(
        select(SubmissionVersion.id).where(
            SubmissionVersion.submission_id == submission_id,
            SubmissionVersion.source_item_id == source_item_id,
            SubmissionVersion.source_etag == source_etag,
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing, False
    now = _now()
    number = session.execute(
        select(func.coalesce(func.max(SubmissionVersion.version), 0) + 1).where(
            SubmissionVersion.submission_id == submission_id
        )
    ).scalar_one()
    version_id = session.execute(
        insert(SubmissionVersion)
        .values(
            submission_id=submission_id,
            version=number,
            file_sha256=sha256,
            filename=filename,
            source_path=source_path,
            source_item_id=source_item_id,
            source_etag=source_etag,
            uploaded_by=uploaded_by,
            uploaded_at=uploaded_at,
            received_at=now,
            status=VersionStatus.received,
        )
        .on_conflict_do_nothing(index_elements=["submission_id", "source_item_id", "source_etag"])
        .returning(SubmissionVersion.id)
    ).scalar_one_or_none()
    if version_id is None:  # unreachable while the row lock is held; kept for safety
        return (
            session.execute(
                select(SubmissionVersion.id).where(
                    SubmissionVersion.submission_id == submission_id,
                    SubmissionVersion.source_item_id == source_item_id,
                    SubmissionVersion.source_etag == source_etag,
                )
            ).scalar_one(),
            False,
        )
    session.execute(
        update(SubmissionVersion)
        .where(
            SubmissionVersion.submission_id == submission_id,
            SubmissionVersion.id != version_id,
            SubmissionVersion.status.in_(_SUPERSEDABLE),
        )
        .values(status=VersionStatus.superseded)
        .execution_options(synchronize_session=False)
    )
    _set_submission_status(sub, SubmissionStatus.received, now)
    if sub.first_received_at is None:
        sub.first_received_at = now
    session.flush()
    log.info("submission %s: recorded version %s (id %s, file %s…)", submission_id, number, version_id, sha256[:12])
    return version_id, True


def record_issues(session: Session, version_id: int, issues: Iterable[Issue]) -> int:
    """Replace the issues of a version with ``issues`` (idempotent); returns how many were written.

    Written with COPY, so a file with an error on every one of a million rows costs seconds.
    """
    issues = list(issues)
    for issue in issues:
        if issue.severity not in SEVERITIES:
            raise ValueError(f"issue {issue.code}: severity must be 'error' or 'query', not {issue.severity!r}")
    if session.get(SubmissionVersion, version_id) is None:
        raise UnknownSubmission(f"no submission version with id {version_id}")
    session.execute(delete(SubmissionIssue).where(SubmissionIssue.version_id == version_id))
    if issues:
        now = _now()
        raw = raw_connection(session)
        with raw.cursor() as cur, cur.copy(
            "COPY lgdp.submission_issues (version_id, code, severity, message, row_number, item, value, created_at,"
            " table_name) FROM STDIN"
        ) as copy:
            for i in issues:
                copy.write_row((version_id, i.code, i.severity, i.message, i.row, i.item, i.value, now, i.table))
    log.info("version %s: %d issues recorded", version_id, len(issues))
    return len(issues)


def issues_for(session: Session, version_id: int) -> list[Issue]:
    """The issues of a version, file-level ones (no row) first, then by row and as recorded."""
    rows = session.execute(
        select(
            SubmissionIssue.code,
            SubmissionIssue.severity,
            SubmissionIssue.message,
            SubmissionIssue.row_number,
            SubmissionIssue.item,
            SubmissionIssue.value,
            SubmissionIssue.table_name,
        )
        .where(SubmissionIssue.version_id == version_id)
        .order_by(SubmissionIssue.row_number.asc().nulls_first(), SubmissionIssue.id)
    ).all()
    return [Issue(code, severity, message, row, item, value, table) for code, severity, message, row, item, value, table in rows]


def _submission_status_for(session: Session, version_id: int, status: VersionStatus) -> SubmissionStatus:
    if status == VersionStatus.received:
        return SubmissionStatus.received
    if status == VersionStatus.accepted:
        return SubmissionStatus.accepted
    if status == VersionStatus.rejected:
        return SubmissionStatus.rejected
    if status == VersionStatus.queries:
        return SubmissionStatus.queries
    # loaded: the outcome so far is what its issues say
    severities = set(
        session.execute(
            select(SubmissionIssue.severity).where(SubmissionIssue.version_id == version_id).distinct()
        ).scalars()
    )
    if "error" in severities:
        return SubmissionStatus.rejected
    if "query" in severities:
        return SubmissionStatus.queries
    return SubmissionStatus.processing


def set_version_outcome(
    session: Session, version_id: int, status: VersionStatus | str, rows_loaded: int | None = None
) -> SubmissionStatus:
    """Record what became of a version and move its submission's status accordingly.

    The version's status becomes ``status`` (``processed_at`` is set for ``loaded``, ``rejected``
    and ``accepted``; ``rows_loaded`` when given). If it is its submission's latest version, the
    submission's status follows:

    ======================  ====================================================================
    version status          submission status
    ======================  ====================================================================
    ``received``            ``received``
    ``loaded``              ``rejected`` if the version has an error-severity issue, else
                            ``queries`` if it has queries, else ``processing`` (awaiting checks)
    ``rejected``            ``rejected``
    ``queries``             ``queries`` (no errors; queries await an explanation)
    ``accepted``            ``accepted`` (``accepted_at`` set); refused if it has errors
    ======================  ====================================================================

    ``status_changed_at`` moves only when the status does, so calling this twice is harmless.
    A version already superseded by a newer file keeps the status ``superseded``, and an older
    version already decided keeps ``rejected``/``accepted`` (rows and timestamps are still
    recorded); neither moves the submission: a slow task finishing an old
    file cannot overwrite the council's current progress. Returns the submission's status.
    """
    status = VersionStatus(status)
    if status == VersionStatus.superseded:
        raise ValueError("versions are superseded by record_version when a newer file arrives, not directly")
    version = session.execute(
        select(SubmissionVersion).where(SubmissionVersion.id == version_id).execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if version is None:
        raise UnknownSubmission(f"no submission version with id {version_id}")
    sub = _lock_submission(session, version.submission_id)
    session.refresh(version)  # under the lock: a newer version may have superseded it meanwhile
    if status == VersionStatus.accepted:
        errors = session.execute(
            select(func.count())
            .select_from(SubmissionIssue)
            .where(SubmissionIssue.version_id == version_id, SubmissionIssue.severity == "error")
        ).scalar_one()
        if errors:
            raise ValueError(f"version {version_id} has {errors} error(s): it cannot be accepted")
    now = _now()
    if rows_loaded is not None:
        version.rows_loaded = rows_loaded
    if status in (VersionStatus.loaded, VersionStatus.rejected, VersionStatus.queries, VersionStatus.accepted) and (
        version.processed_at is None or version.status != status
    ):
        version.processed_at = now
    latest_id = session.execute(
        select(SubmissionVersion.id)
        .where(SubmissionVersion.submission_id == sub.id)
        .order_by(SubmissionVersion.version.desc())
        .limit(1)
    ).scalar_one()
    decided_earlier = version.id != latest_id and version.status in (
        VersionStatus.rejected, VersionStatus.queries, VersionStatus.accepted
    )
    if version.status == VersionStatus.superseded or decided_earlier:
        session.flush()
        log.info("version %s is superseded: outcome %s recorded, submission %s unchanged", version_id, status.value, sub.id)
        return sub.status
    version.status = status
    if version.id == latest_id:
        _set_submission_status(sub, _submission_status_for(session, version_id, status), now)
    session.flush()
    log.info("version %s: %s; submission %s: %s", version_id, status.value, sub.id, sub.status.value)
    return sub.status


def start_processing(session: Session, version_id: int) -> SubmissionStatus:
    """Mark the submission ``processing`` while its latest version is parsed and loaded.

    The version itself stays ``received`` until ``set_version_outcome``. No effect for a version
    that is not its submission's latest. Returns the submission's status.
    """
    version = session.get(SubmissionVersion, version_id)
    if version is None:
        raise UnknownSubmission(f"no submission version with id {version_id}")
    sub = _lock_submission(session, version.submission_id)
    latest = latest_version(session, sub.id)
    if latest is not None and latest.id == version_id:
        _set_submission_status(sub, SubmissionStatus.processing, _now())
        session.flush()
    return sub.status


def latest_version(session: Session, submission_id: int) -> SubmissionVersion | None:
    """The submission's newest version (highest number), or None before any file arrived."""
    return session.execute(
        select(SubmissionVersion)
        .where(SubmissionVersion.submission_id == submission_id)
        .order_by(SubmissionVersion.version.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def versions(session: Session, submission_id: int) -> list[SubmissionVersion]:
    """Every version of the submission, oldest first."""
    return list(
        session.execute(
            select(SubmissionVersion)
            .where(SubmissionVersion.submission_id == submission_id)
            .order_by(SubmissionVersion.version)
            .execution_options(populate_existing=True)
        ).scalars()
    )


__all__ = [
    "SEVERITIES",
    "UnknownSubmission",
    "expected_submission",
    "issues_for",
    "latest_version",
    "record_issues",
    "record_version",
    "set_version_outcome",
    "start_processing",
    "versions",
]

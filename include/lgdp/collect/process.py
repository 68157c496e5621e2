"""Processing one file a council put in its folder: archive, record, parse, load, decide.

The order is the promise that nothing is lost: the original bytes are archived and the version
recorded (committed) before anything reads them, so a corrupt, hostile or enormous file still
leaves its trace and a message, and the platform carries on. No Airflow here: operators call in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from lgdp.issues import Issue
from lgdp.specs.load import LoadedSpec


@dataclass(frozen=True)
class Outcome:
    version_id: int
    version: int
    new: bool
    status: str  # accepted | rejected | queries
    errors: int
    queries: int
    rows: int
    issues: list[Issue] = field(default_factory=list, compare=False)
    kind: str = "data"  # data | explanations (a returned feedback workbook)
    unexplained: int = 0
    note: str | None = None  # for a returned workbook: what was done with it, for the council


@dataclass(frozen=True)
class SubmissionState:
    status: str
    accepted_version: int | None
    seen: list[str]  # "item id:etag" of every file already recorded, so it is not processed twice

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def as_xcom(self) -> dict[str, object]:
        return {"status": self.status, "accepted_version": self.accepted_version}


CHECKED_DESPITE = frozenset({"CELL-001"})  # errors that do not stop the spec's checks running


def decide(issues: list[Issue], loaded_ok: bool, unexplained: int | None = None) -> str:
    """Rejected while an error stands; ``queries`` while a query has no explanation; else accepted.

    ``unexplained`` is the number of queries without an explanation (explanations carried over
    from earlier versions count); None means none of ``issues``' queries is explained.
    """
    if not loaded_ok or any(i.severity == "error" for i in issues):
        return "rejected"
    if unexplained is None:
        unexplained = sum(i.severity == "query" for i in issues)
    return "queries" if unexplained else "accepted"


def validate_version(loaded: LoadedSpec, period: str, council: str, version_id: int) -> list[Issue]:
    """The spec's checks on the loaded rows: row-level issues, cross-checked against Soda's counts.

    A Soda runtime error, a database outage or a disagreement between the two raises: the task
    fails and is retried, never a silent pass (the undecided version is picked up again).
    """
    from lgdp.validate.run import validate_submission

    return validate_submission(loaded, period, council, version_id)  # every table, the rule book of the period


def submission_state(return_id: str, period: str, council: str) -> SubmissionState:
    from lgdp.ingest.versions import expected_submission, versions
    from lgdp.ledger.db import session

    from sqlalchemy import select

    from lgdp.ledger.models import ExplanationFile, LateFile

    with session() as s:
        sub = expected_submission(s, return_id, period, council)
        vs = versions(s, sub.id)
        accepted = [v.version for v in vs if _value(v.status) == "accepted"]
        returned = s.execute(
            select(ExplanationFile.source_item_id, ExplanationFile.source_etag).where(
                ExplanationFile.submission_id == sub.id
            )
        ).all()
        late = s.execute(
            select(LateFile.source_item_id, LateFile.source_etag).where(LateFile.submission_id == sub.id)
        ).all()
        return SubmissionState(
            status=_value(sub.status),
            accepted_version=accepted[-1] if accepted else None,
            # an undecided version (a failed validation, say) is offered again; process_file is idempotent
            seen=[key for v in vs if _value(v.status) not in ("received", "loaded")
                  for key in source_keys(v.source_item_id, v.source_etag)]
            + [f"{item}:{etag}" for item, etag in returned]
            + [f"{item}:{etag}" for item, etag in late],
        )


def process_upload(loaded: LoadedSpec, period: str, council: str, ref: dict[str, Any], data: bytes) -> Outcome:
    """A file from the council's folder: a returned feedback workbook explains queries, anything else is data."""
    from lgdp.collect.feedback import is_returned_feedback

    if is_returned_feedback(ref["name"], data):  # in any spreadsheet format: never a data version
        return process_explanations(loaded, period, council, ref, data)
    return process_file(loaded, period, council, ref, data)


def process_file(loaded: LoadedSpec, period: str, council: str, ref: dict[str, Any], data: bytes) -> Outcome:
    loaded = loaded.for_period(period)  # the rule book in force for this period (yearly changes)
    from lgdp.ingest.archive import archive_file
    from lgdp.ingest.load import load_result
    from lgdp.ingest.versions import (
        expected_submission,
        record_issues,
        record_version,
        set_version_outcome,
        start_processing,
    )
    from lgdp.ledger.db import session
    from lgdp.parse import parse_submission

    uploaded_at = dt.datetime.fromisoformat(ref["last_modified"]) if ref.get("last_modified") else None
    late = keep_if_late(loaded, period, council, ref, data)  # after acceptance: kept and answered, not processed
    if late is not None:
        return late
    with session() as s, s.begin():  # 1. keep the original, whatever happens next
        sha = archive_file(s, data)
        sub = expected_submission(s, loaded.id, period, council)
        version_id, new = record_version(
            s,
            sub.id,
            sha256=sha,
            filename=storable(ref["name"]),
            source_path=storable(ref.get("path") or ref["name"]),
            source_item_id=storable(ref["id"]),
            source_etag=storable(ref["etag"]),
            uploaded_by=storable(ref.get("last_modified_by")),
            uploaded_at=uploaded_at,
        )
        start_processing(s, version_id)
    result = parse_submission(loaded, ref["name"], data, council_code=council)  # 2. never raises
    rows = 0
    issues = list(result.issues)
    # A formula cell (CELL-001) is an error to fix, but its cached value was read like any other:
    # the spec's checks still run, so the council hears of every issue in one round.
    structural_errors = any(i.severity == "error" and i.code not in CHECKED_DESPITE for i in issues)
    with session() as s, s.begin():  # 3. rows and the file's own issues together
        if result.table is not None:
            rows = load_result(s, loaded, version_id, council, period, result)  # every table of the return
        record_issues(s, version_id, issues)
        if result.table is None or structural_errors:
            set_version_outcome(s, version_id, "rejected", rows_loaded=rows)
        else:
            set_version_outcome(s, version_id, "loaded", rows_loaded=rows)
    unexplained = 0
    if result.table is not None and not structural_errors:
        from lgdp.ingest.explanations import carry_explanations, unexplained_queries
        from lgdp.validate.plausibility import plausibility_issues

        issues += validate_version(loaded, period, council, version_id)  # 4. the spec's checks
        with session() as s, s.begin():
            issues += plausibility_issues(s, loaded, council, period, version_id)  # 5. against last period
            record_issues(s, version_id, issues)
            carry_explanations(s, version_id)
            unexplained = unexplained_queries(s, version_id)
            status = decide(issues, True, unexplained)
            set_version_outcome(s, version_id, status, rows_loaded=rows)
    else:
        status = "rejected"
    with session() as s:
        version = _version_number(s, version_id)
    return Outcome(
        version_id=version_id,
        version=version,
        new=new,
        status=status,
        errors=sum(i.severity == "error" for i in issues),
        queries=sum(i.severity == "query" for i in issues),
        rows=rows,
        issues=issues,
        unexplained=unexplained,
    )


def keep_if_late(loaded: LoadedSpec, period: str, council: str, ref: dict[str, Any], data: bytes) -> Outcome | None:
    """A data file dropped once the submission is accepted: archived and recorded as late, not processed.

    The accepted version stands (requesters may have it already); :func:`lgdp.collect.respond.pending`
    then owes the council a notice saying so. None when the submission is not accepted, or when
    this very file (item id and eTag) is already a version (a retry finishing its own work).
    """
    from sqlalchemy import select

    from lgdp.ingest.archive import archive_file
    from lgdp.ingest.versions import _lock_submission, expected_submission, versions
    from lgdp.ledger.db import session
    from lgdp.ledger.models import LateFile, SubmissionVersion

    item, etag = storable(ref["id"]), storable(ref["etag"])
    with session() as s, s.begin():
        sub = expected_submission(s, loaded.id, period, council)
        sub = _lock_submission(s, sub.id)  # serialised with record_version and outcomes
        if _value(sub.status) != "accepted":
            return None
        mine = s.execute(
            select(SubmissionVersion.id).where(
                SubmissionVersion.submission_id == sub.id,
                SubmissionVersion.source_item_id == item,
                SubmissionVersion.source_etag == etag,
            )
        ).scalar_one_or_none()
        if mine is not None:
            return None
        accepted = [v for v in versions(s, sub.id) if _value(v.status) == "accepted"]
        standing = accepted[-1] if accepted else None
        existing = s.execute(
            select(LateFile).where(
                LateFile.submission_id == sub.id, LateFile.source_item_id == item, LateFile.source_etag == etag
            )
        ).scalar_one_or_none()
        new = existing is None
        if new:
            sha = archive_file(s, data)
            s.add(
                LateFile(
                    submission_id=sub.id,
                    accepted_version_id=standing.id if standing else None,
                    file_sha256=sha,
                    filename=storable(ref["name"]),
                    source_item_id=item,
                    source_etag=etag,
                    uploaded_by=storable(ref.get("last_modified_by")),
                    uploaded_at=dt.datetime.fromisoformat(ref["last_modified"]) if ref.get("last_modified") else None,
                )
            )
        return Outcome(
            version_id=standing.id if standing else 0,
            version=standing.version if standing else 0,
            new=new,
            status="accepted",
            errors=0,
            queries=0,
            rows=standing.rows_loaded or 0 if standing else 0,
            kind="late",
        )


def process_explanations(loaded: LoadedSpec, period: str, council: str, ref: dict[str, Any], data: bytes) -> Outcome:
    """A feedback workbook the council filled in and uploaded: record its explanations, then decide again.

    The workbook is archived and recorded first, like any file. Explanations apply to the version
    the workbook names; if that version's queries are now all explained and it has no errors, it
    is accepted. A workbook for another council, return or period, or for a version since replaced,
    is refused with a message saying which workbook to use.
    """
    from sqlalchemy import select

    from lgdp.collect.feedback import FeedbackUnreadable, read_returned
    from lgdp.ingest.archive import archive_file
    from lgdp.ingest.explanations import apply_explanations, unexplained_queries
    from lgdp.ingest.versions import expected_submission, issues_for, latest_version, set_version_outcome
    from lgdp.ledger.db import session
    from lgdp.ledger.models import ExplanationFile, SubmissionVersion

    with session() as s, s.begin():  # keep the original first, whatever happens next
        sha = archive_file(s, data)
    try:
        returned = read_returned(data, ref["name"])
        problem = None
    except FeedbackUnreadable as exc:
        returned, problem = None, str(exc)
    with session() as s, s.begin():
        sub = expected_submission(s, loaded.id, period, council)
        existing = s.execute(
            select(ExplanationFile).where(
                ExplanationFile.submission_id == sub.id,
                ExplanationFile.source_item_id == storable(ref["id"]),
                ExplanationFile.source_etag == storable(ref["etag"]),
            )
        ).scalar_one_or_none()
        latest = latest_version(s, sub.id)
        target: SubmissionVersion | None = None
        if returned is not None:
            if (returned.return_id, returned.period, returned.council) != (loaded.id, period, council):
                problem = (
                    f"This feedback workbook is for {returned.return_id} {returned.period} of council "
                    f"{returned.council}, not {loaded.id} {period} of {council}. Upload it to the right folder."
                )
            else:
                target = s.get(SubmissionVersion, returned.version_id)
                if target is None or target.submission_id != sub.id:
                    problem = "The feedback workbook's hidden details do not match any of your files; use the one we sent."
                    target = None
                elif latest is not None and latest.id != target.id:
                    problem = (
                        f"This feedback workbook explains version {target.version} of your file, but you have since "
                        f"uploaded version {latest.version}. Use feedback_v{latest.version}.xlsx from the _platform "
                        "folder; explanations you already gave carry over to the same queries."
                    )
        explained = 0
        if target is not None and problem is None and existing is None:
            explained = apply_explanations(s, target.id, returned.explanations)
        if existing is None:
            s.add(
                ExplanationFile(
                    submission_id=sub.id,
                    version_id=target.id if target is not None else None,
                    file_sha256=sha,
                    filename=storable(ref["name"]),
                    source_item_id=storable(ref["id"]),
                    source_etag=storable(ref["etag"]),
                    uploaded_by=storable(ref.get("last_modified_by")),
                    status="refused" if problem else "applied",
                    explained=explained,
                    message=problem,
                )
            )
        version = target if target is not None and problem is None else latest
        if version is None:
            return Outcome(0, 0, existing is None, _value(sub.status), 0, 0, 0, [], kind="explanations", note=problem)
        issues = issues_for(s, version.id)
        unexplained = unexplained_queries(s, version.id)
        status = _value(version.status)
        if status == "queries" and unexplained == 0 and problem is None:
            set_version_outcome(s, version.id, "accepted")
            status = "accepted"
        note = problem or (
            f"{explained} explanation(s) recorded for version {version.version}; "
            + ("all queries are explained." if unexplained == 0 else f"{unexplained} query(ies) still need one.")
            + returned.retype_note
        )
        return Outcome(
            version_id=version.id,
            version=version.version,
            new=existing is None,
            status=status,
            errors=sum(i.severity == "error" for i in issues),
            queries=sum(i.severity == "query" for i in issues),
            rows=version.rows_loaded or 0,
            issues=issues,
            kind="explanations",
            unexplained=unexplained,
            note=note,
        )


PART_SEPARATOR = "|"  # a submission assembled from several files (one CSV per table) records their ids and eTags joined


def source_keys(item_id: str, etag: str) -> list[str]:
    """``item:etag`` of the file(s) a version came from: one, or each file of an assembled submission."""
    ids, etags = item_id.split(PART_SEPARATOR), etag.split(PART_SEPARATOR)
    keys = [f"{item_id}:{etag}"]
    if len(ids) > 1 and len(ids) == len(etags):
        keys += [f"{i}:{e}" for i, e in zip(ids, etags)]
    return keys


def table_part(loaded: LoadedSpec, name: str) -> str | None:
    """The table a CSV file named after it holds (``episodes.csv``), for a multi-table return collected as CSV."""
    if not loaded.multi or "csv" not in loaded.spec.formats:
        return None
    stem, _, ext = name.rpartition(".")
    if ext.lower() != "csv":
        return None
    from lgdp.parse.headers import normalise

    return next((t.dataset for t in loaded.tables if normalise(t.dataset) == normalise(stem)), None)


def bundle_parts(loaded: LoadedSpec, period: str, parts: dict[str, tuple[dict[str, Any], bytes]]) -> tuple[dict[str, Any], bytes]:
    """One submission from one CSV file per table: a zip of them (each file's bytes as they were)
    and a reference naming every file (ids and eTags joined), so each is seen as processed."""
    import io
    import zipfile

    names = [t.dataset for t in loaded.tables]
    refs = [parts[n][0] for n in names]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n in names:
            zf.writestr(f"{n}.csv", parts[n][1])
    ref = {
        "name": f"{loaded.id}_{period}_" + "+".join(names) + ".zip",
        "id": PART_SEPARATOR.join(r["id"] for r in refs),
        "etag": PART_SEPARATOR.join(r["etag"] for r in refs),
        "path": refs[-1].get("path") or refs[-1]["name"],
        "last_modified": max((r.get("last_modified") or "" for r in refs), default="") or None,
        "last_modified_by": refs[-1].get("last_modified_by"),
    }
    return ref, buf.getvalue()


def storable(value: str | None) -> str | None:
    """Text as PostgreSQL can keep it: a NUL in a hostile file name must not lose the file."""
    if value is None:
        return None
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in value)


def mark_not_received(return_id: str, period: str, council: str) -> bool:
    """At the close: True (and status not_received) unless the council's submission was accepted."""
    from lgdp.ingest.versions import expected_submission
    from lgdp.ledger.db import session
    from lgdp.ledger.models import SubmissionStatus

    with session() as s, s.begin():
        sub = expected_submission(s, return_id, period, council)
        if _value(sub.status) == "accepted":
            return False
        sub.status = SubmissionStatus.not_received
        sub.status_changed_at = dt.datetime.now(dt.timezone.utc)
        return True


def _version_number(session: Any, version_id: int) -> int:
    from lgdp.ledger.models import SubmissionVersion

    return session.get(SubmissionVersion, version_id).version


def _value(status: Any) -> str:
    return getattr(status, "value", status)

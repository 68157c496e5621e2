"""What the API does with a submission: check it, keep it, place it in the council's folder, and
read back what the pipeline made of it.

The API does not process anything itself. A submission accepted for processing is archived (the
request body byte for byte, and the file made from it) and recorded in ``lgdp.api_submissions``
in one transaction before the 202 goes back; then :func:`place_queued` uploads the file into the
council's SharePoint folder through the Graph client the platform already uses, and the council's
``collect`` task processes it exactly as a file an officer dropped there: the same archive,
versions, parsing, validation, feedback workbook in ``_platform``, emails and task state. So both
routes give the same outcome for the same data by construction, and a Graph outage delays the
placing (retried from the ledger), never loses a submission.

Status and issues are read from the ledger: the version (or returned workbook, or late file) the
collect task recorded for the placed item, and the issues through :func:`lgdp.collect.respond.version_feedback`,
the function that fills the feedback workbook, so the API and the workbook cannot disagree.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import re
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lgdp.ledger.models import (
    ApiSubmission,
    ArchivedFile,
    CollectionPeriod,
    ExpectedSubmission,
    ExplanationFile,
    LateFile,
    Return,
    SentEmail,
    SubmissionIssue,
    SubmissionVersion,
)

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/csv": "csv",
    "application/csv": "csv",
    "application/zip": "zip",
    "application/x-zip-compressed": "zip",
    "application/xml": "xml",
    "text/xml": "xml",
    "application/json": "json",
}
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
DECIDED = ("rejected", "queries", "accepted")
PLACE_ATTEMPTS_LOGGED = 20


class ApiError(Exception):
    """A refusal with an HTTP status, a stable ``code`` for machines and a message for people."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def as_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def max_body_bytes() -> int:
    """The largest request body: the parser's file limit (``LGDP_MAX_FILE_MB``), JSON included."""
    from lgdp.parse.limits import Limits

    return Limits.from_env().max_file_bytes


# ---- what a council may submit ------------------------------------------------------------------
def load_return(return_id: str):
    """The return's spec from the register, or 404."""
    from lgdp.specs.load import load_register

    reg = load_register()
    try:
        loaded = reg.get(return_id)
    except Exception:  # noqa: BLE001 - unknown or broken: either way not submittable
        loaded = None
    if loaded is None:
        raise ApiError(404, "return_unknown", f"There is no return {return_id!r} in the register.")
    return loaded


def expected_for(session: Session, loaded: Any, period: str, council: str, now: dt.datetime | None = None) -> ExpectedSubmission:
    """The council's expected submission of an open period, or 403 (not a provider) / 409 (not open)."""
    if council not in {c.code for c in loaded.providers}:
        raise ApiError(403, "return_not_provided", f"Council {council} does not provide {loaded.id}; nothing to submit.")
    now = now or _now()
    row = session.execute(
        select(ExpectedSubmission, CollectionPeriod)
        .join(CollectionPeriod, CollectionPeriod.id == ExpectedSubmission.period_id)
        .where(CollectionPeriod.return_id == loaded.id, CollectionPeriod.period == period, ExpectedSubmission.council_code == council)
    ).first()
    if row is None or not (row[1].opens_at <= now < row[1].closes_at):
        open_now = [p for p in open_periods(session, council, now) if p["return_id"] == loaded.id]
        words = ", ".join(p["period"] for p in open_now) or "none"
        raise ApiError(
            409, "period_not_open",
            f"Period {period!r} of {loaded.id} is not open for submissions (open now: {words}).",
            open_periods=[p["period"] for p in open_now],
        )
    return row[0]


def open_periods(session: Session, council: str, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every open period the council owes, with its dates and where it stands."""
    now = now or _now()
    rows = session.execute(
        select(CollectionPeriod, ExpectedSubmission.status, Return.title)
        .join(ExpectedSubmission, ExpectedSubmission.period_id == CollectionPeriod.id)
        .join(Return, Return.id == CollectionPeriod.return_id)
        .where(ExpectedSubmission.council_code == council, CollectionPeriod.opens_at <= now, CollectionPeriod.closes_at > now)
        .order_by(CollectionPeriod.due_at, CollectionPeriod.return_id)
    ).all()
    out = []
    for p, status, title in rows:
        status = getattr(status, "value", status)
        out.append({
            "return_id": p.return_id,
            "title": title,
            "period": p.period,
            "opens_at": p.opens_at.isoformat(),
            "due_at": p.due_at.isoformat(),
            "closes_at": p.closes_at.isoformat(),
            "status": status,
            "overdue": status != "accepted" and now > p.due_at,
        })
    return out


# ---- turning a request into a file --------------------------------------------------------------
def media_type(content_type: str | None) -> str:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base not in CONTENT_TYPES:
        raise ApiError(
            415, "unsupported_content_type",
            f"Content-Type {base or '(none)'!r} is not accepted; send one of: " + ", ".join(sorted(CONTENT_TYPES)) + ".",
        )
    return base


def _cell(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ApiError(422, "invalid_rows", f"{where}: a value must be text, a number, true/false or null, not {type(value).__name__}.")


def _table_csv(items: list[str], rows: Any, where: str) -> bytes:
    if not isinstance(rows, list):
        raise ApiError(422, "invalid_rows", f"{where} must be a list of rows (objects of item name to value).")
    columns = list(items)
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ApiError(422, "invalid_rows", f"{where}[{n}] must be an object of item name to value.")
        for key in row:
            if not isinstance(key, str):
                raise ApiError(422, "invalid_rows", f"{where}[{n}]: item names are text.")
            if key not in columns:
                columns.append(key)  # reported by the parser, as a file's unexpected column would be
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow(columns)
    for n, row in enumerate(rows):
        out.writerow([_cell(row.get(c), f"{where}[{n}].{c}") for c in columns])
    return buf.getvalue().encode("utf-8")


def rows_to_file(loaded: Any, body: bytes) -> tuple[bytes, str]:
    """JSON rows as the file a council would send: one CSV, or a zip of one CSV per table.

    ``{"rows": [...]}`` for a return of one table; ``{"tables": {"<table>": [...], ...}}`` for
    one of several (also accepted for one table, named by its dataset). Row ``n`` of the file
    (as issues name it) is the object at index ``n - 2``: row 1 is the CSV's header.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(doc, dict):
        raise ApiError(422, "invalid_rows", 'The body must be an object: {"rows": [...]} or {"tables": {...}}.')
    names = [t.dataset for t in loaded.tables] if loaded.multi else [loaded.dataset]
    if "tables" in doc:
        tables = doc["tables"]
        if not isinstance(tables, dict):
            raise ApiError(422, "invalid_rows", '"tables" must be an object of table name to rows.')
        unknown = sorted(set(tables) - set(names))
        if unknown:
            raise ApiError(422, "invalid_rows", f"{loaded.id} has no table(s) {', '.join(map(repr, unknown))}; its tables: {', '.join(names)}.")
    elif "rows" in doc and not loaded.multi:
        tables = {names[0]: doc["rows"]}
    else:
        raise ApiError(
            422, "invalid_rows",
            (f'{loaded.id} has tables {", ".join(names)}: send {{"tables": {{"<table>": [rows]}}}}.' if loaded.multi
             else '{"rows": [...]} is missing.'),
        )
    from lgdp.parse.limits import Limits

    limit = Limits.from_env().max_rows
    if sum(len(r) for r in tables.values() if isinstance(r, list)) > limit:
        raise ApiError(413, "too_many_rows", f"More than {limit} rows in one submission.")
    if not loaded.multi:
        return _table_csv([i.name for i in loaded.items], tables[names[0]], f"rows"), "csv"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for view in loaded.tables:
            if view.dataset in tables:  # a missing table is reported by the parser, as for a zip without it
                zf.writestr(f"{view.dataset}.csv", _table_csv([i.name for i in view.items], tables[view.dataset], f"tables.{view.dataset}"))
    return buf.getvalue(), "zip"


def _safe_stem(name: str | None, default: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", (name or "").rsplit(".", 1)[0]).strip("-")[:60]
    return stem or default


@dataclass
class Received:
    submission: ApiSubmission
    replay: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


def _request_digest(kind: str, content_type: str, filename: str | None, body: bytes) -> str:
    h = hashlib.sha256()
    for part in (kind, content_type, filename or ""):
        h.update(part.encode("utf-8", "replace") + b"\x00")
    h.update(body)
    return h.hexdigest()


def _replay(session: Session, council: str, key: str, digest: str) -> Received | None:
    existing = session.execute(
        select(ApiSubmission).where(ApiSubmission.council_code == council, ApiSubmission.idempotency_key == key)
    ).scalar_one_or_none()
    if existing is None:
        return None
    if existing.request_sha256 != digest:
        raise ApiError(
            409, "idempotency_key_reused",
            f"Idempotency key {key!r} was used for a different submission ({existing.id}); use a new key for new content.",
            submission_id=existing.id,
        )
    return Received(existing, replay=True)


def check_key(key: str | None) -> str:
    if not key or not IDEMPOTENCY_KEY.match(key):
        raise ApiError(
            400, "idempotency_key_required",
            "Send an Idempotency-Key header (8 to 128 letters, digits or . _ : -), new for each new submission, "
            "the same when you retry one.",
        )
    return key


def receive(
    session: Session,
    *,
    token_id: str,
    council: str,
    loaded: Any,
    period: str,
    body: bytes,
    content_type: str,
    filename: str | None,
    key: str,
) -> Received:
    """Check, archive and record a data submission (the caller commits); a replay returns the first."""
    from lgdp.collect.graph import folder_path
    from lgdp.ingest.archive import archive_file

    kind = "data"
    digest = _request_digest(kind, content_type, filename, body)
    replay = _replay(session, council, key, digest)
    if replay is not None:
        return replay
    expected_for(session, loaded, period, council)
    fmt = CONTENT_TYPES[content_type]
    if fmt == "json":
        data, ext = rows_to_file(loaded, body)
    else:
        if not body:
            raise ApiError(400, "empty_body", "The body is empty: send the file's bytes.")
        data, ext = body, fmt
    sid = str(uuid.uuid4())
    name = f"api-{sid[:8]}-{_safe_stem(filename, loaded.id)}.{ext}"
    return _record(session, sid, token_id, council, loaded.id, period, kind, key, digest, body, data, name,
                   content_type, f"{folder_path(loaded.id, period, council)}/{name}", archive_file)


def _record(session, sid, token_id, council, return_id, period, kind, key, digest, body, data, name, content_type, target, archive_file, detail=None) -> Received:
    original = archive_file(session, body)
    sha = archive_file(session, data) if data is not body else original
    row = ApiSubmission(
        id=sid, token_id=token_id, council_code=council, return_id=return_id, period=period, kind=kind,
        idempotency_key=key, request_sha256=digest, original_sha256=original, file_sha256=sha, filename=name,
        content_type=content_type, target_path=target, status="queued", attempts=0, detail=detail, created_at=_now(),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same key at the same moment from a retrying client: the first one wins
        again = _replay(session, council, key, digest)
        if again is None:
            raise
        return again
    return Received(row)


def receive_explanations(
    session: Session, *, token_id: str, council: str, sub: ApiSubmission, body: bytes, key: str
) -> Received:
    """Explanations as JSON become the filled-in feedback workbook an officer would upload."""
    from lgdp.collect.feedback import FeedbackIssue, build_workbook
    from lgdp.collect.graph import folder_path
    from lgdp.collect.respond import version_feedback
    from lgdp.ingest.archive import archive_file
    from lgdp.ingest.versions import latest_version

    digest = _request_digest("explanations", "application/json", sub.id, body)
    replay = _replay(session, council, key, digest)
    if replay is not None:
        return replay
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {exc}.") from None
    given = doc.get("explanations") if isinstance(doc, dict) else None
    if not isinstance(given, list) or not given:
        raise ApiError(422, "invalid_explanations", 'Send {"explanations": [{"code": ..., "row": ..., "item": ..., "explanation": ...}]}.')
    wanted: dict[tuple[str, int | None, str | None], str] = {}
    for n, e in enumerate(given):
        if not isinstance(e, dict) or not isinstance(e.get("code"), str) or not isinstance(e.get("explanation"), str) \
                or not (e.get("row") is None or (isinstance(e.get("row"), int) and not isinstance(e.get("row"), bool))) \
                or not (e.get("item") is None or isinstance(e.get("item"), str)):
            raise ApiError(422, "invalid_explanations", f"explanations[{n}] needs code (text), row (number or null), item (text or null) and explanation (text).")
        wanted[(e["code"], e.get("row"), e.get("item"))] = e["explanation"]
    loaded = load_return(sub.return_id)
    expected_for(session, loaded, sub.period, council)
    if sub.kind != "data":
        raise ApiError(409, "not_a_data_submission", "Explanations answer the queries of a data submission; this one is itself explanations.")
    found = _version_of(session, sub)
    version = found.get("version")
    if found["state"] == "superseded":
        raise ApiError(409, "version_superseded", "A later file replaced this submission; explain the queries of that one.")
    if version is None or found["state"] not in DECIDED:
        raise ApiError(409, "not_decided", "This submission has not been decided yet; explain its queries once its status is queries.")
    latest = latest_version(session, version.submission_id)
    if latest is not None and latest.id != version.id:
        raise ApiError(409, "version_superseded", f"You have since sent version {latest.version}; explain the queries of that submission.")
    meta, issues, _ = version_feedback(loaded, sub.period, council, version.id)
    known = {(i.code, i.row, i.item) for i in issues if i.severity == "query"}
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise ApiError(
            422, "unknown_query",
            f"{len(unknown)} explanation(s) match no query of version {meta.version} (by code, row and item), "
            f"e.g. {unknown[0]}; errors cannot be explained, only fixed.",
            unknown=[{"code": c, "row": r, "item": i} for c, r, i in unknown[:50]],
        )
    filled = [
        FeedbackIssue(i.code, i.severity, i.message, i.row, i.item, i.value, wanted.get((i.code, i.row, i.item), i.explanation), i.table)
        for i in issues
    ]
    workbook = build_workbook(meta, filled)
    sid = str(uuid.uuid4())
    name = f"feedback_v{meta.version}-api-{sid[:8]}.xlsx"
    target = f"{folder_path(sub.return_id, sub.period, council)}/{name}"
    return _record(session, sid, token_id, council, sub.return_id, sub.period, "explanations", key, digest, body,
                   workbook, name, "application/json", target, archive_file, detail={"explains": sub.id, "version": meta.version})


# ---- placing files in the council's folder -------------------------------------------------------
async def place_queued(drive: Any, limit: int = 16) -> int:
    """Upload queued submissions into their councils' folders (oldest first); returns how many went.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED``, so several api-server workers share the
    queue without placing a file twice; a failed upload stays queued with its error, tried again.
    One event loop per process does the uploads (the Graph client's adapter belongs to a loop).
    """
    from lgdp.ledger.db import session

    placed = 0
    with session() as s:
        while placed < limit:
            with s.begin():
                row = s.execute(
                    select(ApiSubmission).where(ApiSubmission.status == "queued")
                    .order_by(ApiSubmission.created_at, ApiSubmission.id).limit(1).with_for_update(skip_locked=True)
                ).scalar_one_or_none()
                if row is None:
                    return placed
                data = s.get(ArchivedFile, row.file_sha256).content
                try:
                    item = await drive.upload(row.target_path, bytes(data))
                except Exception as exc:  # noqa: BLE001 - any outage: stays queued, tried again
                    row.attempts += 1
                    row.error = f"{type(exc).__name__}: {str(exc)[:300]}"
                    log.warning("submission %s not placed yet (attempt %d): %s", row.id, row.attempts, type(exc).__name__)
                    return placed
                row.status, row.source_item_id, row.source_etag = "placed", item.id, item.etag
                row.placed_at, row.error = _now(), None
                row.attempts += 1
                placed += 1
    return placed


def queued_count(session: Session) -> int:
    return session.execute(select(func.count()).select_from(ApiSubmission).where(ApiSubmission.status == "queued")).scalar_one()


# ---- reading back ------------------------------------------------------------------------------
def _own(rows: list[Any], sub: ApiSubmission) -> Any | None:
    """Of the records the pipeline made from the submission's SharePoint item (oldest first), the
    first made from the file the API placed: its eTag, or its very bytes under another eTag
    (SharePoint may change an eTag for metadata alone; a placing retried after an upload that did
    arrive writes the same bytes again). The first, so that once a status has been given for a
    version it stays that version's. A later file saved over the same item with other content (an
    officer editing it in SharePoint, say) is a version of its own, never this submission's: its
    status and issues must not become the answer for what the council's system sent."""
    return next((r for r in rows if r.source_etag == sub.source_etag or r.file_sha256 == sub.file_sha256), None)


def _version_of(session: Session, sub: ApiSubmission) -> dict[str, Any]:
    """What the pipeline recorded for the placed file: its version, workbook or late file.

    Matched by the item *and* the file placed (:func:`_own`), so the status and the issues of a
    submission always describe the same version, whatever is saved over the file afterwards.
    """
    if sub.status != "placed":
        return {"state": "queued"}
    es = session.execute(
        select(ExpectedSubmission.id)
        .join(CollectionPeriod, CollectionPeriod.id == ExpectedSubmission.period_id)
        .where(CollectionPeriod.return_id == sub.return_id, CollectionPeriod.period == sub.period,
               ExpectedSubmission.council_code == sub.council_code)
    ).scalar_one_or_none()
    if sub.kind == "explanations":
        files = session.execute(
            select(ExplanationFile).where(ExplanationFile.submission_id == es, ExplanationFile.source_item_id == sub.source_item_id)
            .order_by(ExplanationFile.id)
        ).scalars().all()
        ef = _own(files, sub)
        if ef is None:
            return {"state": "placed"}
        version = session.get(SubmissionVersion, ef.version_id) if ef.version_id else None
        return {"state": "explanations_" + ef.status, "explanation_file": ef, "version": version}
    made = session.execute(
        select(SubmissionVersion).where(SubmissionVersion.submission_id == es, SubmissionVersion.source_item_id == sub.source_item_id)
        .order_by(SubmissionVersion.id)
    ).scalars().all()
    version = _own(made, sub)
    if version is not None:
        status = getattr(version.status, "value", version.status)
        return {"state": "processing" if status in ("received", "loaded") else status, "version": version}
    late = _own(session.execute(
        select(LateFile).where(LateFile.submission_id == es, LateFile.source_item_id == sub.source_item_id).order_by(LateFile.id)
    ).scalars().all(), sub)
    if late is not None:
        v = session.get(SubmissionVersion, late.accepted_version_id) if late.accepted_version_id else None
        return {"state": "late", "version": v}
    if made:  # the item was saved over before the platform read what was placed: that file's outcome is not ours
        return {"state": "superseded", "version": None}
    return {"state": "placed"}


STATE_WORDS = {
    "queued": "Received and kept; being placed in your SharePoint folder.",
    "placed": "In your SharePoint folder, waiting for the platform to process it.",
    "processing": "Being processed.",
    "rejected": "Not accepted: errors to fix. Send a corrected file.",
    "queries": "Queries to explain: send explanations, or a corrected file.",
    "accepted": "Accepted.",
    "superseded": "Replaced by a later submission before it was decided.",
    "late": "Arrived after your return was accepted: kept, not processed; the accepted version stands.",
    "explanations_applied": "Explanations recorded.",
    "explanations_refused": "Explanations not used (see message).",
}


def status_json(session: Session, sub: ApiSubmission) -> dict[str, Any]:
    from lgdp.collect.feedback import feedback_name

    found = _version_of(session, sub)
    version = found.get("version")
    state = found["state"]
    out: dict[str, Any] = {
        "submission_id": sub.id,
        "kind": sub.kind,
        "return_id": sub.return_id,
        "period": sub.period,
        "council": sub.council_code,
        "received_at": sub.created_at.isoformat(),
        "idempotency_key": sub.idempotency_key,
        "file": sub.filename,
        "folder": sub.target_path.rsplit("/", 1)[0],
        "state": state,
        "message": STATE_WORDS.get(state, ""),
        "decided": False,
        "placed_at": sub.placed_at.isoformat() if sub.placed_at else None,
        "place_attempts": sub.attempts,
        "place_error": sub.error if sub.status == "queued" else None,
    }
    if sub.kind == "explanations":
        out["explains"] = (sub.detail or {}).get("explains")
        ef = found.get("explanation_file")
        if ef is not None:
            out["decided"] = True
            out["explained"] = ef.explained
            out["note"] = ef.message
    if version is not None:
        vstatus = getattr(version.status, "value", version.status)
        issues = session.execute(
            select(func.count()).select_from(SubmissionIssue).where(SubmissionIssue.version_id == version.id)
        ).scalar_one()
        by = dict(session.execute(
            select(SubmissionIssue.severity, func.count()).where(SubmissionIssue.version_id == version.id).group_by(SubmissionIssue.severity)
        ).all())
        unexplained = session.execute(
            select(func.count()).select_from(SubmissionIssue).where(
                SubmissionIssue.version_id == version.id, SubmissionIssue.severity == "query",
                SubmissionIssue.explanation.is_(None))
        ).scalar_one()
        out["version"] = {
            "number": version.version,
            "status": vstatus,
            "rows": version.rows_loaded,
            "issues": issues,
            "errors": by.get("error", 0),
            "queries": by.get("query", 0),
            "unexplained_queries": unexplained,
            "feedback_workbook": f"{out['folder']}/_platform/{feedback_name(version.version)}" if vstatus in DECIDED else None,
        }
        if sub.kind == "data":
            out["decided"] = state in DECIDED or state in ("late", "superseded")  # final: nothing more will happen to it
        keys = [f"outcome:{version.id}:{vstatus}", f"accepted:{version.id}:{vstatus}"]
        if found.get("explanation_file") is not None:
            keys.append(f"explanations:{found['explanation_file'].id}")
        sent = session.execute(select(SentEmail.dedupe_key).where(SentEmail.dedupe_key.in_(keys), SentEmail.status == "sent")).scalars().all()
        out["feedback_sent"] = bool(sent)
    elif sub.kind == "data" and state == "superseded":  # saved over before it was read: final, nothing to tell
        out["decided"], out["feedback_sent"] = True, False
    return out


def issues_json(session: Session, sub: ApiSubmission, offset: int = 0, limit: int = 1000) -> dict[str, Any]:
    """The version's issues exactly as the feedback workbook lists them (same function, same order)."""
    from lgdp.collect.respond import version_feedback

    found = _version_of(session, sub)
    version = found.get("version")
    if version is None:
        return {"submission_id": sub.id, "state": found["state"], "version": None, "total": 0, "issues": []}
    loaded = load_return(sub.return_id)
    session.rollback()  # version_feedback reads with its own session: hold one connection at a time
    meta, issues, _ = version_feedback(loaded, sub.period, sub.council_code, version.id)
    from_json = sub.content_type == "application/json" and sub.kind == "data"
    page = issues[offset: offset + limit]
    return {
        "submission_id": sub.id,
        "state": found["state"],
        "version": meta.version,
        "status": meta.status,
        "total": len(issues),
        "offset": offset,
        "issues": [
            {
                "code": i.code, "severity": i.severity, "message": i.message, "table": i.table, "row": i.row,
                "item": i.item, "value": i.value, "explanation": i.explanation,
                **({"index": i.row - 2 if i.row is not None and i.row >= 2 else None} if from_json else {}),
            }
            for i in page
        ],
    }

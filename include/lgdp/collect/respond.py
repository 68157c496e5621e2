"""Telling the council: the feedback workbook, the accepted data and the outcome email.

After each decision the council receives, in its folder's ``_platform`` subfolder, the feedback
workbook for the version (``feedback_v<N>.xlsx``) and, on acceptance, its own accepted data as
the platform normalised it (``accepted_v<N>.csv``), then an email: the outcome, counts by
severity, the top issues and the folder link; on acceptance an acknowledgement.

Everything is worked out from the ledger, not from what the processing step returned, so a
retry after a Graph or SMTP outage delivers exactly what was missed: :func:`pending` lists the
messages not yet sent (the ``sent_emails`` ledger is the memory), and :func:`deliver` uploads
the files and then sends, email last. No row data in logs; the email carries only what the
council itself sent (issue messages may quote a value from its own file).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from lgdp.collect.feedback import (
    FeedbackIssue,
    FeedbackMeta,
    accepted_name,
    build_workbook,
    counts,
    feedback_name,
    outcome_words,
    top_issues,
)
from lgdp.specs.load import LoadedSpec

TOP_ISSUES = 10


@dataclass(frozen=True)
class Pending:
    """One message owed to a council, and what it is about."""

    dedupe_key: str
    kind: str  # outcome | accepted | explanations | late
    version_id: int
    note: str | None = None
    late_file_id: int | None = None


def pending(return_id: str, period: str, council: str) -> list[Pending]:
    """Every message owed to the council, oldest file first: one per file it dropped.

    Each decided version is owed the message for its outcome now (a version first queried and
    later accepted through its workbook is owed the acknowledgement, not the stale query
    message); each returned feedback workbook its own message, unless it was applied and its
    version is now accepted (the acknowledgement says it all); each file dropped after acceptance
    a notice. Messages already sent (the ``sent_emails`` ledger) are not owed again, so a delivery
    that failed for any length of time is owed until it goes.
    """
    from sqlalchemy import select

    from lgdp.ingest.versions import expected_submission, versions
    from lgdp.ledger.db import session
    from lgdp.ledger.models import ExplanationFile, LateFile, SentEmail

    with session() as s:
        sub = expected_submission(s, return_id, period, council)
        owed: list[tuple[Any, int, Pending]] = []
        status_of: dict[int, str] = {}
        for v in versions(s, sub.id):
            status = getattr(v.status, "value", v.status)
            status_of[v.id] = status
            if status in ("rejected", "queries", "accepted"):
                kind = "accepted" if status == "accepted" else "outcome"
                owed.append((v.received_at, 0, Pending(f"{kind}:{v.id}:{status}", kind, v.id)))
        returned = s.execute(
            select(ExplanationFile).where(ExplanationFile.submission_id == sub.id).order_by(ExplanationFile.id)
        ).scalars()
        for r in returned:
            target = r.version_id
            if r.status == "applied" and target is not None and status_of.get(target) == "accepted":
                continue
            if target is None:  # refused, naming no version of this council: about the latest one
                target = max(status_of, default=None, key=lambda vid: vid)
            if target is None:
                continue
            owed.append((r.received_at, 1, Pending(f"explanations:{r.id}", "explanations", target, r.message)))
        late = s.execute(select(LateFile).where(LateFile.submission_id == sub.id).order_by(LateFile.id)).scalars()
        for f in late:
            if f.accepted_version_id is not None:
                owed.append((f.received_at, 2, Pending(f"late:{f.id}", "late", f.accepted_version_id, late_file_id=f.id)))
        owed.sort(key=lambda o: (o[0], o[1]))
        keys = [p.dedupe_key for _, _, p in owed]
        sent = set(
            s.execute(
                select(SentEmail.dedupe_key).where(SentEmail.dedupe_key.in_(keys), SentEmail.status == "sent")
            ).scalars()
        ) if keys else set()
        return [p for _, _, p in owed if p.dedupe_key not in sent]


def version_feedback(loaded: LoadedSpec, period: str, council: str, version_id: int) -> tuple[FeedbackMeta, list[FeedbackIssue], Any]:
    """The workbook's header and issues for a version, read from the ledger."""
    from sqlalchemy import select

    from lgdp.ledger.db import session
    from lgdp.ledger.models import SubmissionIssue, SubmissionVersion
    from lgdp.periods import period_from_label

    with session() as s:
        v = s.get(SubmissionVersion, version_id)
        rows = s.execute(
            select(
                SubmissionIssue.code, SubmissionIssue.severity, SubmissionIssue.message, SubmissionIssue.row_number,
                SubmissionIssue.item, SubmissionIssue.value, SubmissionIssue.explanation, SubmissionIssue.table_name,
            )
            .where(SubmissionIssue.version_id == version_id)
            # grouped by table (sheet) for a return of several tables, then by the council's row numbers
            .order_by(SubmissionIssue.table_name.asc().nulls_first(), SubmissionIssue.row_number.asc().nulls_first(),
                      SubmissionIssue.id)
        ).all()
        status = getattr(v.status, "value", v.status)
        number, filename, received = v.version, v.filename, v.received_at
    names = {c.code: c.name for c in loaded.providers}
    p = period_from_label(loaded.spec.collection, period)
    g = loaded.spec.governance
    meta = FeedbackMeta(
        return_id=loaded.id,
        return_title=loaded.spec.title,
        period=period,
        council=council,
        council_name=names.get(council, council),
        version=number,
        version_id=version_id,
        filename=filename,
        status=status if status in ("accepted", "rejected", "queries") else "rejected",
        due=p.due_in_words(),
        contact=f"{g.owner} ({g.contact_email})",
    )
    return meta, [FeedbackIssue(*r) for r in rows], received


def accepted_file_name(loaded: LoadedSpec, version: int) -> str:
    """``accepted_v<N>.csv``; for a return of several tables a zip of one CSV per table."""
    name = accepted_name(version)
    return name.rsplit(".", 1)[0] + ".zip" if loaded.multi else name


def accepted_csv(loaded: LoadedSpec, version_id: int) -> bytes:
    if loaded.multi:  # one CSV per table, named after the table, in a zip
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for view in loaded.tables:
                zf.writestr(f"{view.dataset}.csv", _accepted_table_csv(view, version_id))
        return buf.getvalue()
    return _accepted_table_csv(loaded, version_id)


def _accepted_table_csv(loaded: LoadedSpec, version_id: int) -> bytes:
    """The version's rows as the platform holds them: spec item names, typed, in file order; a text
    value a spreadsheet would run as a formula gets a leading apostrophe, as in deliveries.

    PostgreSQL writes the CSV (``COPY ... TO STDOUT``), so a million rows cost seconds.
    """
    from psycopg import sql

    from lgdp.ingest._conn import raw_connection
    from lgdp.ingest.staging import staging_table
    from lgdp.ledger.db import session

    from lgdp.distribute.formats import neutralised_sql
    from lgdp.specs.model import ItemType
    from lgdp.validate.checks import quote_ident

    # Text values neutralised against formulas exactly as in deliveries (``distribute.formats``).
    cols = sql.SQL(", ").join(
        sql.SQL(f"{neutralised_sql(quote_ident(i.name))} AS {quote_ident(i.name)}")
        if i.type in (ItemType.string, ItemType.code) else sql.Identifier(i.name)
        for i in loaded.items
    )
    query = sql.SQL(
        "COPY (SELECT _row_number AS source_row, {} FROM {} WHERE _submission_version_id = {} ORDER BY _row_number) "
        "TO STDOUT WITH (FORMAT csv, HEADER true)"
    ).format(cols, staging_table(loaded), sql.Literal(int(version_id)))
    out = io.BytesIO()
    with session() as s:
        raw = raw_connection(s)
        with raw.cursor() as cur, cur.copy(query) as copy:
            for chunk in copy:
                out.write(chunk)
    return out.getvalue()


def email_context(
    loaded: LoadedSpec, meta: FeedbackMeta, issues: list[FeedbackIssue], folder_url: str | None, note: str | None
) -> dict[str, Any]:
    c = counts(issues)
    headline, todo = outcome_words(meta.status, c)
    return {
        "return_title": meta.return_title,
        "return_id": meta.return_id,
        "period": meta.period,
        "council_name": meta.council_name,
        "version": meta.version,
        "filename": meta.filename,
        "status": meta.status,
        "headline": headline,
        "todo": todo,
        "errors": c.errors,
        "queries": c.queries,
        "explained": c.explained,
        "unexplained": c.unexplained,
        "top": [
            {
                "code": i.code,
                "severity": i.severity,
                "row": i.row,
                "item": i.item,
                "message": i.message,
                "explained": bool(i.explanation),
            }
            for i in top_issues(issues, TOP_ISSUES)
        ],
        "more": max(0, len(issues) - TOP_ISSUES),
        "feedback_file": feedback_name(meta.version),
        "accepted_file": accepted_file_name(loaded, meta.version),
        "folder_url": folder_url or "",
        "due": meta.due,
        "contact": meta.contact,
        "note": note or "",
    }


def deliver(loaded: LoadedSpec, period: str, council: str, owed: Pending, drive: Any) -> str:
    """Upload the version's feedback (and accepted data), then send the email. Returns the send status."""
    from lgdp.collect.graph import PLATFORM_FOLDER, folder_path
    from lgdp.notify import Email, addresses, render, send_email

    if owed.kind == "late":
        return _deliver_late_notice(loaded, period, council, owed, drive)
    meta, issues, _ = version_feedback(loaded, period, council, owed.version_id)
    folder = folder_path(loaded.id, period, council)
    drive.upload_sync(f"{folder}/{PLATFORM_FOLDER}/{feedback_name(meta.version)}", build_workbook(meta, issues))
    if meta.status == "accepted":
        drive.upload_sync(f"{folder}/{PLATFORM_FOLDER}/{accepted_file_name(loaded, meta.version)}", accepted_csv(loaded, owed.version_id))
    folder_url = drive.web_url_sync(folder)
    template = {"accepted": "accepted", "outcome": "outcome", "explanations": "explained"}[owed.kind]
    rendered = render(template, email_context(loaded, meta, issues, folder_url, owed.note))
    result = send_email(
        Email(to=addresses(council), subject=rendered.subject, text=rendered.text, html=rendered.html),
        dedupe_key=owed.dedupe_key,
        kind=f"feedback_{owed.kind}",
        return_id=loaded.id,
        period=period,
        council_code=council,
    )
    return result.status


def _deliver_late_notice(loaded: LoadedSpec, period: str, council: str, owed: Pending, drive: Any) -> str:
    """Tell the council a file it dropped after acceptance was kept but not used, and who can reopen."""
    from lgdp.collect.graph import folder_path
    from lgdp.ledger.db import session
    from lgdp.ledger.models import LateFile, SubmissionVersion
    from lgdp.notify import Email, addresses, render, send_email

    with session() as s:
        late = s.get(LateFile, owed.late_file_id)
        accepted = s.get(SubmissionVersion, owed.version_id)
        filename, arrived = late.filename, late.uploaded_at or late.received_at
        version, accepted_file, accepted_at = accepted.version, accepted.filename, accepted.processed_at
    names = {c.code: c.name for c in loaded.providers}
    g = loaded.spec.governance
    folder_url = drive.web_url_sync(folder_path(loaded.id, period, council))
    title = f"{loaded.spec.title} {period}: a file after acceptance was not used ({names.get(council, council)})"
    paragraphs = [
        f"Your {loaded.spec.title} return for {period} was accepted with version {version} "
        f"({accepted_file}{accepted_at and f', accepted {accepted_at:%d %B %Y %H:%M} UTC' or ''}).",
        f"The file {filename}, put in your folder at {arrived:%d %B %Y %H:%M} UTC after that, was kept "
        "but not checked or used: the accepted version stands, and it is what data users receive.",
        f"If the accepted data needs correcting, ask {g.owner} ({g.contact_email}) to reopen your return; "
        "you can then upload the corrected file.",
    ]
    context = {"title": title, "paragraphs": paragraphs, "items": [],
               "link": {"url": folder_url, "text": "Open your folder"} if folder_url else None}
    rendered = render("notice", context)
    result = send_email(
        Email(to=addresses(council), subject=rendered.subject, text=rendered.text, html=rendered.html),
        dedupe_key=owed.dedupe_key,
        kind="feedback_late",
        return_id=loaded.id,
        period=period,
        council_code=council,
    )
    return result.status

"""The platform's ledger: SQLAlchemy 2 models in the PostgreSQL schema ``lgdp``.

The ledger is the platform's memory of every return, period and council submission. It lives
in its own schema so it can share a database with Airflow's metadata without collisions, and it
is changed only through Alembic migrations (``lgdp db upgrade``).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA = "lgdp"


class Base(DeclarativeBase):
    metadata = MetaData(
        schema=SCHEMA,
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        },
    )
    type_annotation_map = {dict[str, Any]: JSON().with_variant(JSONB(), "postgresql")}


class SubmissionStatus(str, enum.Enum):
    """A council's progress on one period of one return.

    ``expected``: the period is open and nothing has arrived; ``received``/``processing``: a file
    is in; ``rejected``: errors to fix; ``queries``: queries awaiting explanation; ``accepted``:
    done; ``not_received``: the collection closed without an accepted submission.
    """

    expected = "expected"
    received = "received"
    processing = "processing"
    rejected = "rejected"
    queries = "queries"
    accepted = "accepted"
    not_received = "not_received"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Council(Base):
    __tablename__ = "councils"

    code: Mapped[str] = mapped_column(String(9), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class Return(Base):
    """The register of returns, refreshed from the specs."""

    __tablename__ = "returns"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    frequency: Mapped[str] = mapped_column(String(20))
    requester: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    review_date: Mapped[dt.date] = mapped_column(Date)
    spec_path: Mapped[str] = mapped_column(Text)
    spec_sha256: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]]
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)

    items: Mapped[list["ReturnItem"]] = relationship(back_populates="return_", cascade="all, delete-orphan")


class ReturnItem(Base):
    """Each data item of each return; ``dictionary_ref`` shows items collected by several returns."""

    __tablename__ = "return_items"

    return_id: Mapped[str] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    dictionary_ref: Mapped[str | None] = mapped_column(String(63), index=True)
    wording: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(20))
    required: Mapped[bool] = mapped_column(Boolean)
    personal_data: Mapped[bool] = mapped_column(Boolean)

    return_: Mapped[Return] = relationship(back_populates="items")


class CollectionPeriod(Base):
    __tablename__ = "collection_periods"
    __table_args__ = (UniqueConstraint("return_id", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    return_id: Mapped[str] = mapped_column(ForeignKey("returns.id"))
    period: Mapped[str] = mapped_column(String(20))
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    opens_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    closes_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    spec_version: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)

    submissions: Mapped[list["ExpectedSubmission"]] = relationship(back_populates="period")


class ExpectedSubmission(Base):
    """One council's submission for one period; its status is the council's progress."""

    __tablename__ = "expected_submissions"
    __table_args__ = (UniqueConstraint("period_id", "council_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period_id: Mapped[int] = mapped_column(ForeignKey("collection_periods.id", ondelete="CASCADE"), index=True)
    council_code: Mapped[str] = mapped_column(ForeignKey("councils.code"))
    status: Mapped[SubmissionStatus] = mapped_column(
        Enum(SubmissionStatus, name="submission_status", schema=SCHEMA, values_callable=lambda e: [m.value for m in e]),
        default=SubmissionStatus.expected,
    )
    status_changed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    first_received_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    period: Mapped[CollectionPeriod] = relationship(back_populates="submissions")


class VersionStatus(str, enum.Enum):
    """What became of one file a council submitted (one version of its submission)."""

    received = "received"  # archived, not yet processed
    loaded = "loaded"  # parsed and loaded into the staging table
    rejected = "rejected"  # problems a council must fix (see submission_issues)
    accepted = "accepted"
    superseded = "superseded"  # a newer version arrived before this one was accepted
    queries = "queries"  # no errors, but queries awaiting an explanation in the feedback workbook


class ArchivedFile(Base):
    """Every file ever received, addressed by SHA-256 and never changed or deleted."""

    __tablename__ = "archived_files"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    first_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class SubmissionVersion(Base):
    """One file a council put in its folder for one period: who, when, where, and what became of it."""

    __tablename__ = "submission_versions"
    __table_args__ = (
        UniqueConstraint("submission_id", "version"),
        UniqueConstraint("submission_id", "source_item_id", "source_etag"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("expected_submissions.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    file_sha256: Mapped[str] = mapped_column(ForeignKey("archived_files.sha256"))
    filename: Mapped[str] = mapped_column(Text)
    source_path: Mapped[str] = mapped_column(Text)
    source_item_id: Mapped[str] = mapped_column(Text)
    source_etag: Mapped[str] = mapped_column(Text)
    uploaded_by: Mapped[str | None] = mapped_column(Text)
    uploaded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    status: Mapped[VersionStatus] = mapped_column(
        Enum(VersionStatus, name="version_status", schema=SCHEMA, values_callable=lambda e: [m.value for m in e]),
        default=VersionStatus.received,
    )
    rows_loaded: Mapped[int | None] = mapped_column(Integer)
    processed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class SubmissionIssue(Base):
    """A problem found in one version: rule code, severity, where (row, item) and a message."""

    __tablename__ = "submission_issues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("submission_versions.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    row_number: Mapped[int | None] = mapped_column(Integer)
    item: Mapped[str | None] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)
    # The table (sheet, CSV file) of a return with several tables; None for one-table returns.
    table_name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # A query the council explained (in the feedback workbook's explanation column) no longer blocks.
    explanation: Mapped[str | None] = mapped_column(Text)
    explained_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ExplanationFile(Base):
    """A feedback workbook a council sent back with explanations for its queries.

    Kept apart from ``submission_versions`` so a returned workbook never counts as data: it
    explains the queries of the version it names (``version_id``). Its bytes are archived like
    any file; ``status`` is ``applied`` or ``refused`` (``message`` says why, for the council).
    """

    __tablename__ = "explanation_files"
    __table_args__ = (UniqueConstraint("submission_id", "source_item_id", "source_etag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("expected_submissions.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("submission_versions.id", ondelete="CASCADE"))
    file_sha256: Mapped[str] = mapped_column(ForeignKey("archived_files.sha256"))
    filename: Mapped[str] = mapped_column(Text)
    source_item_id: Mapped[str] = mapped_column(Text)
    source_etag: Mapped[str] = mapped_column(Text)
    uploaded_by: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    status: Mapped[str] = mapped_column(String(10))  # applied | refused
    explained: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)


class SentEmail(Base):
    """Every email the platform sends, keyed so a retry, rerun or backfill never sends it twice.

    ``dedupe_key`` names the message's purpose (e.g. ``remind:clas:2025-26:S12000033:due_minus_7``
    or ``outcome:<version id>``). A row is claimed (``sending``) before the send and marked
    ``sent`` after it; a failed send is marked ``failed`` and retried, never lost. No row data.
    """

    __tablename__ = "sent_emails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    return_id: Mapped[str | None] = mapped_column(String(40))
    period: Mapped[str | None] = mapped_column(String(20))
    council_code: Mapped[str | None] = mapped_column(String(9))
    recipients: Mapped[list[str]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    subject: Mapped[str] = mapped_column(Text)
    transport: Mapped[str | None] = mapped_column(String(20))
    message_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10))  # sending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """One delivery version of one period of one return to one requester (``lgdp.distribute``).

    ``publishing`` is claimed before the first byte is written and becomes ``published`` only after
    the manifest, written last, is in place: a failed publish leaves ``publishing`` and no manifest,
    and the retry reuses the same version. ``versions`` maps each included council to its accepted
    submission version id, which is how a rerun with nothing new publishes nothing. No row data.
    """

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("return_id", "period", "requester", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    return_id: Mapped[str] = mapped_column(String(40))
    period: Mapped[str] = mapped_column(String(20))
    requester: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    spec_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))  # publishing | published
    reason: Mapped[str] = mapped_column(String(20))  # all_accepted | closed | late
    versions: Mapped[dict[str, Any]]  # council code -> accepted submission version id
    missing: Mapped[list[str]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    rows: Mapped[int | None] = mapped_column(Integer)
    location: Mapped[str | None] = mapped_column(Text)  # e.g. wasb://container/prefix/2025-26/v1/
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class RequesterSignoff(Base):
    """A file a requester wrote back under ``returned/``: the period's final state for that requester.

    The bytes are kept in ``archived_files`` (by SHA-256), so the final data is available from the
    platform whatever happens to the requester's container. The newest row of a (return, period,
    requester) is the final state; ``delivery_version`` is the delivery it answers, if it says.
    """

    __tablename__ = "requester_signoffs"
    __table_args__ = (UniqueConstraint("return_id", "requester", "path", "file_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    return_id: Mapped[str] = mapped_column(String(40))
    period: Mapped[str] = mapped_column(String(20))
    requester: Mapped[str] = mapped_column(String(40))
    path: Mapped[str] = mapped_column(Text)
    file_sha256: Mapped[str] = mapped_column(ForeignKey("archived_files.sha256"))
    size: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(12))  # signoff | data
    delivery_version: Mapped[int | None] = mapped_column(Integer)
    returned_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    problem: Mapped[str | None] = mapped_column(Text)  # why a ``rejected`` file cannot be used (never its contents)


class LateFile(Base):
    """A file a council dropped after its submission was accepted: kept and answered, not processed.

    The accepted version stands (it may already have gone to requesters); the file's bytes are
    archived like any file and the council is told, once, that the file was not used and who can
    reopen the return (see docs/collection.md, "Several files"). ``accepted_version_id`` is the
    version that stood when the file arrived.
    """

    __tablename__ = "late_files"
    __table_args__ = (UniqueConstraint("submission_id", "source_item_id", "source_etag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("expected_submissions.id", ondelete="CASCADE"), index=True)
    accepted_version_id: Mapped[int | None] = mapped_column(ForeignKey("submission_versions.id", ondelete="CASCADE"))
    file_sha256: Mapped[str] = mapped_column(ForeignKey("archived_files.sha256"))
    filename: Mapped[str] = mapped_column(Text)
    source_item_id: Mapped[str] = mapped_column(Text)
    source_etag: Mapped[str] = mapped_column(Text)
    uploaded_by: Mapped[str | None] = mapped_column(Text)
    uploaded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ApiToken(Base):
    """A council system's token for the submission API (``lgdp api token issue``).

    Only the SHA-256 of the secret is kept: the token itself is shown once, when issued. A token
    acts for one council, until ``expires_at`` or ``revoked_at``; ``rate_per_minute`` caps its requests.
    """

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    council_code: Mapped[str] = mapped_column(ForeignKey("councils.code"), index=True)
    name: Mapped[str] = mapped_column(Text)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    rate_per_minute: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ApiRequest(Base):
    """Every request to the submission API: who (token, council), when, what, and the outcome. No bodies."""

    __tablename__ = "api_requests"
    __table_args__ = (Index("ix_api_requests_token_id_at", "token_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    token_id: Mapped[str | None] = mapped_column(String(24))  # only a token that exists
    council_code: Mapped[str | None] = mapped_column(String(9))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    code: Mapped[str | None] = mapped_column(String(40))
    submission_id: Mapped[str | None] = mapped_column(String(36))
    client: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)


class ApiSubmission(Base):
    """A submission received through the API, on its way into the council's SharePoint folder.

    ``original_sha256`` is the request body as sent (archived); ``file_sha256`` the file placed in
    the folder (the same bytes, or the CSV/zip made from JSON rows, or the filled feedback workbook
    for explanations). ``status``: ``queued`` until the file is in the folder, then ``placed``
    (``source_item_id``/``source_etag`` name it, and the collect task processes it like any file).
    """

    __tablename__ = "api_submissions"
    __table_args__ = (UniqueConstraint("council_code", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_id: Mapped[str] = mapped_column(ForeignKey("api_tokens.id"))
    council_code: Mapped[str] = mapped_column(String(9))
    return_id: Mapped[str] = mapped_column(String(40))
    period: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(12))  # data | explanations
    idempotency_key: Mapped[str] = mapped_column(Text)
    request_sha256: Mapped[str] = mapped_column(String(64))
    original_sha256: Mapped[str] = mapped_column(ForeignKey("archived_files.sha256"))
    file_sha256: Mapped[str] = mapped_column(ForeignKey("archived_files.sha256"))
    filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(Text)
    target_path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), index=True)  # queued | placed
    source_item_id: Mapped[str | None] = mapped_column(Text)
    source_etag: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    placed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

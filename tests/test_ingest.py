"""Ingest against the real PostgreSQL ledger: archive, versions, issues, outcomes, staging, COPY load."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest
from sqlalchemy import text

from lgdp import synth
from lgdp.ingest import (
    archive_file,
    ensure_staging_table,
    expected_submission,
    issues_for,
    latest_version,
    load_version,
    loaded_rows,
    read_archived,
    record_issues,
    record_version,
    set_version_outcome,
    start_processing,
    versions,
)
from lgdp.ingest.arrow import table_from_rows
from lgdp.ingest.staging import StagingSchemaError, existing_columns, staging_columns
from lgdp.issues import Issue
from lgdp.ledger import db
from lgdp.ledger.models import SubmissionStatus, VersionStatus
from lgdp.ledger.register import open_period
from lgdp.periods import period_from_label
from lgdp.specs.load import load_register
from lgdp.specs.model import ItemType

COUNCIL = "S12000036"
REGISTER = load_register()
SPECS = {s.id: s for s in REGISTER.specs}
PERIODS = {"clas": "2025-26", "la_finance_quarterly": "2025-26-Q2", "social_care_survey": "2025-26",
           "temporary_accommodation_monthly": "2025-07"}
PG_OF = {ItemType.string: "text", ItemType.code: "text", ItemType.integer: "bigint",
         ItemType.decimal: "numeric", ItemType.date: "date", ItemType.boolean: "boolean"}


@pytest.fixture
def ledger(clean_ledger):
    """An empty ledger and empty staging schema; yields a session (rolled back if left open)."""
    with db.engine().begin() as conn:
        for (name,) in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'lgdp_staging'")):
            conn.execute(text(f'DROP TABLE lgdp_staging."{name}"'))
    s = db.session()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


def _submission(session, return_id="clas", council=COUNCIL):
    loaded = SPECS[return_id]
    open_period(session, loaded, period_from_label(loaded.spec.collection, PERIODS[return_id]))
    return expected_submission(session, return_id, PERIODS[return_id], council)


def _version(session, sub, data=b"a,b\n1,2\n", item="item-1", etag="etag-1"):
    sha = archive_file(session, data)
    return record_version(
        session, sub.id, sha256=sha, filename="clas.csv", source_path="/CLAS/2025-26/clas.csv",
        source_item_id=item, source_etag=etag, uploaded_by="officer@example.org",
        uploaded_at=dt.datetime(2026, 7, 1, 9, 30, tzinfo=dt.timezone.utc),
    )


# --- archive -------------------------------------------------------------------------------------


def test_archive_stores_bytes_once_by_sha256_and_refuses_update_and_delete(ledger):
    data = b"\x00\x01 binary \xff content"
    sha = archive_file(ledger, data)
    assert archive_file(ledger, data) == sha == __import__("hashlib").sha256(data).hexdigest()
    ledger.commit()
    assert read_archived(ledger, sha) == data
    assert ledger.execute(text("SELECT count(*), max(size) FROM lgdp.archived_files")).one() == (1, len(data))
    for stmt in ("UPDATE lgdp.archived_files SET content = 'x'", "DELETE FROM lgdp.archived_files"):
        with pytest.raises(Exception, match="immutable"):
            with db.engine().begin() as conn:
                conn.execute(text(stmt))
    assert read_archived(ledger, sha) == data
    with pytest.raises(LookupError):
        read_archived(ledger, "0" * 64)


def test_concurrent_archiving_of_the_same_bytes_leaves_one_row(ledger):
    import threading

    other = db.session()
    result: dict[str, object] = {}

    def second() -> None:  # blocks on the first transaction's row until it commits, then inserts nothing
        result["sha"] = archive_file(other, b"same bytes")
        other.commit()

    try:
        sha = archive_file(ledger, b"same bytes")
        worker = threading.Thread(target=second)
        worker.start()
        worker.join(0.5)
        ledger.commit()
        worker.join(30)
        assert not worker.is_alive() and result["sha"] == sha
    finally:
        other.close()
    assert ledger.execute(text("SELECT count(*) FROM lgdp.archived_files")).scalar() == 1


# --- versions ------------------------------------------------------------------------------------


def test_versions_are_numbered_supersede_earlier_ones_and_a_retry_creates_nothing(ledger):
    sub = _submission(ledger)
    assert sub.status == SubmissionStatus.expected and sub.first_received_at is None
    v1, created = _version(ledger, sub)
    assert created
    assert _version(ledger, sub) == (v1, False)  # same item and etag: an Airflow retry
    ledger.commit()
    sub = expected_submission(ledger, "clas", "2025-26", COUNCIL)
    assert sub.status == SubmissionStatus.received
    first = sub.first_received_at
    assert first is not None

    v2, created = _version(ledger, sub, b"second file", etag="etag-2")
    v3, _ = _version(ledger, sub, b"another item", item="item-2", etag="etag-1")
    assert created and len({v1, v2, v3}) == 3
    ledger.commit()
    vs = versions(ledger, sub.id)
    assert [(v.version, v.status) for v in vs] == [
        (1, VersionStatus.superseded), (2, VersionStatus.superseded), (3, VersionStatus.received)]
    assert vs[0].uploaded_by == "officer@example.org" and vs[0].source_path == "/CLAS/2025-26/clas.csv"
    assert latest_version(ledger, sub.id).id == v3
    assert expected_submission(ledger, "clas", "2025-26", COUNCIL).first_received_at == first
    assert latest_version(ledger, _submission(ledger, council="S12000033").id) is None


def test_a_rejected_version_keeps_its_outcome_when_a_corrected_file_arrives(ledger):
    sub = _submission(ledger)
    v1, _ = _version(ledger, sub)
    set_version_outcome(ledger, v1, "rejected")
    v2, _ = _version(ledger, sub, b"corrected file", etag="etag-2")
    ledger.commit()
    assert [(v.version, v.status) for v in versions(ledger, sub.id)] == [
        (1, VersionStatus.rejected), (2, VersionStatus.received)]


def test_an_accepted_version_is_not_superseded(ledger):
    sub = _submission(ledger)
    v1, _ = _version(ledger, sub)
    set_version_outcome(ledger, v1, "accepted", rows_loaded=1)
    v2, _ = _version(ledger, sub, b"later", etag="etag-2")
    ledger.commit()
    assert [v.status for v in versions(ledger, sub.id)] == [VersionStatus.accepted, VersionStatus.received]
    assert expected_submission(ledger, "clas", "2025-26", COUNCIL).status == SubmissionStatus.received


def test_record_issues_replaces_the_versions_issues(ledger):
    sub = _submission(ledger)
    v1, _ = _version(ledger, sub)
    issues = [
        Issue("CLAS-E001", "error", "End date before start date", row=7, item="episode_end_date", value="2020-01-01"),
        Issue("FILE-W001", "query", "Sheet name differs", None, None, None),
        Issue("CLAS-Q002", "query", "Comma, \"quote\"\nnewline and ünïcode", row=3, item="sex", value="x" * 500),
    ]
    assert record_issues(ledger, v1, issues) == 3
    assert record_issues(ledger, v1, issues) == 3  # idempotent
    got = issues_for(ledger, v1)
    assert got == [issues[1], issues[2], issues[0]]  # file-level first, then by row
    assert len(got[1].value) == 200
    record_issues(ledger, v1, issues[:1])
    assert issues_for(ledger, v1) == issues[:1]
    record_issues(ledger, v1, [])
    assert issues_for(ledger, v1) == []
    with pytest.raises(ValueError, match="severity"):
        record_issues(ledger, v1, [Issue("X-1", "warning", "no such severity")])  # type: ignore[arg-type]


def test_outcomes_move_the_submission_status(ledger):
    sub = _submission(ledger)
    v1, _ = _version(ledger, sub)
    assert start_processing(ledger, v1) == SubmissionStatus.processing
    assert set_version_outcome(ledger, v1, VersionStatus.loaded, rows_loaded=10) == SubmissionStatus.processing
    record_issues(ledger, v1, [Issue("CLAS-Q001", "query", "Unusual value", row=2)])
    assert set_version_outcome(ledger, v1, "loaded", rows_loaded=10) == SubmissionStatus.queries
    record_issues(ledger, v1, [Issue("CLAS-Q001", "query", "Unusual", row=2), Issue("CLAS-E001", "error", "Bad", row=3)])
    assert set_version_outcome(ledger, v1, "loaded", rows_loaded=10) == SubmissionStatus.rejected
    with pytest.raises(ValueError, match="cannot be accepted"):
        set_version_outcome(ledger, v1, "accepted")
    assert set_version_outcome(ledger, v1, "rejected") == SubmissionStatus.rejected
    ledger.commit()
    changed = expected_submission(ledger, "clas", "2025-26", COUNCIL).status_changed_at
    assert set_version_outcome(ledger, v1, "rejected") == SubmissionStatus.rejected  # a retry
    ledger.commit()
    assert expected_submission(ledger, "clas", "2025-26", COUNCIL).status_changed_at == changed

    v2, _ = _version(ledger, sub, b"fixed file", etag="etag-2")
    assert expected_submission(ledger, "clas", "2025-26", COUNCIL).status == SubmissionStatus.received
    # the old version's slow task finishing late changes neither it nor the council's progress
    assert set_version_outcome(ledger, v1, "loaded", rows_loaded=10) == SubmissionStatus.received
    assert start_processing(ledger, v1) == SubmissionStatus.received
    assert set_version_outcome(ledger, v2, "loaded", rows_loaded=12) == SubmissionStatus.processing
    assert set_version_outcome(ledger, v2, "accepted") == SubmissionStatus.accepted
    ledger.commit()
    sub = expected_submission(ledger, "clas", "2025-26", COUNCIL)
    assert sub.status == SubmissionStatus.accepted and sub.accepted_at is not None
    vs = versions(ledger, sub.id)
    assert [(v.status, v.rows_loaded) for v in vs] == [(VersionStatus.rejected, 10), (VersionStatus.accepted, 12)]
    assert all(v.processed_at is not None for v in vs)
    assert [i.code for i in issues_for(ledger, v1)] == ["CLAS-Q001", "CLAS-E001"]  # history kept


# --- staging DDL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("return_id", sorted(SPECS))
def test_staging_table_columns_and_types_follow_the_spec(ledger, return_id):
    loaded = SPECS[return_id]
    created = ensure_staging_table(ledger, loaded)
    assert ensure_staging_table(ledger, loaded) == []
    have = existing_columns(ledger, return_id)
    expected = {"_submission_version_id": "bigint", "_council_code": "text", "_period": "text", "_row_number": "integer"}
    expected.update({it.name: PG_OF[it.type] for it in loaded.items})
    assert have == expected and list(have) == created == [n for n, _ in staging_columns(loaded)]
    pk = ledger.execute(text(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass(:t) AND contype = 'p'"
    ), {"t": f'lgdp_staging."{return_id}"'}).scalar_one()
    assert pk == "PRIMARY KEY (_submission_version_id, _row_number)"
    idx = ledger.execute(text("SELECT indexdef FROM pg_indexes WHERE schemaname = 'lgdp_staging' AND tablename = :t"
                              " AND indexname LIKE 'ix_%'"), {"t": return_id}).scalar_one()
    assert "(_council_code, _period)" in idx


def _with_extra_item(loaded, name, itype):
    extra = loaded.items[-1].model_copy(update={"name": name, "type": itype, "codes": None, "required": False})
    spec = loaded.spec.model_copy(update={"version": loaded.spec.version + 1})
    return dataclasses.replace(loaded, spec=spec, items=loaded.items + (extra,))


def test_a_newer_spec_adds_columns_and_never_drops_or_retypes(ledger):
    loaded = SPECS["temporary_accommodation_monthly"]
    ensure_staging_table(ledger, loaded)
    newer = _with_extra_item(loaded, "families_placed", ItemType.integer)
    assert ensure_staging_table(ledger, newer) == ["families_placed"]
    assert existing_columns(ledger, loaded.id)["families_placed"] == "bigint"
    assert ensure_staging_table(ledger, loaded) == []  # the older spec: nothing dropped
    assert "families_placed" in existing_columns(ledger, loaded.id)
    retyped = _with_extra_item(loaded, "families_placed", ItemType.date)
    with pytest.raises(StagingSchemaError, match="families_placed is bigint"):
        ensure_staging_table(ledger, retyped)


# --- loading -------------------------------------------------------------------------------------


def _staged(session, loaded, version_id):
    cols = ", ".join(f'"{it.name}"' for it in loaded.items)
    rows = session.execute(text(
        f'SELECT _council_code, _period, _row_number, {cols} FROM lgdp_staging."{loaded.id}" '
        "WHERE _submission_version_id = :v ORDER BY _row_number"), {"v": version_id}).all()
    return rows


def _expected(loaded, rows):
    return [tuple(r.get(it.name) for it in loaded.items) for r in rows]


def _tricky_rows(loaded, base):
    """Copies of a clean row with awkward strings, blanks and extreme values in every column type."""
    out = []
    strings = ['comma, "quote" and\nnewline', "ünïcödé — 漢字 🚀", "", "\\N", "back\\slash\ttab", "x" * 5000]
    for k, s in enumerate(strings):
        row = dict(base)
        for it in loaded.items:
            if it.type == ItemType.string and not it.required:
                row[it.name] = s
            elif it.type == ItemType.string and it.name != "council_code":
                row[it.name] = s or None
            elif it.type == ItemType.date and not it.required:
                row[it.name] = [dt.date(1, 1, 1), dt.date(9999, 12, 31), None, dt.date(2000, 1, 1), dt.date(1999, 12, 31), dt.date(2024, 2, 29)][k]
            elif it.type == ItemType.integer:
                row[it.name] = [0, -1, 2**62, -(2**62), None if not it.required else 7, 10000][k]
            elif it.type == ItemType.decimal:
                row[it.name] = [Decimal("0.00"), Decimal("-1.05"), Decimal("9999999999999999.99"), Decimal("0.01"), None if not it.required else Decimal("10000.00"), Decimal("-123456789.10")][k]
            elif it.type == ItemType.boolean:
                row[it.name] = [True, False, None, True, False, None][k]
        out.append(row)
    return out


@pytest.mark.parametrize("return_id", sorted(SPECS))
def test_load_round_trips_every_value_exactly(ledger, return_id):
    loaded = SPECS[return_id]
    sub = _submission(ledger, return_id)
    vid, _ = _version(ledger, sub)
    rows = synth.rows(loaded, COUNCIL, PERIODS[return_id], None if loaded.spec.keys else 300, seed=3).rows
    rows = rows + _tricky_rows(loaded, rows[0])
    table = table_from_rows(loaded, rows)
    assert load_version(ledger, loaded, vid, COUNCIL, PERIODS[return_id], table) == len(rows)
    ledger.commit()
    got = _staged(ledger, loaded, vid)
    assert [g[:3] for g in got] == [(COUNCIL, PERIODS[return_id], n) for n in range(2, 2 + len(rows))]
    assert [tuple(g[3:]) for g in got] == _expected(loaded, rows)
    decimals = [i for i, it in enumerate(loaded.items) if it.type == ItemType.decimal]
    for i in decimals:  # the column's scale survives too (1.50 stays 1.50), not only the value
        sent = table.column(loaded.items[i].name).to_pylist()
        assert [None if g[3 + i] is None else str(g[3 + i]) for g in got] == [None if v is None else str(v) for v in sent]


def test_decimals_given_as_float64_or_wide_decimal128_load_exactly(ledger):
    loaded = SPECS["la_finance_quarterly"]
    sub = _submission(ledger, loaded.id)
    rows = synth.rows(loaded, COUNCIL, PERIODS[loaded.id], seed=1).rows[:4]
    base = table_from_rows(loaded, rows)
    values = [0.1, -2.5, None, 1e20]
    wide = [Decimal("12345678901234567890.123"), Decimal("-0.001"), None, Decimal("0")]
    for k, (vals, typ) in enumerate([(values, pa.float64()), (wide, pa.decimal128(38, 3))]):
        vid, _ = _version(ledger, sub, f"f{k}".encode(), etag=f"e{k}")
        table = base.set_column(base.column_names.index("staff_fte"), "staff_fte", pa.array(vals, typ))
        load_version(ledger, loaded, vid, COUNCIL, PERIODS[loaded.id], table)
        got = [r[-1] for r in _staged(ledger, loaded, vid)]
        want = [None if v is None else Decimal(repr(v)) if isinstance(v, float) else v for v in vals]
        assert got == want


def test_a_rerun_loads_nothing_twice_and_replace_reloads_one_copy(ledger):
    loaded = SPECS["clas"]
    sub = _submission(ledger)
    vid, _ = _version(ledger, sub)
    table = table_from_rows(loaded, synth.rows(loaded, COUNCIL, "2025-26", 120, seed=5).rows)
    assert load_version(ledger, loaded, vid, COUNCIL, "2025-26", table) == 120
    ledger.commit()
    assert load_version(ledger, loaded, vid, COUNCIL, "2025-26", table) == 120  # an Airflow retry
    ledger.commit()
    assert loaded_rows(ledger, loaded, vid) == 120
    smaller = table.slice(0, 50)
    assert load_version(ledger, loaded, vid, COUNCIL, "2025-26", smaller, replace=True) == 50
    ledger.commit()
    assert ledger.execute(text("SELECT count(*) FROM lgdp_staging.clas")).scalar() == 50
    # through a plain SQLAlchemy connection and a raw psycopg one too
    with db.engine().begin() as conn:
        assert load_version(conn, loaded, vid, COUNCIL, "2025-26", table) == 50
    raw = psycopg.connect(db.database_url().replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    try:
        v2, _ = _version(ledger, sub, b"v2", etag="etag-2")
        ledger.commit()
        assert load_version(raw, loaded, v2, COUNCIL, "2025-26", table) == 120
    finally:
        raw.close()
    assert loaded_rows(ledger, loaded, v2) == 120


def test_a_failure_mid_load_leaves_no_rows_and_the_transaction_usable(ledger):
    loaded = SPECS["clas"]
    sub = _submission(ledger)
    vid, _ = _version(ledger, sub)
    rows = synth.rows(loaded, COUNCIL, "2025-26", 200_000 // 2, seed=2).rows
    table = table_from_rows(loaded, rows)
    numbers = table.column("_row_number").to_pylist()
    numbers[-1] = numbers[0]  # a duplicate row number in the last batch: the PK refuses it
    broken = table.set_column(table.column_names.index("_row_number"), "_row_number", pa.array(numbers, pa.int64()))
    with pytest.raises(psycopg.errors.UniqueViolation):
        load_version(ledger, loaded, vid, COUNCIL, "2025-26", broken)
    assert loaded_rows(ledger, loaded, vid) == 0
    # the caller's transaction still works: record the failure and commit it
    record_issues(ledger, vid, [Issue("LOAD-E001", "error", "The rows could not be loaded")])
    assert set_version_outcome(ledger, vid, "rejected") == SubmissionStatus.rejected
    ledger.commit()
    assert loaded_rows(ledger, loaded, vid) == 0  # (the staging table created in the savepoint went too)
    ensure_staging_table(ledger, loaded)
    assert ledger.execute(text("SELECT count(*) FROM lgdp_staging.clas")).scalar() == 0
    with pytest.raises(ValueError, match="_row_number"):
        load_version(ledger, loaded, vid, COUNCIL, "2025-26", table.drop_columns(["_row_number"]))


def test_end_to_end_archive_record_parse_load(ledger):
    import io

    from lgdp.parse import parse_submission

    loaded = SPECS["clas"]
    sub = _submission(ledger)
    buf = io.BytesIO()
    synth.write_rows(loaded, synth.rows(loaded, COUNCIL, "2025-26", 500, seed=9).rows, "xlsx", buf)
    data = buf.getvalue()
    sha = archive_file(ledger, data)
    vid, _ = record_version(ledger, sub.id, sha256=sha, filename="clas.xlsx", source_path="/x/clas.xlsx",
                            source_item_id="i", source_etag="e", uploaded_by=None, uploaded_at=None)
    start_processing(ledger, vid)
    ledger.commit()
    result = parse_submission(loaded, "clas.xlsx", read_archived(ledger, sha), council_code=COUNCIL)
    assert result.readable and result.table is not None
    n = load_version(ledger, loaded, vid, COUNCIL, "2025-26", result.table)
    record_issues(ledger, vid, result.issues)
    status = set_version_outcome(ledger, vid, "loaded", rows_loaded=n)
    ledger.commit()
    assert n == 500 == loaded_rows(ledger, loaded, vid)
    assert status in (SubmissionStatus.processing, SubmissionStatus.queries, SubmissionStatus.rejected)

"""Every hostile file of the corpus, through the real collection step against the ledger:
the original is archived byte for byte, the version and a readable issue are recorded, the
council's submission is rejected (so its task waits for a corrected file), and nothing else moves.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from lgdp.collect.process import process_file, storable
from lgdp.ledger.db import engine, session
from lgdp.ledger.register import open_period, period_status
from lgdp.periods import period_opening_at
from test_hostile_files import CASES, COUNCIL, JARGON, SPECS

DEFAULT_LIMITS = {name: case for name, case in CASES.items() if len(case) == 5}
NEIGHBOUR = "S12000049"  # Glasgow: provides every return, must never be disturbed


@pytest.fixture
def open_periods(clean_ledger):
    labels = {}
    with session() as s, s.begin():
        for loaded in SPECS.values():
            period = period_opening_at(loaded.spec.collection, dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc))
            open_period(s, loaded, period)
            labels[loaded.id] = period.label
    return labels


def test_most_of_the_corpus_runs_on_default_limits():
    assert len(DEFAULT_LIMITS) >= 20


@pytest.mark.parametrize("name", list(DEFAULT_LIMITS))
def test_hostile_file_is_kept_recorded_and_rejected(name, open_periods):
    spec, filename, make, code, _readable = DEFAULT_LIMITS[name]
    data = make()
    period = open_periods[spec.id]
    ref = {"id": f"item-{abs(hash(name))}", "name": filename, "path": f"x/{filename}", "etag": "1",
           "last_modified": "2026-11-22T10:00:00+00:00", "last_modified_by": "Council officer"}
    outcome = process_file(spec, period, COUNCIL, ref, data)

    assert outcome.status == "rejected" and outcome.errors >= 1
    with engine().connect() as conn:
        kept = conn.execute(
            text(
                "SELECT a.content, v.filename, v.uploaded_by FROM lgdp.submission_versions v "
                "JOIN lgdp.archived_files a ON a.sha256 = v.file_sha256 WHERE v.id = :v"
            ),
            {"v": outcome.version_id},
        ).one()
        issues = conn.execute(
            text("SELECT code, message FROM lgdp.submission_issues WHERE version_id = :v"), {"v": outcome.version_id}
        ).all()
    assert bytes(kept[0]) == data and kept[1] == storable(filename) and kept[2] == "Council officer"
    assert code in {c for c, _ in issues}
    assert all(not JARGON.search(m) for _, m in issues)
    with session() as s:
        assert period_status(s, spec.id, period)[COUNCIL] == "rejected"
        assert period_status(s, spec.id, period)[NEIGHBOUR] == "expected"


def test_a_nul_inside_a_cell_is_reported_not_fatal(open_periods):
    """A NUL byte in a CSV cell: reported to the council, and the ledger still records it all."""
    from test_hostile_files import TA, ta_csv_text

    lines = ta_csv_text().splitlines()
    head, first = lines[0], lines[1].split(",")
    first[2] = "1\x002"
    data = "\n".join([head, ",".join(first), *lines[2:]]).encode()
    ref = {"id": "nul", "name": "ta.csv", "etag": "1", "last_modified": None, "last_modified_by": None}
    outcome = process_file(TA, open_periods[TA.id], COUNCIL, ref, data)
    assert outcome.status == "rejected"
    assert outcome.errors >= 1 and {i.code for i in outcome.issues} & {"TYPE-001", "FILE-011"}

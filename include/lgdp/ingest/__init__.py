"""Ingest: archive a council's file, record it as a submission version, load its rows to staging.

The order is the promise of the issue: **archive first** (``archive.archive_file``: the original
bytes, immutable, addressed by SHA-256), **record the version** (``versions.record_version``:
who, when, where; numbered per submission), then parse, then **load** the typed rows
(``load.load_version``: one transaction, COPY, a re-run loads nothing twice) and record the
version's issues and outcome (``versions.record_issues``, ``versions.set_version_outcome``).
Every step is idempotent, because Airflow retries tasks.

Nothing here logs row data, file names or uploaders (personal data): only ids, counts and hashes.
"""

from lgdp.ingest.archive import archive_file, read_archived
from lgdp.ingest.load import load_version, loaded_rows
from lgdp.ingest.staging import ensure_staging_table, staging_columns, staging_table
from lgdp.ingest.versions import (
    expected_submission,
    issues_for,
    latest_version,
    record_issues,
    record_version,
    set_version_outcome,
    start_processing,
    versions,
)

__all__ = [
    "archive_file",
    "ensure_staging_table",
    "expected_submission",
    "issues_for",
    "latest_version",
    "load_version",
    "loaded_rows",
    "read_archived",
    "record_issues",
    "record_version",
    "set_version_outcome",
    "staging_columns",
    "staging_table",
    "start_processing",
    "versions",
]

"""Validating one submission version: every table's checks, row by row and by Soda, agreeing.

``validate_submission`` is what the pipeline calls after a version is loaded. For each table of
the return (one for a one-table return) it computes the failing rows (``lgdp.validate.rows``) and
Soda's counts (``lgdp.validate.contract``) from the same checks, with the same SQL variables
(council, period, version, the council's previous accepted version and the period's dates), and
refuses to go on if they disagree. The rule book is the one in force for the period
(``LoadedSpec.for_period``). Reference tables that query rules read are brought up to date first.
Any failure here is a platform fault (``ValidationRuntimeError``): the task fails and is retried,
the council is told nothing wrong.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, wait

from lgdp.issues import Issue
from lgdp.specs.load import LoadedSpec

log = logging.getLogger(__name__)


def _reads_reference(loaded: LoadedSpec) -> bool:
    from lgdp.validate.checks import REFERENCE_SCHEMA, checks

    return any(REFERENCE_SCHEMA in (c.query or "") for t in loaded.tables for c in checks(t))


def validate_submission(loaded: LoadedSpec, period: str, council: str, version_id: int) -> list[Issue]:
    from lgdp.ledger.db import database_url, session
    from lgdp.validate.checks import checks, sql_variables, uses_previous
    from lgdp.validate.contract import verify
    from lgdp.validate.plausibility import previous_accepted
    from lgdp.validate.reference import ensure_reference_tables
    from lgdp.validate.rows import ensure_statistics, failing_rows

    loaded = loaded.for_period(period)
    if loaded.reference is not None and _reads_reference(loaded):
        with session() as s, s.begin():
            ensure_reference_tables(s, loaded.reference)
    previous_id = None
    if any(uses_previous(t) for t in loaded.tables):
        with session() as s:
            prev = previous_accepted(s, loaded.id, council, period)
        previous_id = prev[0] if prev else None
    issues: list[Issue] = []
    # Soda's counts and the failing rows are two independent reads of the same rows: they run at
    # once (Soda on its own connection, in a thread), each on its own server process and core.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lgdp-soda") as pool:
        for view in loaded.tables:
            has_variables = any(c.query is not None or "${var." in (c.failing or "") for c in checks(view))
            variables = sql_variables(view, council, period, version_id, previous_id) if has_variables else None
            with session() as s:
                ensure_statistics(s, view, version_id)  # before both, so that both plan with them
            counted = pool.submit(verify, view, database_url(), council, period, version_id, previous_id)
            try:
                with session() as s:
                    found = failing_rows(s, view, council, period, version_id, variables)
            except BaseException:
                wait([counted])  # never leave Soda running behind a failure; the rows' failure is the one raised
                raise
            issues += _compare(view, version_id, found, counted.result())  # a Soda failure raises here
    return issues


def _compare(view: LoadedSpec, version_id: int, found: list[Issue], soda: dict[str, int]) -> list[Issue]:
    from lgdp.validate.contract import ValidationRuntimeError
    from lgdp.validate.rows import count_by_code

    mine = count_by_code(view, found)
    drift = {code: (mine.get(code, 0), n) for code, n in soda.items() if mine.get(code, 0) != n}
    if drift:
        raise ValidationRuntimeError(
            f"row-level issues and Soda disagree for version {version_id} ({view.staging_name}): {drift}"
        )
    return found


__all__ = ["validate_submission"]
